//! Options of `rapport serve`, layered: built-in defaults < TOML file < `RAPPORT_*`
//! environment < command-line flags. Every default works on a laptop.

use anyhow::Context;
use clap::Args;
use rapport_core::event::Limits;
use rapport_core::identity::IdentityRules;
use rapport_engine::identity::matching::MatchingOptions;
use rapport_engine::value::ModelsConfig;
use serde::Deserialize;
use std::path::{Path, PathBuf};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "./rapport-data";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server binds.
    pub listen: String,
    /// Where the embedded store keeps its files.
    pub data_dir: PathBuf,
    /// PostgreSQL URL; when set, Rapport stores everything there instead of `data_dir`.
    pub database_url: Option<String>,
    /// Seconds to wait for a PostgreSQL connection to open (unless the URL sets
    /// `connect_timeout`).
    pub database_connect_timeout_secs: u64,
    /// `text` or `json` logs.
    pub log_format: LogFormat,
    /// Repeated `messageId`s from one source within this many hours are stored once.
    pub dedup_window_hours: u64,
    /// Requests that may queue for the log writer before clients are slowed down.
    pub ingest_queue_depth: usize,
    pub limits: Limits,
    /// Identity resolution rules (`[identity]`): priorities, limits, blocked values.
    pub identity: IdentityRules,
    /// Value models (`[models]`): purchase event, refit schedule, churn label, health
    /// weights, acquisition phrases.
    pub models: ModelsConfig,
    /// Probabilistic matching of live profiles (`[matching]`): schedule and options.
    pub matching: MatchingConfig,
    /// Origins whose web pages may call the tracking API (CORS): `["*"]`, any origin, or
    /// a list such as `["https://shop.example.com"]`.
    pub cors_allowed_origins: Vec<String>,
    /// `[connections]`: timeouts and connection limits (see docs/security.md).
    pub connections: rapport_server::listen::ConnectionLimits,
    /// `[rate_limits]`: trusted proxies and the default per-source and per-IP limits.
    pub rate_limits: rapport_server::rate_limit::RateLimitOptions,
    /// Seconds an authentication answer is reused: the bound on how long a key revoked
    /// through another server on the same database keeps working here.
    pub auth_cache_ttl_secs: u64,
    /// `[privacy]`: profile expiry (see docs/privacy.md).
    pub privacy: PrivacyConfig,
    /// `[dashboard]`: the web dashboard's sessions (see docs/dashboard.md).
    pub dashboard: DashboardConfig,
}

/// `[dashboard]`: the web dashboard served at `/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DashboardConfig {
    /// Mark the session cookie `Secure`, so that browsers send it over HTTPS only: set it
    /// when Rapport is reached over HTTPS (directly or through a proxy). Default false, so
    /// that `http://127.0.0.1:8080` works out of the box.
    pub secure_cookies: bool,
}

/// `[privacy]`: what Rapport erases by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacyConfig {
    /// Profiles without an event for this many days (by their identifiers' last-seen
    /// times) are deleted, once a day; absent: kept.
    pub profile_expiry_days: Option<u32>,
}

/// `[matching]`: how often the matching job runs by itself, and with which options (also
/// those of runs started without options).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MatchingConfig {
    /// Hours between scheduled runs; 0 (the default) runs matching only on demand.
    pub interval_hours: u64,
    /// `[matching.options]`: fields read, thresholds, prior, estimation.
    pub options: MatchingOptions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN.into(),
            data_dir: DEFAULT_DATA_DIR.into(),
            database_url: None,
            database_connect_timeout_secs: 10,
            log_format: LogFormat::Text,
            dedup_window_hours: 24 * 7,
            ingest_queue_depth: 1024,
            limits: Limits::default(),
            identity: IdentityRules::default(),
            models: ModelsConfig::default(),
            matching: MatchingConfig::default(),
            cors_allowed_origins: vec!["*".into()],
            connections: Default::default(),
            rate_limits: Default::default(),
            auth_cache_ttl_secs: 5,
            privacy: PrivacyConfig::default(),
            dashboard: DashboardConfig::default(),
        }
    }
}

/// Flags of `rapport serve`; each also reads its `RAPPORT_*` variable.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "RAPPORT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "RAPPORT_LISTEN")]
    pub listen: Option<String>,
    /// Seconds to wait for a PostgreSQL connection to open [default: 10].
    #[arg(long, env = "RAPPORT_DATABASE_CONNECT_TIMEOUT_SECS")]
    pub database_connect_timeout_secs: Option<u64>,
    /// Log format [default: text].
    #[arg(long, env = "RAPPORT_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// De-duplication window for repeated messageIds, in hours [default: 168].
    #[arg(long, env = "RAPPORT_DEDUP_WINDOW_HOURS")]
    pub dedup_window_hours: Option<u64>,
    /// Largest single message, bytes [default: 32768].
    #[arg(long, env = "RAPPORT_MAX_EVENT_BYTES")]
    pub max_event_bytes: Option<usize>,
    /// Largest request body, bytes [default: 512000].
    #[arg(long, env = "RAPPORT_MAX_BATCH_BYTES")]
    pub max_batch_bytes: Option<usize>,
    /// Most messages in one batch [default: 2500].
    #[arg(long, env = "RAPPORT_MAX_BATCH_EVENTS")]
    pub max_batch_events: Option<usize>,
    /// Hours between scheduled refits of the value models; 0 turns them off [default: 24].
    #[arg(long, env = "RAPPORT_REFIT_INTERVAL_HOURS")]
    pub refit_interval_hours: Option<u64>,
    /// The track event that records a purchase [default: Order Completed].
    #[arg(long, env = "RAPPORT_PURCHASE_EVENT")]
    pub purchase_event: Option<String>,
    /// The purchase property holding its value; `total` is the fallback [default: revenue].
    #[arg(long, env = "RAPPORT_REVENUE_PROPERTY")]
    pub revenue_property: Option<String>,
    /// Origins whose web pages may call the tracking API, comma-separated, or `*` for any
    /// [default: *].
    #[arg(long, env = "RAPPORT_CORS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub cors_allowed_origins: Option<Vec<String>>,
}

impl Config {
    /// Builds the effective configuration. `data_dir` is the global `--data-dir` flag (or its
    /// variable), which wins over the file.
    pub fn load(args: &ServeArgs, data_dir: Option<&Path>) -> anyhow::Result<Config> {
        let mut file = None;
        let mut config = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                let config: Config = toml::from_str(&text)
                    .with_context(|| format!("invalid config file {}", path.display()))?;
                file = Some((path.clone(), text, config.clone()));
                config
            }
            None => Config::default(),
        };
        if let Some(d) = data_dir {
            config.data_dir = d.to_path_buf();
        }
        if let Some(v) = &args.listen {
            config.listen.clone_from(v);
        }
        if let Some(v) = args.database_connect_timeout_secs {
            config.database_connect_timeout_secs = v;
        }
        if let Some(v) = args.log_format {
            config.log_format = v;
        }
        if let Some(v) = args.dedup_window_hours {
            config.dedup_window_hours = v;
        }
        if let Some(v) = args.max_event_bytes {
            config.limits.max_event_bytes = v;
        }
        if let Some(v) = args.max_batch_bytes {
            config.limits.max_batch_bytes = v;
        }
        if let Some(v) = args.max_batch_events {
            config.limits.max_batch_events = v;
        }
        if let Some(v) = args.refit_interval_hours {
            config.models.refit_interval_hours = v;
        }
        if let Some(v) = &args.purchase_event {
            config.models.purchase_event.clone_from(v);
        }
        if let Some(v) = &args.revenue_property {
            config.models.revenue_property.clone_from(v);
        }
        if let Some(v) = &args.cors_allowed_origins {
            config.cors_allowed_origins.clone_from(v);
        }
        if let Err(e) = config.validate() {
            // A value the file sets that the checks after parsing refuse: say where in the
            // file, as the parser does for what it refuses itself. Only when the file alone
            // gives the same error, so that a flag or variable at fault is not blamed on it.
            if let Some((path, text, alone)) = &file
                && let Err(same) = alone.validate()
                && same.to_string() == e.to_string()
                && let Some(line) = line_of_setting(text, &e.to_string())
            {
                anyhow::bail!("invalid config file {}: line {line}: {e:#}", path.display());
            }
            return Err(e);
        }
        Ok(config)
    }

    /// The CORS origins as the server takes them (checked by `load`).
    pub fn cors_origins(&self) -> rapport_server::cors::AllowedOrigins {
        rapport_server::cors::AllowedOrigins::parse(&self.cors_allowed_origins)
            .expect("validated when the configuration was loaded")
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.auth_cache_ttl_secs <= 300,
            "auth_cache_ttl_secs must be at most 300"
        );
        anyhow::ensure!(
            self.privacy
                .profile_expiry_days
                .is_none_or(|d| (1..=36_500).contains(&d)),
            "privacy.profile_expiry_days must be from 1 to 36500"
        );
        self.connections
            .validate()
            .map_err(|(field, message)| anyhow::anyhow!("connections.{field}: {message}"))?;
        let l = &self.limits;
        anyhow::ensure!(
            l.max_event_bytes >= 1024,
            "limits.max_event_bytes must be at least 1024"
        );
        anyhow::ensure!(
            l.max_batch_bytes >= l.max_event_bytes,
            "limits.max_batch_bytes must be at least limits.max_event_bytes"
        );
        anyhow::ensure!(
            l.max_batch_events >= 1,
            "limits.max_batch_events must be at least 1"
        );
        anyhow::ensure!(l.max_depth >= 4, "limits.max_depth must be at least 4");
        anyhow::ensure!(
            self.database_connect_timeout_secs >= 1,
            "database_connect_timeout_secs must be at least 1"
        );
        anyhow::ensure!(
            self.ingest_queue_depth >= 1,
            "ingest_queue_depth must be at least 1"
        );
        self.models.validate().map_err(|e| match e {
            rapport_engine::EngineError::Invalid { field, message } => {
                anyhow::anyhow!("{field}: {message}")
            }
            other => anyhow::anyhow!("{other}"),
        })?;
        self.identity
            .validate()
            .map_err(|e| anyhow::anyhow!("identity.{}: {}", e.field, e.message))?;
        self.matching.options.validate().map_err(|e| match e {
            rapport_engine::EngineError::InvalidAt { field, message } => {
                anyhow::anyhow!("matching.options.{field}: {message}")
            }
            other => anyhow::anyhow!("matching.options: {other}"),
        })?;
        rapport_server::cors::AllowedOrigins::parse(&self.cors_allowed_origins)
            .map_err(|e| anyhow::anyhow!("cors_allowed_origins: {e}"))?;
        self.listen
            .parse::<std::net::SocketAddr>()
            .with_context(|| {
                format!(
                    "listen must be an address such as 127.0.0.1:8080, not {:?}",
                    self.listen
                )
            })?;
        Ok(())
    }
}

/// The line (1-based) of `text`, a TOML file, that sets the setting a validation message
/// starts with (`limits.max_depth must be…`, `identity.identifiers[1].limit: …`): the
/// setting whose full name is the longest prefix of that name. Tables (`[limits]`),
/// arrays of tables (`[[identity.identifiers]]`, the n-th named `…[n]`) and dotted keys are
/// followed; a name the file does not set gives `None`.
fn line_of_setting(text: &str, message: &str) -> Option<usize> {
    let name: String = message
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']'))
        .collect();
    if name.is_empty() {
        return None;
    }
    let mut table = String::new();
    let mut arrays: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut best: Option<(usize, usize)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let full = if let Some(t) = line.strip_prefix("[[").and_then(|l| l.split("]]").next()) {
            let t = t.trim().to_owned();
            let n = arrays.entry(t.clone()).or_insert(0);
            table = format!("{t}[{n}]");
            *n += 1;
            table.clone()
        } else if let Some(t) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            table = t.trim().to_owned();
            table.clone()
        } else if let Some((key, _)) = line.split_once('=')
            && !line.starts_with('#')
        {
            let key: String = key.trim().trim_matches('"').replace(' ', "");
            if table.is_empty() {
                key
            } else {
                format!("{table}.{key}")
            }
        } else {
            continue;
        };
        let covers = name == full
            || name.starts_with(&format!("{full}."))
            || name.starts_with(&format!("{full}["));
        if covers && best.is_none_or(|(len, _)| full.len() > len) {
            best = Some((full.len(), i + 1));
        }
    }
    best.map(|(_, line)| line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn file_then_flags_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rapport.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\ndedup_window_hours = 24\n[limits]\nmax_batch_events = 100\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(file.clone()),
            dedup_window_hours: Some(1),
            ..ServeArgs::default()
        };
        let c = Config::load(&args, None).unwrap();
        assert_eq!(c.listen, "127.0.0.1:9000");
        assert_eq!(c.dedup_window_hours, 1);
        assert_eq!(c.limits.max_batch_events, 100);
        assert_eq!(c.limits.max_event_bytes, Limits::default().max_event_bytes);
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    }

    #[test]
    fn identity_rules_come_from_the_file_and_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rapport.toml");
        std::fs::write(
            &file,
            "[identity]\nblocked_values = [\"n/a\"]\ncustom_limit = 3\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(file.clone()),
            ..ServeArgs::default()
        };
        let c = Config::load(&args, None).unwrap();
        assert_eq!(c.identity.blocked_values, vec!["n/a".to_string()]);
        assert_eq!(c.identity.custom_limit, 3);
        std::fs::write(&file, "[identity]\ncustom_limit = 0\n").unwrap();
        let err = format!("{:#}", Config::load(&args, None).unwrap_err());
        assert!(err.contains("identity."), "{err}");
    }

    #[test]
    fn model_settings_come_from_the_file_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rapport.toml");
        std::fs::write(
            &file,
            "[models]\npurchase_event = \"Purchase\"\nrefit_interval_hours = 6\n\
             [models.churn]\ninactivity_days = 30\ncancel_events = [\"Plan Cancelled\"]\n\
             [models.acquisition]\nearned = [\"friend\"]\nbought = [\"ad\"]\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(file.clone()),
            refit_interval_hours: Some(0),
            ..ServeArgs::default()
        };
        let c = Config::load(&args, None).unwrap();
        assert_eq!(c.models.purchase_event, "Purchase");
        assert_eq!(c.models.refit_interval_hours, 0);
        assert_eq!(c.models.churn.inactivity_days, 30);
        assert_eq!(
            c.models.churn.cancel_events,
            vec!["Plan Cancelled".to_string()]
        );
        assert_eq!(c.models.acquisition.earned, vec!["friend".to_string()]);
        assert_eq!(c.models.revenue_property, "revenue");
        std::fs::write(&file, "[models.churn]\ntest_fraction = 2.0\n").unwrap();
        let err = format!("{:#}", Config::load(&args, None).unwrap_err());
        assert!(err.contains("test_fraction"), "{err}");
    }

    #[test]
    fn the_documented_model_settings_load() {
        let doc = include_str!("../../../docs/value/live.md");
        let toml_block = doc
            .split("```toml\n")
            .nth(1)
            .and_then(|b| b.split("```").next())
            .expect("docs/value/live.md has a TOML example");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rapport.toml");
        std::fs::write(&file, toml_block).unwrap();
        let args = ServeArgs {
            config: Some(file),
            ..ServeArgs::default()
        };
        let c = Config::load(&args, None).unwrap();
        assert_eq!(c.models.clv.holdout_days, 90);
        assert!(c.models.acquisition.earned.contains(&"friend".to_string()));
    }

    #[test]
    fn environment_sits_between_file_and_flags() {
        // clap resolves flag > environment; the variable is read only if no flag is given.
        // SAFETY: this test is the only one in the binary touching this variable.
        unsafe { std::env::set_var("RAPPORT_MAX_BATCH_EVENTS", "7") };
        let from_env = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(from_env.serve.max_batch_events, Some(7));
        let from_flag = Cli::try_parse_from(["x", "--max-batch-events", "9"]).unwrap();
        assert_eq!(from_flag.serve.max_batch_events, Some(9));
        unsafe { std::env::remove_var("RAPPORT_MAX_BATCH_EVENTS") };
    }

    #[test]
    fn cors_origins_come_from_the_file_then_the_flag_and_are_checked() {
        use rapport_server::cors::AllowedOrigins;
        assert_eq!(Config::default().cors_origins(), AllowedOrigins::Any);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rapport.toml");
        std::fs::write(&file, "cors_allowed_origins = [\"https://a.example\"]\n").unwrap();
        let mut args = ServeArgs {
            config: Some(file.clone()),
            ..ServeArgs::default()
        };
        let c = Config::load(&args, None).unwrap();
        assert_eq!(
            c.cors_origins(),
            AllowedOrigins::List(vec!["https://a.example".into()])
        );
        let cli = Cli::try_parse_from([
            "x",
            "--cors-allowed-origins",
            "http://b.test,http://c.test:3000",
        ])
        .unwrap();
        args.cors_allowed_origins = cli.serve.cors_allowed_origins;
        assert_eq!(
            Config::load(&args, None).unwrap().cors_origins(),
            AllowedOrigins::List(vec!["http://b.test".into(), "http://c.test:3000".into()])
        );
        args.cors_allowed_origins = Some(vec!["https://a.example/".into()]);
        let err = format!("{:#}", Config::load(&args, None).unwrap_err());
        assert!(err.contains("cors_allowed_origins"), "{err}");
    }

    #[test]
    fn bad_files_and_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "listne = \"x\"\n").unwrap();
        let args = ServeArgs {
            config: Some(file.clone()),
            ..ServeArgs::default()
        };
        let err = format!("{:#}", Config::load(&args, None).unwrap_err());
        assert!(err.contains("listne"), "{err}");
        // What is refused after parsing is named with its line too, as the parser names
        // what it refuses; a value given by a flag is not blamed on the file.
        for (text, line) in [
            ("log_format = \"text\"\nlisten = \"nowhere\"\n", 2),
            ("[limits]\n# the deepest JSON\nmax_depth = 2\n", 3),
            ("auth_cache_ttl_secs = 3600\n", 1),
        ] {
            std::fs::write(&file, text).unwrap();
            let args = ServeArgs {
                config: Some(file.clone()),
                ..ServeArgs::default()
            };
            let err = format!("{:#}", Config::load(&args, None).unwrap_err());
            assert!(err.contains(&format!("line {line}:")), "{text}: {err}");
            assert!(err.contains("bad.toml"), "{err}");
        }
        std::fs::write(&file, "listen = \"127.0.0.1:8080\"\n").unwrap();
        let args = ServeArgs {
            config: Some(file.clone()),
            listen: Some("nowhere".into()),
            ..ServeArgs::default()
        };
        let err = format!("{:#}", Config::load(&args, None).unwrap_err());
        assert!(!err.contains("line"), "{err}");
        let args = ServeArgs {
            listen: Some("nowhere".into()),
            ..ServeArgs::default()
        };
        let err = format!("{:#}", Config::load(&args, None).unwrap_err());
        assert!(err.contains("listen"), "{err}");
    }

    #[test]
    fn the_documented_matching_settings_load_and_bad_ones_are_named() {
        let doc = include_str!("../../../docs/identity-matching.md");
        let toml_block = doc
            .split("```toml\n")
            .nth(1)
            .and_then(|b| b.split("```").next())
            .expect("docs/identity-matching.md has a TOML example");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rapport.toml");
        std::fs::write(&file, toml_block).unwrap();
        let args = ServeArgs {
            config: Some(file.clone()),
            ..ServeArgs::default()
        };
        let c = Config::load(&args, None).unwrap();
        assert_eq!(c.matching.interval_hours, 24);
        assert_eq!(c.matching.options.match_probability, 0.995);
        assert_eq!(
            c.matching.options.fields["city"],
            vec!["address.town".to_string(), "city".to_string()]
        );
        std::fs::write(
            &file,
            "[matching.options]\nmatch_probability = 0.4\nreview_probability = 0.5\n",
        )
        .unwrap();
        let err = format!("{:#}", Config::load(&args, None).unwrap_err());
        assert!(err.contains("matching.options.review_probability"), "{err}");
    }
}
