//! Sources and API keys (`sources`, `api_keys`): small tables, written synchronously.

use super::PostgresStore;
use crate::{ApiKey, KeyKind, Registry, Result, Source, SourceSettings, StoreError};

fn kind_name(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::Write => "write",
        KeyKind::Admin => "admin",
    }
}

fn api_key(r: &postgres::Row) -> Result<ApiKey> {
    let kind: String = r.get(1);
    let kind = match kind.as_str() {
        "write" => KeyKind::Write,
        "admin" => KeyKind::Admin,
        other => {
            return Err(StoreError::Corrupt(format!(
                "unknown API key kind {other:?}"
            )));
        }
    };
    Ok(ApiKey {
        id: r.get(0),
        kind,
        source_id: r.get(2),
        name: r.get(3),
        secret_hash: r.get(4),
        secret_prefix: r.get(5),
        created_at_ms: r.get(6),
        revoked_at_ms: r.get(7),
    })
}

const KEY_COLUMNS: &str =
    "id, kind, source_id, name, secret_hash, secret_prefix, created_at_ms, revoked_at_ms";

impl Registry for PostgresStore {
    fn put_source(&self, source: &Source) -> Result<()> {
        self.rows(
            "insert into sources (id, name, created_at_ms, settings) values ($1, $2, $3, $4)
             on conflict (id) do update
             set name = excluded.name, created_at_ms = excluded.created_at_ms,
                 settings = excluded.settings",
            &[
                &source.id,
                &source.name,
                &source.created_at_ms,
                &serde_json::to_string(&source.settings).expect("settings serialise"),
            ],
        )?;
        Ok(())
    }

    fn sources(&self) -> Result<Vec<Source>> {
        let rows = self.rows(
            r#"select id, name, created_at_ms, settings from sources order by id collate "C""#,
            &[],
        )?;
        rows.iter()
            .map(|r| {
                let settings = match r.get::<_, Option<String>>(3) {
                    None => SourceSettings::default(),
                    Some(text) => serde_json::from_str(&text).map_err(|e| {
                        StoreError::Engine(format!(
                            "the settings of source {}: {e}",
                            r.get::<_, String>(0)
                        ))
                    })?,
                };
                Ok(Source {
                    id: r.get(0),
                    name: r.get(1),
                    created_at_ms: r.get(2),
                    settings,
                })
            })
            .collect()
    }

    fn put_key(&self, key: &ApiKey) -> Result<()> {
        self.rows(
            &format!(
                "insert into api_keys ({KEY_COLUMNS}) values ($1, $2, $3, $4, $5, $6, $7, $8)
                 on conflict (id) do update set
                 kind = excluded.kind, source_id = excluded.source_id, name = excluded.name,
                 secret_hash = excluded.secret_hash, secret_prefix = excluded.secret_prefix,
                 created_at_ms = excluded.created_at_ms, revoked_at_ms = excluded.revoked_at_ms"
            ),
            &[
                &key.id,
                &kind_name(key.kind),
                &key.source_id,
                &key.name,
                &key.secret_hash,
                &key.secret_prefix,
                &key.created_at_ms,
                &key.revoked_at_ms,
            ],
        )?;
        Ok(())
    }

    fn keys(&self) -> Result<Vec<ApiKey>> {
        self.rows(
            &format!(r#"select {KEY_COLUMNS} from api_keys order by id collate "C""#),
            &[],
        )?
        .iter()
        .map(api_key)
        .collect()
    }

    fn key_by_hash(&self, secret_hash: &str) -> Result<Option<ApiKey>> {
        self.rows(
            &format!(
                r#"select {KEY_COLUMNS} from api_keys where secret_hash = $1
                   order by id collate "C" limit 1"#
            ),
            &[&secret_hash],
        )?
        .first()
        .map(api_key)
        .transpose()
    }
}
