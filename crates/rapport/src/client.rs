//! The one client of the REST API that every management command uses (`sources`, `keys`,
//! `segments`, `traits`, `identity`, `destinations`, `fit`, `report`): where the server is
//! and which admin key to present ([`ServerArgs`]), how a result is printed
//! ([`OutputArgs`]), one method per endpoint, and one error path.
//!
//! Methods return the wire types of `rapport_api` where the contract crate has them
//! (sources, keys, segments and computed traits, identity, value-model fits and reports),
//! wrapped in an [`Answer`] that keeps the JSON as the server sent it, so that
//! `--format json` prints the API's answer as it is. Deletions answer `204 No Content`,
//! read as `null`.
//!
//! A non-2xx answer becomes an [`ApiError`]: the server's `rapport_api::ErrorEnvelope`
//! shown as `code: message (field)` with the HTTP status; `main` prints it and exits non-zero.
//! A connection failure names the URL it could not reach.

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use rapport_api::audiences::{
    AudiencesStatus, ComputedTrait, ComputedTraitDefinition, FeedPage, Member, Segment,
    SegmentDefinition, SizePoint,
};
use rapport_api::identity::{
    Candidate, MatchingStatus, Pair, RulesSaved, RulesVersion, RunStarted,
};
use rapport_api::keys::{IssuedKey, Key, NewKey};
use rapport_api::profiles::{ConsentSaved, ConsentUpdate, ProfileConsent};
use rapport_api::sources::{CreatedSource, NewSource, Source, SourceUpdate};
use rapport_api::value::{Job, JobList};
use rapport_api::{ErrorBody, ErrorEnvelope, List, Page};
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::time::Duration;

/// Where the server is, and the admin key to present. Global within each management
/// command, so the flags may follow any of its subcommands.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Base URL of the running server.
    #[arg(
        long,
        global = true,
        env = "RAPPORT_URL",
        default_value = "http://127.0.0.1:8080",
        value_parser = server_url
    )]
    pub url: String,
    /// An admin key (the first `rapport serve` prints one).
    #[arg(
        long,
        global = true,
        env = "RAPPORT_ADMIN_KEY",
        hide_env_values = true,
        value_parser = admin_key
    )]
    pub admin_key: Option<String>,
}

/// `--url`: an absolute http(s) URL of a server, said in plain words when it is not one
/// (a relative `localhost:8080` would otherwise fail deep in the HTTP client).
pub fn server_url(text: &str) -> Result<String, String> {
    let expected = "expected the server's absolute URL, such as http://127.0.0.1:8080";
    match reqwest::Url::parse(text) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            Ok(text.to_owned())
        }
        Ok(u) if matches!(u.scheme(), "http" | "https") => {
            Err(format!("the URL names no host; {expected}"))
        }
        Err(e) if text.contains("://") => Err(format!("it is not a URL ({e}); {expected}")),
        _ => Err(format!(
            "it does not start with http:// or https://; {expected}"
        )),
    }
}

/// `--admin-key`: a key, not an empty string (which would be sent as no key at all).
fn admin_key(text: &str) -> Result<String, String> {
    let key = text.trim();
    if key.is_empty() {
        return Err(
            "the admin key is empty; pass the admin key (ak_…) that the first `rapport serve` printed, or one from `rapport keys create --kind admin`"
                .to_owned(),
        );
    }
    Ok(key.to_owned())
}

/// How a command prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    /// Columns for people; times in UTC to the second.
    #[default]
    Table,
    /// The API's JSON answer as it is, pretty-printed.
    Json,
}

/// The output options of every command that prints a result.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// How to print the result: a table, or the API's JSON answer as it is.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    format: Format,
}

impl OutputArgs {
    pub fn format(&self) -> Format {
        self.format
    }
}

/// Prints JSON pretty, or the table `table` writes. A closed pipe (`| head`) is not an
/// error.
pub fn emit(format: Format, json: &Value, table: impl FnOnce(&mut String)) -> anyhow::Result<()> {
    let mut text = String::new();
    match format {
        Format::Json => {
            text = serde_json::to_string_pretty(json)?;
            text.push('\n');
        }
        Format::Table => table(&mut text),
    }
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// The largest page the REST API serves (`limit` of every paged route).
pub const MAX_PAGE: u32 = 1000;

/// The paging options of every command that lists a paged route: `--limit`, `--cursor`,
/// `--all`. A limit above the server's maximum is refused here, naming the flag, rather
/// than clamped out of sight.
#[derive(Debug, Clone, Args)]
pub struct PageArgs {
    /// Items per page, 1 to 1000; with --all every page is read.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=MAX_PAGE as i64))]
    pub limit: u32,
    /// Start at this cursor: the `next_cursor` of a page read before.
    #[arg(long)]
    pub cursor: Option<String>,
    /// Read every page from there, not only one.
    #[arg(long)]
    pub all: bool,
}

/// The pages read from `args.cursor` on — one, or with `--all` all of them — and the
/// cursor after the last (`None` at the end). `fetch` reads one page at a cursor.
pub struct Pages<T> {
    pub pages: Vec<Answer<Page<T>>>,
    pub next_cursor: Option<String>,
}

impl<T> Pages<T> {
    pub fn read(
        args: &PageArgs,
        mut fetch: impl FnMut(u32, Option<&str>) -> anyhow::Result<Answer<Page<T>>>,
    ) -> anyhow::Result<Pages<T>>
    where
        T: Clone,
    {
        let mut pages = Vec::new();
        let mut cursor = args.cursor.clone();
        loop {
            let page = fetch(args.limit, cursor.as_deref())?;
            cursor = page.value.next_cursor.clone();
            pages.push(page);
            if !args.all || cursor.is_none() {
                break;
            }
        }
        Ok(Pages {
            pages,
            next_cursor: cursor,
        })
    }

    /// Every item read, in order.
    pub fn items(&self) -> impl Iterator<Item = &T> {
        self.pages.iter().flat_map(|p| &p.value.data)
    }

    /// What `--format json` prints: one page as the server sent it; several as one page
    /// of them all, each item as the server sent it.
    pub fn json(&self) -> anyhow::Result<Value> {
        if let [one] = self.pages.as_slice() {
            return Ok(one.json.clone());
        }
        let mut data = Vec::new();
        for p in &self.pages {
            data.extend(<Page<Value> as serde::Deserialize>::deserialize(&p.json)?.data);
        }
        Ok(serde_json::to_value(Page {
            data,
            next_cursor: self.next_cursor.clone(),
        })?)
    }

    /// Tells a table's reader that `what` continue, and how to read them.
    pub fn tell_more(&self, format: Format, what: &str) {
        if let (Format::Table, Some(c)) = (format, &self.next_cursor) {
            eprintln!("more {what} follow (--all reads every page; --cursor {c} reads the next)");
        }
    }
}

/// Appends one formatted line to a table being built.
#[macro_export]
macro_rules! out {
    ($o:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($o, $($arg)*);
    }};
}

/// The text of `file` (`-`: standard input) with the name errors give it; `what` says
/// what the file holds (`spec`, `plan`) in the error when it cannot be read.
pub fn read_input(file: &str, what: &str) -> anyhow::Result<(String, String)> {
    if file == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .with_context(|| format!("cannot read the {what} from standard input"))?;
        Ok(("standard input".to_owned(), text))
    } else {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the {what} file {file}"))?;
        Ok((file.to_owned(), text))
    }
}

/// `text` read as a `T` and as JSON; an error naming `name` and the line and column of
/// the first fault otherwise (`crm.json: line 3, column 12: unknown field …; nothing was
/// sent`).
pub fn parse_input<T: DeserializeOwned>(name: &str, text: &str) -> anyhow::Result<(Value, T)> {
    match serde_json::from_str::<T>(text) {
        Ok(typed) => Ok((serde_json::from_str(text)?, typed)),
        Err(e) => {
            let message = e.to_string();
            let suffix = format!(" at line {} column {}", e.line(), e.column());
            let message = message.strip_suffix(&suffix).unwrap_or(&message);
            if e.line() == 0 {
                bail!("{name}: {message}; nothing was sent");
            }
            bail!(
                "{name}: line {}, column {}: {message}; nothing was sent",
                e.line(),
                e.column()
            );
        }
    }
}

/// An answer of the API: `value` typed, `json` as the server sent it (what `--format json`
/// prints).
#[derive(Debug)]
pub struct Answer<T> {
    pub value: T,
    pub json: Value,
}

/// A non-2xx answer of the server.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status, e.g. `404 Not Found`.
    pub status: reqwest::StatusCode,
    /// The error body, when the answer was one of Rapport's.
    pub error: Option<ErrorBody>,
    /// The body's start, when it was not (a proxy's page, say).
    pub text: String,
    pub url: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.error {
            Some(e) => {
                write!(f, "{}: {}", e.code, e.message)?;
                if let Some(field) = &e.field {
                    write!(f, " (field `{field}`)")?;
                }
                write!(f, " [HTTP {}]", self.status)
            }
            None => write!(
                f,
                "{} answered {} with no Rapport error body: {}",
                self.url, self.status, self.text
            ),
        }
    }
}

impl std::error::Error for ApiError {}

/// How long a request may take: most answer at once; reports and fits read the whole log.
const QUICK: Duration = Duration::from_secs(60);
const SLOW: Duration = Duration::from_secs(3600);

/// A blocking client of one server's REST API.
pub struct Client {
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
    base: String,
    key: String,
}

/// `s` as one segment of a URL path: every byte but RFC 3986's unreserved characters
/// percent-encoded (a space is `%20`; `+` would be a plus in a path).
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    /// A client of the server `server` names; an admin key is required.
    pub fn new(server: &ServerArgs) -> anyhow::Result<Client> {
        let Some(key) = &server.admin_key else {
            bail!(
                "an admin key is needed: pass --admin-key or set RAPPORT_ADMIN_KEY (the first `rapport serve` prints one)"
            );
        };
        Ok(Client {
            http: reqwest::Client::builder().build()?,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
            base: server.url.trim_end_matches('/').to_owned(),
            key: key.clone(),
        })
    }

    /// Sends one request; the JSON of a 2xx answer (`null` when it has no body), an
    /// [`ApiError`] otherwise.
    fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        self.runtime.block_on(async {
            let mut req = self
                .http
                .request(method, &url)
                .bearer_auth(&self.key)
                .timeout(timeout);
            if !query.is_empty() {
                req = req.query(query);
            }
            if let Some(b) = body {
                req = req.json(&b);
            }
            let res = req
                .send()
                .await
                .with_context(|| format!("cannot reach {url}"))?;
            let status = res.status();
            let text = res
                .text()
                .await
                .with_context(|| format!("cannot read the answer of {url}"))?;
            if !status.is_success() {
                let error = serde_json::from_str::<ErrorEnvelope>(&text)
                    .ok()
                    .map(|e| e.error);
                let text = text.chars().take(200).collect();
                return Err(ApiError {
                    status,
                    error,
                    text,
                    url,
                }
                .into());
            }
            if text.trim().is_empty() {
                return Ok(Value::Null);
            }
            serde_json::from_str(&text).with_context(|| format!("{url} answered with no JSON"))
        })
    }

    fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(Method::GET, path, &[], None, QUICK)
    }

    fn get_with(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        self.send(Method::GET, path, query, None, QUICK)
    }

    fn with_body(
        &self,
        method: Method,
        path: &str,
        body: &impl Serialize,
    ) -> anyhow::Result<Value> {
        self.send(method, path, &[], Some(serde_json::to_value(body)?), QUICK)
    }

    fn typed<T: DeserializeOwned>(json: Value) -> anyhow::Result<Answer<T>> {
        let value = T::deserialize(&json)
            .context("the server's answer is not of the shape this version of rapport reads")?;
        Ok(Answer { value, json })
    }

    // Sources.

    pub fn sources(&self) -> anyhow::Result<Answer<List<Source>>> {
        Self::typed(self.get("/api/v1/sources")?)
    }

    pub fn create_source(&self, new: &NewSource) -> anyhow::Result<Answer<CreatedSource>> {
        Self::typed(self.with_body(Method::POST, "/api/v1/sources", new)?)
    }

    /// A source by name or id.
    pub fn source(&self, source: &str) -> anyhow::Result<Answer<Source>> {
        Self::typed(self.get(&source_path(source))?)
    }

    /// `PATCH`: the parts of the settings given replace those parts.
    pub fn update_source(
        &self,
        source: &str,
        update: &SourceUpdate,
    ) -> anyhow::Result<Answer<Source>> {
        Self::typed(self.with_body(Method::PATCH, &source_path(source), update)?)
    }

    // Keys.

    /// One page of the profiles whose trait `name` equals `value`.
    pub fn search_profiles(
        &self,
        name: &str,
        value: &str,
        limit: u32,
        cursor: Option<&str>,
    ) -> anyhow::Result<Answer<Page<rapport_api::profiles::Profile>>> {
        let mut query = vec![
            ("trait", name.to_owned()),
            ("value", value.to_owned()),
            ("limit", limit.to_string()),
        ];
        if let Some(c) = cursor {
            query.push(("cursor", c.to_owned()));
        }
        Self::typed(self.get_with("/api/v1/profiles", &query)?)
    }

    pub fn keys(&self) -> anyhow::Result<Answer<List<Key>>> {
        Self::typed(self.get("/api/v1/keys")?)
    }

    pub fn create_key(&self, new: &NewKey) -> anyhow::Result<Answer<IssuedKey>> {
        Self::typed(self.with_body(Method::POST, "/api/v1/keys", new)?)
    }

    pub fn revoke_key(&self, id: &str) -> anyhow::Result<Answer<Key>> {
        let path = format!("/api/v1/keys/{}", path_segment(id));
        Self::typed(self.send(Method::DELETE, &path, &[], None, QUICK)?)
    }

    // Segments and computed traits.

    pub fn segments(&self) -> anyhow::Result<Answer<List<Segment>>> {
        Self::typed(self.get("/api/v1/segments")?)
    }

    pub fn segment(&self, name: &str) -> anyhow::Result<Answer<Segment>> {
        Self::typed(self.get(&segment_path(name))?)
    }

    /// Defines a segment; `replace` replaces one that exists.
    pub fn save_segment(
        &self,
        name: &str,
        definition: &SegmentDefinition,
        replace: bool,
    ) -> anyhow::Result<Answer<Segment>> {
        Self::typed(if replace {
            self.with_body(Method::PUT, &segment_path(name), definition)?
        } else {
            self.with_body(Method::POST, "/api/v1/segments", definition)?
        })
    }

    /// Checks and previews a segment without saving it.
    pub fn check_segment(
        &self,
        request: &rapport_api::audiences::SegmentCheckRequest,
    ) -> anyhow::Result<Answer<rapport_api::audiences::DefinitionCheck>> {
        Self::typed(self.with_body(Method::POST, "/api/v1/segments/check", request)?)
    }

    /// Checks and previews a computed trait without saving it.
    pub fn check_computed_trait(
        &self,
        request: &rapport_api::audiences::ComputedTraitCheckRequest,
    ) -> anyhow::Result<Answer<rapport_api::audiences::DefinitionCheck>> {
        Self::typed(self.with_body(Method::POST, "/api/v1/computed-traits/check", request)?)
    }

    /// `null`: the server answers `204 No Content`.
    pub fn delete_segment(&self, name: &str) -> anyhow::Result<Value> {
        self.send(Method::DELETE, &segment_path(name), &[], None, QUICK)
    }

    /// One page of a segment's members.
    pub fn segment_members(
        &self,
        name: &str,
        limit: u32,
        cursor: Option<&str>,
    ) -> anyhow::Result<Answer<Page<Member>>> {
        let mut query = vec![("limit", limit.to_string())];
        if let Some(c) = cursor {
            query.push(("cursor", c.to_owned()));
        }
        Self::typed(self.get_with(&format!("{}/members", segment_path(name)), &query)?)
    }

    pub fn segment_size_history(&self, name: &str) -> anyhow::Result<Answer<List<SizePoint>>> {
        Self::typed(self.get(&format!("{}/size-history", segment_path(name)))?)
    }

    /// Segment entries and exits after sequence number `after`.
    pub fn audience_changes(
        &self,
        after: u64,
        segment: Option<&str>,
        limit: u32,
    ) -> anyhow::Result<Answer<FeedPage>> {
        let mut query = vec![("after", after.to_string()), ("limit", limit.to_string())];
        if let Some(s) = segment {
            query.push(("segment", s.to_owned()));
        }
        Self::typed(self.get_with("/api/v1/audience-changes", &query)?)
    }

    /// The evaluation of existing profiles against new definitions.
    pub fn audiences_status(&self) -> anyhow::Result<Answer<AudiencesStatus>> {
        Self::typed(self.get("/api/v1/audiences/status")?)
    }

    pub fn computed_traits(&self) -> anyhow::Result<Answer<List<ComputedTrait>>> {
        Self::typed(self.get("/api/v1/computed-traits")?)
    }

    /// Defines a computed trait; `replace` replaces one that exists.
    pub fn save_computed_trait(
        &self,
        name: &str,
        definition: &ComputedTraitDefinition,
        replace: bool,
    ) -> anyhow::Result<Answer<ComputedTrait>> {
        Self::typed(if replace {
            self.with_body(Method::PUT, &trait_path(name), definition)?
        } else {
            self.with_body(Method::POST, "/api/v1/computed-traits", definition)?
        })
    }

    /// `null`: the server answers `204 No Content`.
    pub fn delete_computed_trait(&self, name: &str) -> anyhow::Result<Value> {
        self.send(Method::DELETE, &trait_path(name), &[], None, QUICK)
    }

    // Identity. Options and rules read from the user's files are sent as they are, for the
    // server to check and name the field at fault.

    /// Starts a matching run, with options or the server's.
    pub fn start_matching(&self, options: Option<&Value>) -> anyhow::Result<Answer<RunStarted>> {
        let path = "/api/v1/identity/matching/run";
        Self::typed(match options {
            Some(o) => self.with_body(Method::POST, path, o)?,
            None => self.send(Method::POST, path, &[], None, QUICK)?,
        })
    }

    /// The latest matching run.
    pub fn matching(&self) -> anyhow::Result<Answer<MatchingStatus>> {
        Self::typed(self.get("/api/v1/identity/matching")?)
    }

    /// A page of the review queue: pending pairs.
    pub fn review_queue(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> anyhow::Result<Answer<Page<Candidate>>> {
        let mut query = vec![("limit", limit.to_string())];
        if let Some(c) = cursor {
            query.push(("cursor", c.to_owned()));
        }
        Self::typed(self.get_with("/api/v1/identity/review", &query)?)
    }

    pub fn review_pair(&self, pair: &str) -> anyhow::Result<Answer<Pair>> {
        Self::typed(self.get(&pair_path(pair, ""))?)
    }

    pub fn accept_pair(&self, pair: &str) -> anyhow::Result<Answer<Pair>> {
        Self::typed(self.send(Method::POST, &pair_path(pair, "/accept"), &[], None, QUICK)?)
    }

    pub fn reject_pair(&self, pair: &str) -> anyhow::Result<Answer<Pair>> {
        Self::typed(self.send(Method::POST, &pair_path(pair, "/reject"), &[], None, QUICK)?)
    }

    pub fn identity_rules(&self) -> anyhow::Result<Answer<RulesVersion>> {
        Self::typed(self.get("/api/v1/identity/rules")?)
    }

    pub fn identity_rules_history(&self) -> anyhow::Result<Answer<List<RulesVersion>>> {
        Self::typed(self.get("/api/v1/identity/rules/history")?)
    }

    pub fn set_identity_rules(&self, rules: &Value) -> anyhow::Result<Answer<RulesSaved>> {
        Self::typed(self.with_body(Method::PUT, "/api/v1/identity/rules", rules)?)
    }

    // Profiles.

    /// A profile's consent: current state and one page of its history.
    pub fn consent(
        &self,
        reference: &str,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> anyhow::Result<Answer<ProfileConsent>> {
        let mut query = Vec::new();
        if let Some(l) = limit {
            query.push(("limit", l.to_string()));
        }
        if let Some(c) = cursor {
            query.push(("cursor", c.to_owned()));
        }
        let path = format!("/api/v1/profiles/{}/consent", path_segment(reference));
        Self::typed(self.get_with(&path, &query)?)
    }

    /// Sets purposes of a profile (source `api`).
    pub fn set_consent(
        &self,
        reference: &str,
        update: &ConsentUpdate,
    ) -> anyhow::Result<Answer<ConsentSaved>> {
        let path = format!("/api/v1/profiles/{}/consent", path_segment(reference));
        Self::typed(self.with_body(Method::PUT, &path, update)?)
    }

    // Privacy.

    /// Queues the deletion of a person (`POST /api/v1/privacy/deletions`).
    pub fn delete_person(
        &self,
        body: &rapport_api::privacy::PersonDeletion,
    ) -> anyhow::Result<Answer<rapport_api::privacy::Deletion>> {
        Self::typed(self.with_body(Method::POST, "/api/v1/privacy/deletions", body)?)
    }

    /// Queues the deletion of a source's events in a range.
    pub fn delete_events(
        &self,
        body: &rapport_api::privacy::EventsDeletion,
    ) -> anyhow::Result<Answer<rapport_api::privacy::Deletion>> {
        Self::typed(self.with_body(Method::POST, "/api/v1/privacy/deletions/events", body)?)
    }

    pub fn deletions(&self) -> anyhow::Result<Answer<List<rapport_api::privacy::Deletion>>> {
        Self::typed(self.get("/api/v1/privacy/deletions")?)
    }

    pub fn deletion(&self, id: &str) -> anyhow::Result<Answer<rapport_api::privacy::Deletion>> {
        Self::typed(self.get(&format!("/api/v1/privacy/deletions/{}", path_segment(id)))?)
    }

    pub fn suppressions(&self) -> anyhow::Result<Answer<List<rapport_api::privacy::Suppression>>> {
        Self::typed(self.get("/api/v1/privacy/suppressions")?)
    }

    pub fn suppress(
        &self,
        body: &rapport_api::privacy::NewSuppression,
    ) -> anyhow::Result<Answer<rapport_api::privacy::Suppression>> {
        Self::typed(self.with_body(Method::POST, "/api/v1/privacy/suppressions", body)?)
    }

    pub fn unsuppress(
        &self,
        identifier: &str,
    ) -> anyhow::Result<Answer<rapport_api::privacy::Suppression>> {
        let path = format!("/api/v1/privacy/suppressions/{}", path_segment(identifier));
        Self::typed(self.send(Method::DELETE, &path, &[], None, QUICK)?)
    }

    // Value models.

    /// Starts a fit of `model` (`clv`, `churn`, `health`) as a job.
    pub fn start_fit(&self, model: &str) -> anyhow::Result<Answer<Job>> {
        let path = format!("/api/v1/models/{}/fit", path_segment(model));
        Self::typed(self.send(Method::POST, &path, &[], None, QUICK)?)
    }

    pub fn jobs(&self) -> anyhow::Result<Answer<JobList>> {
        Self::typed(self.get("/api/v1/jobs")?)
    }

    pub fn job(&self, id: &str) -> anyhow::Result<Answer<Job>> {
        Self::typed(self.get(&format!("/api/v1/jobs/{}", path_segment(id)))?)
    }

    /// A report (`/api/v1/reports/…`, `/api/v1/alerts`), which may read the whole log, as
    /// the type of that report.
    pub fn report<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> anyhow::Result<Answer<T>> {
        Self::typed(self.send(Method::GET, path, query, None, SLOW)?)
    }
}

// Destinations: one block, with its imports and path helper, for `rapport destinations`.

use rapport_api::destinations::{
    BackfillRequest, CreatedDestination, DeliveryFailure, DeliveryOverview, Destination,
    DestinationBackfill, PendingRetry, Replay, Replayed, Secret, TestSend,
};

/// How long a test send may take: the receiver's own timeout (at most 120 s) and a margin.
const TEST_SEND: Duration = Duration::from_secs(150);

/// The destination methods. Specs read from the user's files are sent as they are, for
/// the server to check and name the field at fault.
impl Client {
    pub fn destinations(&self) -> anyhow::Result<Answer<List<Destination>>> {
        Self::typed(self.get("/api/v1/destinations")?)
    }

    /// A destination by id or name.
    pub fn destination(&self, destination: &str) -> anyhow::Result<Answer<Destination>> {
        Self::typed(self.get(&destination_path(destination, ""))?)
    }

    pub fn create_destination(&self, spec: &Value) -> anyhow::Result<Answer<CreatedDestination>> {
        Self::typed(self.with_body(Method::POST, "/api/v1/destinations", spec)?)
    }

    /// `PUT`: the spec replaces the definition; the delivery state stays.
    pub fn replace_destination(
        &self,
        destination: &str,
        spec: &Value,
    ) -> anyhow::Result<Answer<Destination>> {
        Self::typed(self.with_body(Method::PUT, &destination_path(destination, ""), spec)?)
    }

    /// The deleted destination.
    pub fn delete_destination(&self, destination: &str) -> anyhow::Result<Answer<Destination>> {
        let path = destination_path(destination, "");
        Self::typed(self.send(Method::DELETE, &path, &[], None, QUICK)?)
    }

    /// Pauses (`paused`) or resumes delivery.
    pub fn pause_destination(
        &self,
        destination: &str,
        paused: bool,
    ) -> anyhow::Result<Answer<Destination>> {
        let action = if paused { "/pause" } else { "/resume" };
        let path = destination_path(destination, action);
        Self::typed(self.send(Method::POST, &path, &[], None, QUICK)?)
    }

    pub fn test_destination(&self, destination: &str) -> anyhow::Result<Answer<TestSend>> {
        let path = destination_path(destination, "/test");
        Self::typed(self.send(Method::POST, &path, &[], None, TEST_SEND)?)
    }

    pub fn destination_secret(&self, destination: &str) -> anyhow::Result<Answer<Secret>> {
        Self::typed(self.get(&destination_path(destination, "/secret"))?)
    }

    pub fn destination_retries(
        &self,
        destination: &str,
    ) -> anyhow::Result<Answer<List<PendingRetry>>> {
        Self::typed(self.get(&destination_path(destination, "/retries"))?)
    }

    /// One page of a destination's dead-letter queue.
    pub fn dead_letters(
        &self,
        destination: &str,
        limit: u32,
        cursor: Option<&str>,
    ) -> anyhow::Result<Answer<Page<DeliveryFailure>>> {
        let mut query = vec![("limit", limit.to_string())];
        if let Some(c) = cursor {
            query.push(("cursor", c.to_owned()));
        }
        Self::typed(self.get_with(&destination_path(destination, "/dead-letters"), &query)?)
    }

    pub fn replay_dead_letters(
        &self,
        destination: &str,
        replay: &Replay,
    ) -> anyhow::Result<Answer<Replayed>> {
        let path = destination_path(destination, "/dead-letters/replay");
        Self::typed(self.with_body(Method::POST, &path, replay)?)
    }
}

impl Client {
    pub fn destination_overview(
        &self,
        destination: &str,
        hours: u32,
    ) -> anyhow::Result<Answer<DeliveryOverview>> {
        let path = destination_path(destination, "/overview");
        Self::typed(self.get_with(&path, &[("hours", hours.to_string())])?)
    }

    pub fn start_backfill(
        &self,
        destination: &str,
        request: &BackfillRequest,
    ) -> anyhow::Result<Answer<DestinationBackfill>> {
        let path = destination_path(destination, "/backfill");
        Self::typed(self.with_body(Method::POST, &path, request)?)
    }

    /// `204 No Content` when stopped.
    pub fn cancel_backfill(&self, destination: &str) -> anyhow::Result<()> {
        let path = destination_path(destination, "/backfill");
        self.send(Method::DELETE, &path, &[], None, QUICK)?;
        Ok(())
    }
}

fn destination_path(destination: &str, action: &str) -> String {
    format!("/api/v1/destinations/{}{action}", path_segment(destination))
}

fn source_path(source: &str) -> String {
    format!("/api/v1/sources/{}", path_segment(source))
}

fn segment_path(name: &str) -> String {
    format!("/api/v1/segments/{}", path_segment(name))
}

fn trait_path(name: &str) -> String {
    format!("/api/v1/computed-traits/{}", path_segment(name))
}

fn pair_path(pair: &str, action: &str) -> String {
    format!("/api/v1/identity/review/{}{action}", path_segment(pair))
}

use rapport_api::journeys::{
    CapsUpdate, Journey, JourneyCaps, JourneyEntriesAccepted, JourneyEntryRequest, JourneyFlow,
    JourneyPreview, MigrateRequest, MigrationAccepted, PreviewRequest, SpecCheck,
};

fn journey_path(journey: &str, tail: &str) -> String {
    format!("/api/v1/journeys/{}{tail}", path_segment(journey))
}

/// The journey methods. Specs read from the user's files are sent as they are, for the
/// server to check and name the node and field at fault.
impl Client {
    pub fn journeys(&self) -> anyhow::Result<Answer<List<Journey>>> {
        Self::typed(self.get("/api/v1/journeys")?)
    }

    pub fn journey(&self, journey: &str) -> anyhow::Result<Answer<Journey>> {
        Self::typed(self.get(&journey_path(journey, ""))?)
    }

    /// A new journey whose version 1 is the draft `spec`.
    pub fn create_journey(&self, spec: &Value) -> anyhow::Result<Answer<Journey>> {
        Self::typed(self.with_body(Method::POST, "/api/v1/journeys", spec)?)
    }

    /// The draft of the journey's next version.
    pub fn save_journey_draft(
        &self,
        journey: &str,
        spec: &Value,
    ) -> anyhow::Result<Answer<Journey>> {
        Self::typed(self.with_body(Method::PUT, &journey_path(journey, "/draft"), spec)?)
    }

    /// `publish`, `pause`, `resume` or `archive`.
    pub fn journey_step(&self, journey: &str, step: &str) -> anyhow::Result<Answer<Journey>> {
        let path = journey_path(journey, &format!("/{step}"));
        Self::typed(self.send(Method::POST, &path, &[], None, QUICK)?)
    }

    pub fn journey_flow(&self, journey: &str) -> anyhow::Result<Answer<JourneyFlow>> {
        Self::typed(self.get(&journey_path(journey, "/flow"))?)
    }

    /// Every problem saving `spec` would refuse, as a new journey or (`draft`) as the next
    /// draft of the journey it names; nothing is saved.
    pub fn check_journey(&self, spec: &Value, draft: bool) -> anyhow::Result<Answer<SpecCheck>> {
        let query = [("as", if draft { "draft" } else { "create" }.to_string())];
        Self::typed(self.send(
            Method::POST,
            "/api/v1/journeys/check",
            &query,
            Some(spec.clone()),
            QUICK,
        )?)
    }

    /// Puts customers into a journey whose entry is `api` (202: written to the log).
    pub fn enter_journey(
        &self,
        journey: &str,
        request: &JourneyEntryRequest,
    ) -> anyhow::Result<Answer<JourneyEntriesAccepted>> {
        let body = serde_json::to_value(request)?;
        Self::typed(self.with_body(Method::POST, &journey_path(journey, "/entries"), &body)?)
    }

    /// Moves the customers of one version to another (202: written to the log).
    pub fn migrate_journey(
        &self,
        journey: &str,
        request: &MigrateRequest,
    ) -> anyhow::Result<Answer<MigrationAccepted>> {
        let body = serde_json::to_value(request)?;
        Self::typed(self.with_body(Method::POST, &journey_path(journey, "/migrate"), &body)?)
    }

    /// The frequency caps across journeys in force.
    pub fn journey_caps(&self) -> anyhow::Result<Answer<JourneyCaps>> {
        Self::typed(self.get("/api/v1/journeys/caps")?)
    }

    /// Replaces the caps; the answer is the caps in force (200) or the pending change
    /// (202), as JSON.
    pub fn set_journey_caps(&self, update: &CapsUpdate) -> anyhow::Result<Value> {
        let body = serde_json::to_value(update)?;
        self.with_body(Method::PUT, "/api/v1/journeys/caps", &body)
    }

    /// A preview reads the log over its range: it may take a while.
    pub fn preview_journey(
        &self,
        journey: &str,
        request: &PreviewRequest,
    ) -> anyhow::Result<Answer<JourneyPreview>> {
        let path = journey_path(journey, "/preview");
        let body = serde_json::to_value(request)?;
        Self::typed(self.send(Method::POST, &path, &[], Some(body), SLOW)?)
    }
}

use rapport_api::tracking_plans::{SourceTrackingPlan, TrackingPlan, ViolationsReport};

fn plan_path(source: &str, tail: &str) -> String {
    format!("{}/tracking-plan{tail}", source_path(source))
}

/// A source's tracking plan and its violations report.
impl Client {
    pub fn tracking_plan(&self, source: &str) -> anyhow::Result<Answer<SourceTrackingPlan>> {
        Self::typed(self.get(&plan_path(source, ""))?)
    }

    pub fn set_tracking_plan(
        &self,
        source: &str,
        plan: &TrackingPlan,
    ) -> anyhow::Result<Answer<SourceTrackingPlan>> {
        Self::typed(self.with_body(Method::PUT, &plan_path(source, ""), plan)?)
    }

    /// `null`: the server answers `204 No Content`.
    pub fn clear_tracking_plan(&self, source: &str) -> anyhow::Result<Value> {
        self.send(Method::DELETE, &plan_path(source, ""), &[], None, QUICK)
    }

    pub fn plan_violations(&self, source: &str) -> anyhow::Result<Answer<ViolationsReport>> {
        Self::typed(self.get(&plan_path(source, "/violations"))?)
    }
}

impl Client {
    /// The pipeline at a glance, with `minutes` minutes of per-minute counts.
    pub fn overview(
        &self,
        minutes: u32,
    ) -> anyhow::Result<Answer<rapport_api::overview::Overview>> {
        Self::typed(self.get_with("/api/v1/overview", &[("minutes", minutes.to_string())])?)
    }

    /// One page of stored events, newest first, with `filters` as the API's query
    /// parameters (`userId`, `source`, …).
    pub fn events(
        &self,
        filters: &[(&'static str, String)],
        limit: u32,
        cursor: Option<&str>,
    ) -> anyhow::Result<Answer<Page<Value>>> {
        let mut query = filters.to_vec();
        query.push(("limit", limit.to_string()));
        if let Some(c) = cursor {
            query.push(("cursor", c.to_owned()));
        }
        Self::typed(self.get_with("/api/v1/events", &query)?)
    }

    /// One page of the messages the server's tracking API refused, newest first.
    pub fn rejections(
        &self,
        source: Option<&str>,
        limit: u32,
        cursor: Option<&str>,
    ) -> anyhow::Result<Answer<Page<rapport_api::overview::Rejection>>> {
        let mut query = vec![("limit", limit.to_string())];
        if let Some(s) = source {
            query.push(("source", s.to_owned()));
        }
        if let Some(c) = cursor {
            query.push(("cursor", c.to_owned()));
        }
        Self::typed(self.get_with("/api/v1/rejections", &query)?)
    }
}

impl Client {
    /// One page of the audit trail, newest first.
    pub fn audit(
        &self,
        filter: &rapport_api::audit::AuditQuery,
        limit: u32,
        cursor: Option<&str>,
    ) -> anyhow::Result<Answer<Page<rapport_api::audit::AuditEntry>>> {
        let mut query = vec![("limit", limit.to_string())];
        for (name, value) in [
            ("actor", &filter.actor),
            ("action", &filter.action),
            ("resource_type", &filter.resource_type),
            ("resource_id", &filter.resource_id),
            ("since", &filter.since),
            ("until", &filter.until),
        ] {
            if let Some(v) = value {
                query.push((name, v.clone()));
            }
        }
        if let Some(c) = cursor {
            query.push(("cursor", c.to_owned()));
        }
        Self::typed(self.get_with("/api/v1/audit", &query)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_encode_spaces_and_slashes() {
        assert_eq!(path_segment("ios app"), "ios%20app");
        assert_eq!(path_segment("a/b+c"), "a%2Fb%2Bc");
        assert_eq!(path_segment("dst_01-x.y~z"), "dst_01-x.y~z");
        assert_eq!(path_segment("é"), "%C3%A9");
    }

    #[test]
    fn a_server_error_reads_as_code_message_field_and_status() {
        let e = ApiError {
            status: reqwest::StatusCode::BAD_REQUEST,
            error: Some(ErrorBody {
                code: rapport_api::Code::InvalidParameter,
                message: "by must be day, week, month, quarter, year or all".into(),
                field: Some("by".into()),
            }),
            text: String::new(),
            url: "http://h/api/v1/reports/nps".into(),
        };
        assert_eq!(
            e.to_string(),
            "invalid_parameter: by must be day, week, month, quarter, year or all (field `by`) [HTTP 400 Bad Request]"
        );
        let proxy = ApiError {
            status: reqwest::StatusCode::BAD_GATEWAY,
            error: None,
            text: "<html>".into(),
            url: "http://h/api/v1/keys".into(),
        };
        assert_eq!(
            proxy.to_string(),
            "http://h/api/v1/keys answered 502 Bad Gateway with no Rapport error body: <html>"
        );
    }
}
