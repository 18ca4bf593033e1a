//! `rapport audit`: the audit trail of a running server (`GET /api/v1/audit`), newest
//! first, filtered by action, actor, resource and time.

use crate::client::{self, Client, PageArgs, Pages, ServerArgs, emit};
use crate::out;
use clap::Args;
use rapport_api::audit::{AuditEntry, AuditQuery};

/// What `rapport audit` reads.
#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub output: client::OutputArgs,
    /// Only this action (`segment.update`), or every action starting with the text before a
    /// final `*` (`journey.*`).
    #[arg(long)]
    pub action: Option<String>,
    /// Only requests made with this admin key (`key_…`).
    #[arg(long)]
    pub actor: Option<String>,
    /// Only requests on resources of this type (`segment`, `key`, `profile`, …).
    #[arg(long)]
    pub resource_type: Option<String>,
    /// Only requests on this resource (its id or name; for a person the hex SHA-256 of the
    /// reference).
    #[arg(long)]
    pub resource_id: Option<String>,
    /// Only requests at or after this ISO-8601 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Only requests before this ISO-8601 time.
    #[arg(long)]
    pub until: Option<String>,
    #[command(flatten)]
    pub page: PageArgs,
}

pub fn run(args: AuditArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.server)?;
    let format = args.output.format();
    let query = AuditQuery {
        actor: args.actor.clone(),
        action: args.action.clone(),
        resource_type: args.resource_type.clone(),
        resource_id: args.resource_id.clone(),
        since: args.since.clone(),
        until: args.until.clone(),
        limit: None,
        cursor: None,
    };
    let pages = Pages::read(&args.page, |limit, cursor| {
        client.audit(&query, limit, cursor)
    })?;
    emit(format, &pages.json()?, |o| {
        out!(
            o,
            "{:<20}  {:<28}  {:<40}  {:<6}  {:<20}  {}",
            "at",
            "action",
            "resource",
            "status",
            "actor",
            "address"
        );
        for e in pages.items() {
            row(o, e);
        }
    })?;
    pages.tell_more(format, "entries");
    Ok(())
}

fn row(o: &mut String, e: &AuditEntry) {
    let resource = match &e.resource.id {
        Some(id) => format!("{} {id}", e.resource.kind),
        None => e.resource.kind.clone(),
    };
    let status = match &e.error {
        Some(code) => format!("{} {code}", e.status),
        None => e.status.to_string(),
    };
    out!(
        o,
        "{:<20}  {:<28}  {:<40}  {:<6}  {:<20}  {}",
        rapport_api::time::display_ms(e.at_ms),
        e.action,
        resource,
        status,
        e.actor.key_name,
        e.address.as_deref().unwrap_or("-")
    );
}
