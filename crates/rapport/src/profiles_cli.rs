//! `rapport profiles search --trait … --value …`: profiles whose trait equals a value, a
//! page at a time; `rapport profiles consent <ref>`: a profile's consent per purpose — the current
//! decision for each with its time and source, and the history — and
//! `rapport profiles consent <ref> --grant … --deny …` to set purposes (source `api`),
//! through `GET`/`PUT /api/v1/profiles/{ref}/consent`. See docs/consent.md.

use crate::client::{Client, Format, ServerArgs, emit};
use crate::out;
use anyhow::bail;
use clap::{Args, Subcommand};
use rapport_api::profiles::{ConsentSaved, ConsentUpdate, ProfileConsent};
use std::collections::BTreeMap;

#[derive(Subcommand)]
pub enum ProfilesCommand {
    /// Profiles whose trait equals a value, by profile id, a page at a time.
    Search {
        /// The trait to search by.
        #[arg(long = "trait")]
        trait_name: String,
        /// The value to match, read as JSON when it parses (`42`, `true`, `'"42"'`), else as
        /// a string.
        #[arg(long)]
        value: String,
        #[command(flatten)]
        page: crate::client::PageArgs,
    },
    /// A profile's consent per purpose and its history; with --grant/--deny, set purposes
    /// first (the others are left as they are).
    Consent(ConsentArgs),
}

#[derive(Args)]
pub struct ConsentArgs {
    /// The profile: its id (`p_…`) or an identifier as `type:value` (`user_id:42`).
    pub reference: String,
    /// Purposes to grant (comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    pub grant: Vec<String>,
    /// Purposes to deny (comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    pub deny: Vec<String>,
    /// History entries to show (newest first).
    #[arg(long)]
    pub limit: Option<usize>,
    /// `next_cursor` of a previous page of the history.
    #[arg(long)]
    pub cursor: Option<String>,
}

pub fn run(command: ProfilesCommand, server: &ServerArgs, format: Format) -> anyhow::Result<()> {
    let client = Client::new(server)?;
    match command {
        ProfilesCommand::Consent(args) => consent(&client, args, format),
        ProfilesCommand::Search {
            trait_name,
            value,
            page,
        } => search(&client, &trait_name, &value, &page, format),
    }
}

fn search(
    client: &Client,
    trait_name: &str,
    value: &str,
    page: &crate::client::PageArgs,
    format: Format,
) -> anyhow::Result<()> {
    let pages = crate::client::Pages::read(page, |limit, cursor| {
        client.search_profiles(trait_name, value, limit, cursor)
    })?;
    emit(format, &pages.json()?, |o| {
        out!(o, "{:<20} {:<40} LAST SEEN", "PROFILE", "IDENTIFIER");
        for p in pages.items() {
            let identifier = p
                .identifiers
                .first()
                .map_or("-".to_owned(), |i| format!("{}:{}", i.kind, i.value));
            let last = p
                .last_seen
                .as_deref()
                .map_or("-".to_owned(), rapport_api::time::display);
            out!(o, "{:<20} {:<40} {}", p.id, identifier, last);
        }
    })?;
    pages.tell_more(format, "profiles");
    Ok(())
}

fn consent(client: &Client, args: ConsentArgs, format: Format) -> anyhow::Result<()> {
    if !args.grant.is_empty() || !args.deny.is_empty() {
        let mut preferences = BTreeMap::new();
        for p in &args.grant {
            preferences.insert(p.clone(), true);
        }
        for p in &args.deny {
            if preferences.insert(p.clone(), false).is_some() {
                bail!("purpose {p:?} is both granted and denied");
            }
        }
        let saved = client.set_consent(
            &args.reference,
            &ConsentUpdate {
                category_preferences: preferences,
            },
        )?;
        if let ConsentSaved::Pending(p) = &saved.value {
            return emit(format, &saved.json, |o| {
                out!(
                    o,
                    "pending: the change (request {}) is in the log, not applied yet",
                    p.request
                );
            });
        }
    }
    let answer = client.consent(&args.reference, args.limit, args.cursor.as_deref())?;
    emit(format, &answer.json, |o| table(o, &answer.value))
}

fn table(o: &mut String, c: &ProfileConsent) {
    out!(o, "profile {}", c.id);
    if c.current.is_empty() {
        out!(o, "no consent recorded: no purpose is granted");
    } else {
        out!(
            o,
            "{:<24} {:<8} {:<24} {:<16} MESSAGE",
            "PURPOSE",
            "GRANTED",
            "AT",
            "SOURCE"
        );
        for (purpose, d) in &c.current {
            out!(
                o,
                "{:<24} {:<8} {:<24} {:<16} {}",
                purpose,
                if d.granted { "yes" } else { "no" },
                d.at,
                d.source,
                d.message_id
            );
        }
    }
    if !c.history.is_empty() {
        out!(o, "");
        out!(o, "history, newest first:");
        for h in &c.history {
            out!(
                o,
                "{}  {:<24} {:<8} {:<16} {}{}",
                h.at,
                h.purpose,
                if h.granted { "granted" } else { "denied" },
                h.source,
                h.message_id,
                if h.effective {
                    ""
                } else {
                    "  (older than the decision in force: no effect)"
                }
            );
        }
    }
    if let Some(next) = &c.next_cursor {
        out!(o, "more: --cursor {next}");
    }
}
