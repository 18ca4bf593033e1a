//! A throwaway PostgreSQL server for tests, so that every test touching PostgreSQL runs
//! against the real thing rather than a mock.
//!
//! [`TestPostgres::start`] runs `initdb` and `postgres` from the Debian packages
//! (`/usr/lib/postgresql/<version>/bin`, the newest version found; `RAPPORT_PG_BIN` names
//! another directory) in a fresh temporary directory, listening on a free loopback port with
//! its unix socket in that directory and `fsync` on. When the tests run as root, the server
//! runs as the `postgres` user (or `nobody`), since PostgreSQL refuses to run as root.
//! The cluster stops and its directory is removed when the value is dropped.
//!
//! [`TestPostgres::shared`] is one cluster per test process, stopped when the process exits;
//! [`TestPostgres::create_database`] gives each test its own empty database on it.
//!
//! Available to this crate's tests and, with the `pg-test-harness` feature, to other crates'.
//! Missing binaries are a test failure that says how to install them, never a silent skip.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Superuser of the throwaway cluster (trust authentication, loopback only).
const SUPERUSER: &str = "postgres";

pub struct TestPostgres {
    /// URL of the cluster's maintenance database `postgres`, as the superuser.
    pub url: String,
    pub port: u16,
    /// The temporary directory: `data/` (the cluster), the unix socket and `server.log`.
    pub dir: PathBuf,
    child: Mutex<Option<Child>>,
    /// Dropping this ends the thread that spawned the server (whose death stops it too).
    keeper: Mutex<Option<mpsc::Sender<()>>>,
    databases: AtomicU32,
}

static SHARED: OnceLock<TestPostgres> = OnceLock::new();

impl TestPostgres {
    /// Starts a new cluster; panics with the reason (and the server log) if it cannot.
    pub fn start() -> TestPostgres {
        let bin = find_bin_dir();
        sweep_stale_dirs();
        let owner = server_user();
        let dir = fresh_dir(owner);
        let data = dir.join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--locale=C"])
            // The cluster is thrown away; its server still runs with fsync on.
            .arg("--no-sync");
        run_as(&mut initdb, owner, &dir);
        let out = initdb
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.join("initdb").display()));
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&dir);
            panic!(
                "initdb failed: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port();
            let (child, keeper) = spawn_server(&bin, &data, &dir, port, owner);
            let pg = TestPostgres {
                url: format!("postgres://{SUPERUSER}@127.0.0.1:{port}/postgres"),
                port,
                dir: dir.clone(),
                child: Mutex::new(Some(child)),
                keeper: Mutex::new(Some(keeper)),
                databases: AtomicU32::new(0),
            };
            if pg.wait_ready() {
                return pg;
            }
            last_log = pg.server_log();
            pg.stop_server();
            if !last_log.contains("could not bind") && !last_log.contains("in use") {
                break;
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        panic!("the test PostgreSQL server did not start; its log:\n{last_log}");
    }

    /// One cluster for the whole test process, started on first use and stopped at exit.
    pub fn shared() -> &'static TestPostgres {
        SHARED.get_or_init(|| {
            let pg = TestPostgres::start();
            // SAFETY: registers a plain function with no arguments, as atexit expects.
            unsafe {
                libc::atexit(stop_shared);
            }
            pg
        })
    }

    /// Creates an empty database and returns its URL.
    pub fn create_database(&self) -> String {
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        let name = format!("test_{n}");
        let mut client = postgres::Client::connect(&self.url, postgres::NoTls)
            .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL server: {e}"));
        client
            .batch_execute(&format!("create database {name}"))
            .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{name}", self.port)
    }

    /// The server's log so far.
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    fn wait_ready(&self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(child) = lock(&self.child).as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                return false;
            }
            if postgres::Config::new()
                .host("127.0.0.1")
                .port(self.port)
                .user(SUPERUSER)
                .dbname("postgres")
                .connect_timeout(Duration::from_secs(2))
                .connect(postgres::NoTls)
                .is_ok()
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Fast shutdown (SIGINT): sessions are ended and the server exits after a checkpoint.
    fn stop_server(&self) {
        if let Some(mut child) = lock(&self.child).take() {
            // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGINT);
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
        lock(&self.keeper).take();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        self.stop_server();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

extern "C" fn stop_shared() {
    if let Some(pg) = SHARED.get() {
        // The static is never dropped: stop the server and remove its directory here.
        pg.stop_server();
        let _ = std::fs::remove_dir_all(&pg.dir);
    }
}

/// The directory holding `initdb` and `postgres`.
fn find_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("RAPPORT_PG_BIN") {
        let dir = PathBuf::from(dir);
        if dir.join("initdb").exists() && dir.join("postgres").exists() {
            return dir;
        }
        panic!(
            "RAPPORT_PG_BIN={} holds no initdb and postgres binaries",
            dir.display()
        );
    }
    let mut found: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e
                .file_name()
                .to_str()?
                .split('.')
                .map(|p| p.parse::<u32>().ok())
                .collect::<Option<Vec<u32>>>()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").exists() && bin.join("postgres").exists()).then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL server binaries (initdb, postgres) were not found under \
             /usr/lib/postgresql/<version>/bin. These tests need a real PostgreSQL server: \
             install it with `apt-get install -y postgresql` (or set RAPPORT_PG_BIN)."
        ),
    }
}

/// The (uid, gid) to run the server as when we are root; `None` runs it as ourselves.
fn server_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    for wanted in ["postgres", "nobody"] {
        for line in passwd.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() > 3
                && f[0] == wanted
                && let (Ok(uid), Ok(gid)) = (f[2].parse(), f[3].parse())
            {
                return Some((uid, gid));
            }
        }
    }
    panic!(
        "running as root and neither a `postgres` nor a `nobody` user exists to run the test \
         PostgreSQL server (install it with `apt-get install -y postgresql`)"
    );
}

const DIR_PREFIX: &str = "rapport-pg-";

/// A new directory under the system temp dir named after this process, owned by the server.
fn fresh_dir(owner: Option<(u32, u32)>) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("cannot hand {} to uid {uid}: {e}", dir.display()));
    }
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    dir
}

/// Removes directories left by test processes that died without cleaning up.
fn sweep_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot find a free loopback port: {e}"))
}

fn run_as(cmd: &mut Command, owner: Option<(u32, u32)>, dir: &Path) {
    cmd.current_dir(dir).stdin(Stdio::null());
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
}

/// Spawns the server from a thread that lives as long as the returned sender: the server
/// gets SIGINT when that thread ends, so it never outlives a test process that dies.
fn spawn_server(
    bin: &Path,
    data: &Path,
    dir: &Path,
    port: u16,
    owner: Option<(u32, u32)>,
) -> (Child, mpsc::Sender<()>) {
    let log = std::fs::File::create(dir.join("server.log"))
        .unwrap_or_else(|e| panic!("cannot create the server log: {e}"));
    if let Some((uid, gid)) = owner {
        let _ = std::os::unix::fs::chown(dir.join("server.log"), Some(uid), Some(gid));
    }
    let mut cmd = Command::new(bin.join("postgres"));
    cmd.arg("-D")
        .arg(data)
        .arg("-k")
        .arg(dir)
        .args(["-p", &port.to_string()])
        .args(["-c", "listen_addresses=127.0.0.1"])
        .args(["-c", "fsync=on"])
        .args(["-c", "synchronous_commit=on"])
        .args(["-c", "max_connections=200"])
        .args(["-c", "shared_buffers=32MB"])
        .stdout(log.try_clone().expect("duplicate the log handle"))
        .stderr(log);
    run_as(&mut cmd, owner, dir);
    // SAFETY: the closure only calls prctl(2), which is async-signal-safe. It runs after the
    // uid change, which would otherwise clear the parent-death signal.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (child_tx, child_rx) = mpsc::channel();
    let (keep_tx, keep_rx) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("test-postgres".into())
        .spawn(move || {
            let _ = child_tx.send(cmd.spawn());
            // Lives until the TestPostgres lets go of the sender (or the process exits).
            let _ = keep_rx.recv();
        })
        .expect("spawn the test-postgres thread");
    let child = child_rx
        .recv()
        .expect("the test-postgres thread reports")
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.join("postgres").display()));
    (child, keep_tx)
}
