//! The one REST client of the CLI: every management command talks to a running server
//! through it, with the connection options of [`ServerArgs`]; errors of the API are read as
//! `rapport_api::ErrorEnvelope` and shown as `status: message (field …)`. The output
//! format (`--format table|json`, global) is kept here too, so every command prints the
//! same way.

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde_json::Value;
use std::sync::OnceLock;
use std::time::Duration;

/// How commands print their result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// The API's JSON answer, pretty-printed.
    Json,
}

static FORMAT: OnceLock<Format> = OnceLock::new();

/// Sets the output format, once, from the global `--format`.
pub fn set_format(format: Format) {
    let _ = FORMAT.set(format);
}

/// Whether to print JSON: `--format json`, or a command's own (hidden, older) `--json`.
pub fn json(flag: bool) -> bool {
    flag || FORMAT.get().copied().unwrap_or_default() == Format::Json
}

/// An error answer of the API, as one line: `409 Conflict: conflict: a source named "web"
/// exists (field `name`)`.
pub fn answer_error(status: reqwest::StatusCode, text: &str) -> anyhow::Error {
    match serde_json::from_str::<rapport_api::ErrorEnvelope>(text) {
        Ok(rapport_api::ErrorEnvelope { error }) => match error.field {
            Some(f) => anyhow::anyhow!("{status}: {}: {} (field `{f}`)", error.code, error.message),
            None => anyhow::anyhow!("{status}: {}: {}", error.code, error.message),
        },
        Err(_) => anyhow::anyhow!("{status}: {}", text.trim()),
    }
}

#[derive(Args, Clone)]
pub struct ServerArgs {
    /// Base URL of the running server.
    #[arg(long, env = "RAPPORT_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// An admin key.
    #[arg(long, env = "RAPPORT_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: String,
}

pub struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
    runtime: tokio::runtime::Runtime,
}

impl Client {
    pub fn new(server: &ServerArgs) -> anyhow::Result<Client> {
        Ok(Client {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?,
            base: server.url.trim_end_matches('/').to_owned(),
            key: server.admin_key.clone(),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
        })
    }

    /// Sends a request; a non-2xx answer becomes an error carrying the server's message and
    /// the field it names.
    pub fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{}", self.base, path);
        self.runtime.block_on(async {
            let mut req = self.http.request(method, &url).bearer_auth(&self.key);
            if let Some(b) = body {
                req = req.json(&b);
            }
            let res = req
                .send()
                .await
                .with_context(|| format!("cannot reach {url}"))?;
            let status = res.status();
            let text = res.text().await?;
            if !status.is_success() {
                return Err(answer_error(status, &text));
            }
            if text.is_empty() {
                return Ok(Value::Null);
            }
            Ok(serde_json::from_str(&text)?)
        })
    }

    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, None)
    }

    /// A client with its own request timeout (fits wait long for their answer).
    pub fn with_timeout(server: &ServerArgs, timeout: Duration) -> anyhow::Result<Client> {
        let mut c = Client::new(server)?;
        c.http = reqwest::Client::builder().timeout(timeout).build()?;
        Ok(c)
    }

    /// Sends a request with a query string; answers the status and the JSON body whatever
    /// the status (`Null` when the body is not JSON).
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
    ) -> anyhow::Result<(reqwest::StatusCode, Value)> {
        let url = format!("{}{path}", self.base);
        self.runtime.block_on(async {
            let response = self
                .http
                .request(method, &url)
                .bearer_auth(&self.key)
                .query(query)
                .send()
                .await
                .with_context(|| format!("cannot reach {url}"))?;
            let status = response.status();
            Ok((status, response.json().await.unwrap_or(Value::Null)))
        })
    }
}
