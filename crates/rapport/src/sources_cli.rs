//! `rapport sources show|update …`: read and change a source's settings — the per-source
//! limits on what its (often public) write key can do — on a running server, through
//! `GET`/`PATCH /api/v1/sources/{source}`. See docs/security.md.

use crate::client::{Client, Format, ServerArgs, emit};
use crate::out;
use anyhow::bail;
use clap::{Args, Subcommand};
use rapport_api::sources::{RateLimit, Source, SourceUpdate};
use serde_json::{Map, Value, json};

#[derive(Subcommand)]
pub enum SourceSettingsCommand {
    /// A source (by name or id) with its settings.
    Show {
        /// The source, by name or id.
        source: String,
    },
    /// Change a source's name or settings; parts not named keep their values.
    Update(UpdateArgs),
}

#[derive(Args)]
pub struct UpdateArgs {
    /// The source, by name or id.
    pub source: String,
    /// A new name.
    #[arg(long)]
    pub name: Option<String>,
    /// Only these trait names may be set (comma-separated); replaces the allow-list.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub allow_traits: Option<Vec<String>>,
    /// Any trait name may be set again (removes the allow-list).
    #[arg(long, conflicts_with = "allow_traits")]
    pub any_traits: bool,
    /// These trait names may not be set (comma-separated; empty to clear); replaces the
    /// deny-list.
    #[arg(long, value_delimiter = ',', num_args = 0..)]
    pub deny_traits: Option<Vec<String>>,
    /// Whether the source's events may merge two existing profiles.
    #[arg(long)]
    pub merge: Option<bool>,
    /// The identifier types the source may assert (comma-separated: user_id,anonymous_id).
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub identifier_types: Option<Vec<String>>,
    /// The source may assert every identifier type again.
    #[arg(long, conflicts_with = "identifier_types")]
    pub any_identifier_types: bool,
    /// Events per second for the source, as RATE/BURST (`50/200`), or `none`.
    #[arg(long)]
    pub rate_limit: Option<String>,
    /// Requests per second from one client IP, as RATE/BURST (`5/20`), or `none`.
    #[arg(long)]
    pub ip_rate_limit: Option<String>,
    /// Days the source's events are kept (older ones are erased daily), or `none`.
    #[arg(long)]
    pub retention_days: Option<String>,
}

/// `RATE/BURST` (or a bare `RATE`, burst equal to it) as settings JSON; `none` as null.
fn rate(text: &str, flag: &str) -> anyhow::Result<Value> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(Value::Null);
    }
    let (per_second, burst) = text.split_once('/').unwrap_or((text, text));
    match (
        per_second.trim().parse::<u32>(),
        burst.trim().parse::<u32>(),
    ) {
        (Ok(p), Ok(b)) => Ok(json!({"per_second": p, "burst": b})),
        _ => bail!("--{flag} takes RATE/BURST (whole numbers, e.g. 50/200) or `none`"),
    }
}

/// The `PATCH` body for `current` settings (parts are replaced whole, so changing one list
/// of a part keeps the part's other fields).
pub fn patch_body(args: &UpdateArgs, current: &Value) -> anyhow::Result<Value> {
    let mut settings = Map::new();
    let part = |name: &str| -> Map<String, Value> {
        current[name].as_object().cloned().unwrap_or_default()
    };
    if args.allow_traits.is_some() || args.any_traits || args.deny_traits.is_some() {
        let mut traits = part("traits");
        if let Some(allow) = &args.allow_traits {
            traits.insert("allow".into(), json!(allow));
        }
        if args.any_traits {
            traits.remove("allow");
        }
        if let Some(deny) = &args.deny_traits {
            let deny: Vec<&String> = deny.iter().filter(|d| !d.is_empty()).collect();
            traits.insert("deny".into(), json!(deny));
        }
        settings.insert("traits".into(), Value::Object(traits));
    }
    if args.merge.is_some() || args.identifier_types.is_some() || args.any_identifier_types {
        let mut identity = part("identity");
        if let Some(m) = args.merge {
            identity.insert("merge".into(), json!(m));
        }
        if let Some(types) = &args.identifier_types {
            identity.insert("identifier_types".into(), json!(types));
        }
        if args.any_identifier_types {
            identity.remove("identifier_types");
        }
        settings.insert("identity".into(), Value::Object(identity));
    }
    if let Some(r) = &args.rate_limit {
        settings.insert("rate_limit".into(), rate(r, "rate-limit")?);
    }
    if let Some(r) = &args.ip_rate_limit {
        settings.insert("ip_rate_limit".into(), rate(r, "ip-rate-limit")?);
    }
    if let Some(days) = &args.retention_days {
        let value = if days.eq_ignore_ascii_case("none") {
            Value::Null
        } else {
            match days.trim().parse::<u32>() {
                Ok(d) => json!(d),
                Err(_) => bail!("--retention-days takes a number of days or `none`"),
            }
        };
        settings.insert("retention_days".into(), value);
    }
    let mut body = Map::new();
    if let Some(name) = &args.name {
        body.insert("name".into(), json!(name));
    }
    if !settings.is_empty() {
        body.insert("settings".into(), Value::Object(settings));
    }
    if body.is_empty() {
        bail!("nothing to change: name a setting (see --help)");
    }
    Ok(Value::Object(body))
}

fn show(o: &mut String, source: &Source) {
    out!(o, "{}  {}", source.id, source.name);
    let s = &source.settings;
    let list = |v: Option<&Vec<String>>| match v {
        Some(a) => a.join(","),
        None => "any".into(),
    };
    out!(o, "  traits allowed:   {}", list(s.traits.allow.as_ref()));
    let denied = match s.traits.deny.as_slice() {
        [] => "none".into(),
        names => names.join(","),
    };
    out!(o, "  traits denied:    {denied}");
    out!(o, "  may merge:        {}", s.identity.merge);
    out!(
        o,
        "  identifier types: {}",
        list(s.identity.identifier_types.as_ref())
    );
    let limit = |v: Option<RateLimit>| match v {
        Some(r) => format!("{}/s, burst {}", r.per_second, r.burst),
        None => "none".into(),
    };
    out!(o, "  rate limit:       {}", limit(s.rate_limit));
    out!(o, "  per-IP limit:     {}", limit(s.ip_rate_limit));
    let kept = s
        .retention_days
        .map_or("until deleted".to_owned(), |d| format!("{d} days"));
    out!(o, "  events kept:      {kept}");
}

pub fn run(cmd: SourceSettingsCommand, server: &ServerArgs, format: Format) -> anyhow::Result<()> {
    let client = Client::new(server)?;
    let source = match cmd {
        SourceSettingsCommand::Show { source } => client.source(&source)?,
        SourceSettingsCommand::Update(args) => {
            let current = client.source(&args.source)?;
            let body = patch_body(&args, &serde_json::to_value(&current.value.settings)?)?;
            let update: SourceUpdate = serde_json::from_value(body)?;
            client.update_source(&args.source, &update)?
        }
    };
    emit(format, &source.json, |o| show(o, &source.value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: SourceSettingsCommand,
    }

    fn body(args: &[&str], current: Value) -> anyhow::Result<Value> {
        let mut all = vec!["rapport", "update"];
        all.extend(args);
        match Cli::try_parse_from(all)?.cmd {
            SourceSettingsCommand::Update(a) => patch_body(&a, &current),
            _ => unreachable!(),
        }
    }

    #[test]
    fn flags_become_a_patch_that_keeps_what_they_do_not_name() {
        let current =
            json!({"traits": {"allow": ["name"], "deny": ["plan"]}, "identity": {"merge": true}});
        assert_eq!(
            body(&["web", "--deny-traits", "plan,is_admin"], current.clone()).unwrap(),
            json!({"settings": {"traits": {"allow": ["name"], "deny": ["plan", "is_admin"]}}})
        );
        assert_eq!(
            body(&["web", "--any-traits"], current.clone()).unwrap(),
            json!({"settings": {"traits": {"deny": ["plan"]}}})
        );
        assert_eq!(
            body(
                &[
                    "web",
                    "--merge",
                    "false",
                    "--identifier-types",
                    "user_id,anonymous_id"
                ],
                current.clone()
            )
            .unwrap(),
            json!({"settings": {"identity": {"merge": false, "identifier_types": ["user_id", "anonymous_id"]}}})
        );
        assert_eq!(
            body(
                &["web", "--rate-limit", "50/200", "--ip-rate-limit", "none"],
                current.clone()
            )
            .unwrap(),
            json!({"settings": {"rate_limit": {"per_second": 50, "burst": 200}, "ip_rate_limit": null}})
        );
        assert_eq!(
            body(&["web", "--name", "browser"], current.clone()).unwrap(),
            json!({"name": "browser"})
        );
        assert!(body(&["web", "--rate-limit", "fast"], current.clone()).is_err());
        assert!(body(&["web"], current).is_err());
    }
}
