//! The schema: migrations applied in order when the store opens, and the tables whose
//! size the store reports.

/// Schema migrations, applied in order; a released migration is never edited, only followed.
pub(super) const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        "
    create table log (
        log_offset bigint primary key,
        payload bytea not null
    );
    create table dedup (
        dedup_key bytea primary key,
        received_ms bigint not null
    );
    create index dedup_received_ms on dedup (received_ms);
    create table consumers (
        consumer text primary key,
        log_offset bigint not null
    );
    create table events_by_time (
        ts bigint not null,
        log_offset bigint not null,
        kind text not null,
        name text,
        primary key (ts, log_offset)
    );
    create table events_by_user (
        user_id text not null,
        ts bigint not null,
        log_offset bigint not null,
        anonymous_id text,
        kind text not null,
        name text,
        primary key (user_id, ts, log_offset)
    );
    create table events_by_anon (
        anonymous_id text not null,
        ts bigint not null,
        log_offset bigint not null,
        kind text not null,
        name text,
        primary key (anonymous_id, ts, log_offset)
    );
    create table state (
        profile_id text not null,
        namespace text not null,
        key bytea not null,
        value bytea not null,
        primary key (profile_id, namespace, key)
    );
    create table sources (
        id text primary key,
        name text not null,
        created_at_ms bigint not null
    );
    create table api_keys (
        id text primary key,
        kind text not null,
        source_id text,
        name text not null,
        secret_hash text not null,
        secret_prefix text not null,
        created_at_ms bigint not null,
        revoked_at_ms bigint
    );
    create index api_keys_secret_hash on api_keys (secret_hash);
    ",
    ),
    (
        2,
        // A source's settings as JSON text; null (every row written before) reads as the
        // default settings: no restriction.
        "alter table sources add column settings text;",
    ),
    (
        3,
        // The source of each indexed event, so that events can be listed by source. Rows
        // indexed before take it from their event. PostgreSQL's JSON operators refuse the
        // escape `\u0000` anywhere in a document, so it is read as `\u0001` (the same
        // length and kind of escape, and never in a source id).
        "
    alter table events_by_time add column source_id text;
    alter table events_by_user add column source_id text;
    alter table events_by_anon add column source_id text;
    create or replace function pg_temp.source_of(payload bytea) returns text language sql immutable
        as $$ select replace(convert_from(payload, 'UTF8'), '\\u0000', '\\u0001')::json
                     ->> 'sourceId' $$;
    update events_by_time i set source_id = pg_temp.source_of(l.payload)
        from log l where l.log_offset = i.log_offset;
    update events_by_user i set source_id = pg_temp.source_of(l.payload)
        from log l where l.log_offset = i.log_offset;
    update events_by_anon i set source_id = pg_temp.source_of(l.payload)
        from log l where l.log_offset = i.log_offset;
    ",
    ),
];

/// The tables [`EventLog::disk_bytes`] sums.
pub(super) const TABLES: &[&str] = &[
    "log",
    "dedup",
    "consumers",
    "events_by_time",
    "events_by_user",
    "events_by_anon",
    "state",
    "sources",
    "api_keys",
];
