//! `rapport sources show|update …`: read and change a source's settings — the per-source
//! limits on what its (often public) write key can do — on a running server, through
//! `GET`/`PATCH /api/v1/sources/{source}`. See docs/security.md.

use crate::audience_cli::{print, urlencode};
use crate::client::{Client, ServerArgs};
use anyhow::bail;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value, json};

#[derive(Subcommand)]
pub enum SourceSettingsCommand {
    /// A source (by name or id) with its settings.
    Show {
        /// The source, by name or id.
        source: String,
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, hide = true)]
        json: bool,
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
    #[command(flatten)]
    pub server: ServerArgs,
    #[arg(long, hide = true)]
    pub json: bool,
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

fn show(source: &Value) {
    println!(
        "{}  {}",
        source["id"].as_str().unwrap_or(""),
        source["name"].as_str().unwrap_or("")
    );
    let s = &source["settings"];
    let list = |v: &Value| match v.as_array() {
        Some(a) => a
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
        None => "any".into(),
    };
    println!("  traits allowed:   {}", list(&s["traits"]["allow"]));
    println!(
        "  traits denied:    {}",
        s["traits"]["deny"]
            .as_array()
            .map_or("none".into(), |_| list(&s["traits"]["deny"]))
    );
    println!(
        "  may merge:        {}",
        s["identity"]["merge"].as_bool().unwrap_or(true)
    );
    println!(
        "  identifier types: {}",
        list(&s["identity"]["identifier_types"])
    );
    let limit = |v: &Value| match (v["per_second"].as_u64(), v["burst"].as_u64()) {
        (Some(p), Some(b)) => format!("{p}/s, burst {b}"),
        _ => "none".into(),
    };
    println!("  rate limit:       {}", limit(&s["rate_limit"]));
    println!("  per-IP limit:     {}", limit(&s["ip_rate_limit"]));
}

pub fn run(cmd: SourceSettingsCommand) -> anyhow::Result<()> {
    let (source, json) = match cmd {
        SourceSettingsCommand::Show {
            source,
            server,
            json,
        } => {
            let path = format!("/api/v1/sources/{}", urlencode(&source));
            (Client::new(&server)?.call(Method::GET, &path, None)?, json)
        }
        SourceSettingsCommand::Update(args) => {
            let client = Client::new(&args.server)?;
            let path = format!("/api/v1/sources/{}", urlencode(&args.source));
            let current = client.call(Method::GET, &path, None)?;
            let body = patch_body(&args, &current["settings"])?;
            (client.call(Method::PATCH, &path, Some(body))?, args.json)
        }
    };
    if crate::client::json(json) {
        return print(&source);
    }
    show(&source);
    Ok(())
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
        all.extend(["--admin-key", "ak_x"]);
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
