//! One harness that runs a real `rapport serve` process, shared by the end-to-end tests
//! (`crates/rapport/tests/common`) and the load generators (`rapport-bench`).
//!
//! It exists because both need the same thing — start the shipped binary on a free loopback
//! port, learn its keys, wait until it answers, stop it hard or gently, start it again on
//! the same data — and two copies of that code drift: the tests waited for `/health`, the
//! benchmarks for a TCP connect, each with its own timeouts and kill code. Here it is
//! written once:
//!
//! - [`Server::builder`] names the binary (the tests' `CARGO_BIN_EXE_rapport`, the
//!   benchmarks' `rapport_bin()`), extra `serve` arguments, environment variables, a
//!   PostgreSQL URL ([`ServerBuilder::database_url`], or [`ServerBuilder::test_store`] for
//!   the choice `RAPPORT_TEST_STORE` makes) and optionally a data directory prepared
//!   beforehand with keys of its own ([`ServerBuilder::data_dir`], [`ServerBuilder::keys`]).
//! - [`ServerBuilder::start`] starts `rapport serve`, reads the write and admin keys from
//!   what the first start prints (as a user would), and returns once `/health` answers 2xx.
//! - A [`Server`] tells its URL, port, keys and data directory; [`Server::kill9`],
//!   [`Server::terminate`] (SIGTERM and a clean exit) and [`Server::respawn`] (same data,
//!   new port) drive restarts; [`Server::start_sibling`] starts a second process on the same
//!   PostgreSQL database; [`Server::rss_kib`] and [`Server::peak_rss_kib`] read its memory;
//!   [`Server::wait_processed`] and [`Server::wait_indexed`] wait for the log consumers.
//!
//! Failures are `std::io::Error`s that say what went wrong, so that a benchmark can report
//! them and a test can `expect` them. The process is killed when the `Server` is dropped.
//! Linux only, like the servers it starts (`/proc` for memory, `kill` for signals).

use serde_json::Value;
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The database URL the end-to-end tests run on: with `RAPPORT_TEST_STORE=postgres` a fresh
/// database on a throwaway PostgreSQL cluster shared by the test process
/// ([`rapport_store::testing::TestPostgres`]); unset or `embedded`, none (the embedded
/// store).
///
/// # Panics
/// On any other value, and when the PostgreSQL cluster cannot start (with the reason).
pub fn test_store_database_url() -> Option<String> {
    match std::env::var("RAPPORT_TEST_STORE").as_deref() {
        Ok("postgres") => Some(rapport_store::testing::TestPostgres::shared().create_database()),
        Ok("embedded") | Err(_) => None,
        Ok(other) => panic!("RAPPORT_TEST_STORE must be embedded or postgres, not {other:?}"),
    }
}

/// How to start a [`Server`]; see [`Server::builder`].
#[derive(Debug, Clone)]
pub struct ServerBuilder {
    bin: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    database_url: Option<String>,
    data_dir: Option<PathBuf>,
    keys: Option<(String, String)>,
    start_timeout: Duration,
}

impl ServerBuilder {
    /// Arguments for `serve` after `--listen` (e.g. `--rate-limit-per-second 5`).
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// An environment variable of the server process. `RAPPORT_LOG` is `warn` unless set
    /// here.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Store everything in PostgreSQL at this URL (`serve --database-url`).
    pub fn database_url(mut self, url: impl Into<String>) -> Self {
        self.database_url = Some(url.into());
        self
    }

    /// The store the end-to-end tests run on: see [`test_store_database_url`].
    pub fn test_store(mut self) -> Self {
        self.database_url = test_store_database_url();
        self
    }

    /// Serve this data directory instead of a fresh one (e.g. one a benchmark filled
    /// beforehand). A prepared store that already has a source prints no keys on start:
    /// give them with [`ServerBuilder::keys`].
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// The keys of a prepared store, instead of reading them from the first start's
    /// welcome text (which such a store does not print). Either may be empty when the
    /// caller has none.
    pub fn keys(mut self, write_key: impl Into<String>, admin_key: impl Into<String>) -> Self {
        self.keys = Some((write_key.into(), admin_key.into()));
        self
    }

    /// How long a start may take until `/health` answers (and the welcome keys are read):
    /// 30 s unless set.
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Starts the server and waits until it is healthy and its keys are known.
    pub fn start(self) -> io::Result<Server> {
        let dir = tempfile::tempdir()?;
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| dir.path().join("data"));
        let read_welcome = self.keys.is_none();
        let (write_key, admin_key) = self.keys.clone().unwrap_or_default();
        let mut server = Server {
            port: 0,
            dir,
            write_key,
            admin_key,
            data_dir,
            child: None,
            how: self,
        };
        let welcome = server.spawn(read_welcome)?;
        if let Some(keys) = welcome {
            let (write, admin) = keys.recv_timeout(server.how.start_timeout).map_err(|_| {
                io::Error::other(
                    "the first start printed no write key and admin key (a prepared data \
                         directory needs ServerBuilder::keys)",
                )
            })?;
            (server.write_key, server.admin_key) = (write, admin);
        }
        Ok(server)
    }
}

/// A running `rapport serve` process on a loopback port; killed when dropped.
#[derive(Debug)]
pub struct Server {
    /// The port it listens on (a new one after each [`Server::respawn`]).
    pub port: u16,
    /// A temporary directory of this server's: its data directory (`data/`, unless
    /// [`ServerBuilder::data_dir`] named another) and room for a test's own files.
    pub dir: tempfile::TempDir,
    /// The write key of the first source (empty if unknown).
    pub write_key: String,
    /// An admin key (empty if unknown).
    pub admin_key: String,
    data_dir: PathBuf,
    child: Option<Child>,
    how: ServerBuilder,
}

impl Server {
    /// How to start `rapport serve` from the binary at `bin`.
    pub fn builder(bin: impl Into<PathBuf>) -> ServerBuilder {
        ServerBuilder {
            bin: bin.into(),
            args: Vec::new(),
            env: Vec::new(),
            database_url: None,
            data_dir: None,
            keys: None,
            start_timeout: Duration::from_secs(30),
        }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// The data directory of the embedded store (also given on PostgreSQL, where it holds
    /// nothing of the data).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The PostgreSQL URL of a PostgreSQL-backed server.
    pub fn database_url(&self) -> Option<&str> {
        self.how.database_url.as_deref()
    }

    /// The process id, while the server runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the server again on its data (after [`Server::kill9`] or
    /// [`Server::terminate`]), on a new port, and waits until it is healthy.
    pub fn respawn(&mut self) -> io::Result<()> {
        self.kill9();
        self.spawn(false).map(drop)
    }

    /// Kills the process at once (SIGKILL), as a crash or a power cut would, and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Asks the process to stop (SIGTERM) and waits for it to exit; answers how it exited.
    pub fn terminate(&mut self) -> io::Result<ExitStatus> {
        let mut c = self
            .child
            .take()
            .ok_or_else(|| io::Error::other("the server is not running"))?;
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        if !sent.as_ref().is_ok_and(ExitStatus::success) {
            let _ = c.kill();
            let _ = c.wait();
            return Err(io::Error::other(format!("cannot send SIGTERM: {sent:?}")));
        }
        c.wait()
    }

    /// The resident memory of the process now, in KiB (`VmRSS`); `None` if it is not
    /// running or `/proc` does not tell.
    pub fn rss_kib(&self) -> Option<u64> {
        self.proc_status_kib("VmRSS:")
    }

    /// The peak resident memory of the process so far, in KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.proc_status_kib("VmHWM:")
    }

    fn proc_status_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let value = status.lines().find_map(|l| l.strip_prefix(field))?;
        value.trim().trim_end_matches("kB").trim().parse().ok()
    }

    /// Starts a second `rapport serve` on this server's PostgreSQL database, with its own
    /// data directory, the same arguments and the same keys. `None` on the embedded store,
    /// where one process owns a data directory and there is nothing to share.
    pub fn start_sibling(&self) -> io::Result<Option<Server>> {
        if self.how.database_url.is_none() {
            return Ok(None);
        }
        let dir = tempfile::tempdir()?;
        let mut sibling = Server {
            port: 0,
            data_dir: dir.path().join("data"),
            dir,
            write_key: self.write_key.clone(),
            admin_key: self.admin_key.clone(),
            child: None,
            how: ServerBuilder {
                data_dir: None,
                ..self.how.clone()
            },
        };
        sibling.spawn(false)?;
        Ok(Some(sibling))
    }

    /// The `/health` answer, whatever its status.
    pub fn health(&self) -> io::Result<Value> {
        let response = http()
            .get(self.url("/health"))
            .send()
            .map_err(io::Error::other)?;
        response.json().map_err(io::Error::other)
    }

    /// Waits until the processor (identity, profiles, segments) has caught up with the log.
    pub fn wait_processed(&self, timeout: Duration) -> io::Result<()> {
        self.wait_consumer("processed_offset", timeout)
    }

    /// Waits until the indexer (the event queries) has caught up with the log.
    pub fn wait_indexed(&self, timeout: Duration) -> io::Result<()> {
        self.wait_consumer("indexed_offset", timeout)
    }

    /// Waits until the consumer whose offset `/health` reports as `field` has caught up
    /// with the log.
    fn wait_consumer(&self, field: &str, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let h = self.health()?;
            if h["log_offset"].is_u64() && h["log_offset"] == h[field] {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{field} did not catch up with the log within {timeout:?}: {h}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the process on a new port and waits until `/health` answers 2xx. With
    /// `read_welcome`, answers where the keys the first start prints will arrive.
    fn spawn(
        &mut self,
        read_welcome: bool,
    ) -> io::Result<Option<mpsc::Receiver<(String, String)>>> {
        self.port = free_port()?;
        let how = &self.how;
        let mut cmd = Command::new(&how.bin);
        cmd.arg("serve").arg("--data-dir").arg(&self.data_dir);
        if let Some(url) = &how.database_url {
            cmd.arg("--database-url").arg(url);
        }
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .args(&how.args)
            .env("RAPPORT_LOG", "warn")
            .envs(how.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot start {} serve: {e}", how.bin.display()),
            )
        })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || welcome_keys(stdout, tx));
        self.child = Some(child);
        self.wait_healthy()?;
        Ok(read_welcome.then_some(rx))
    }

    fn wait_healthy(&mut self) -> io::Result<()> {
        let client = http();
        let deadline = Instant::now() + self.how.start_timeout;
        loop {
            if let Ok(r) = client.get(self.url("/health")).send()
                && r.status().is_success()
            {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                self.child = None;
                return Err(io::Error::other(format!(
                    "rapport serve exited before it became healthy: {status}"
                )));
            }
            if Instant::now() > deadline {
                self.kill9();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "rapport serve did not become healthy within {:?}",
                        self.how.start_timeout
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(30));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The harness's own HTTP client: short timeouts, so that a hung server fails a wait
/// rather than blocking it.
fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client")
}

fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Reads the first start's welcome (`write key  wk_…`, `admin key  ak_…`) from the server's
/// standard output, sends the two secrets, and drains the rest (so that the server never
/// blocks on a full pipe).
fn welcome_keys(stdout: ChildStdout, keys: mpsc::Sender<(String, String)>) {
    use std::io::BufRead;
    let mut write = None;
    for line in io::BufReader::new(stdout).lines() {
        let Ok(line) = line else { return };
        if let Some(found) = welcome_line(&line, &mut write) {
            let _ = keys.send(found);
        }
    }
}

/// One line of the welcome: remembers the write key, and answers both keys on the admin
/// key's line that follows it.
fn welcome_line(line: &str, write: &mut Option<String>) -> Option<(String, String)> {
    let mut words = line.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("write"), Some("key"), Some(secret)) => {
            *write = Some(secret.to_owned());
            None
        }
        (Some("admin"), Some("key"), Some(secret)) => write.take().map(|w| (w, secret.to_owned())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_welcome_gives_both_keys_in_order() {
        let text = "\nRapport created a source and two keys. The secrets are shown once: keep them.\n  \
                    source     default\n  write key  wk_abc\n  admin key  ak_def\n\nSend an event\n";
        let mut write = None;
        let found: Vec<_> = text
            .lines()
            .filter_map(|l| welcome_line(l, &mut write))
            .collect();
        assert_eq!(found, vec![("wk_abc".to_owned(), "ak_def".to_owned())]);
        // An admin key with no write key before it is not a welcome.
        assert_eq!(welcome_line("  admin key  ak_x", &mut None), None);
    }

    #[test]
    fn a_binary_that_is_not_there_is_an_error_naming_it() {
        let err = Server::builder("/nonexistent/rapport").start().unwrap_err();
        assert!(err.to_string().contains("/nonexistent/rapport"), "{err}");
    }

    #[test]
    fn a_process_that_exits_at_once_is_an_error_not_a_timeout() {
        // `false serve …` exits with 1 at once: the wait says so instead of waiting 30 s.
        let started = Instant::now();
        let err = Server::builder("false").start().unwrap_err();
        assert!(err.to_string().contains("exited before"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn the_test_store_is_embedded_by_default() {
        if std::env::var_os("RAPPORT_TEST_STORE").is_none() {
            assert_eq!(test_store_database_url(), None);
        }
    }
}
