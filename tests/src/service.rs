//! The `bq-ingest` binary as a child process: spawn, signals, restart, log.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long [`Service`] waits for the binary to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stop waits after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Lines of the log printed when a test fails.
const TAIL_LINES: usize = 60;

/// Which long-running command a [`Service`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `bq-ingest pull --subscription <the test's subscription>`.
    Pull,
    /// `bq-ingest serve` on `127.0.0.1:<port>` (the push endpoint's port with
    /// [`TestCase::with_push`](crate::TestCase::with_push), else a free one).
    Serve,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Pull => "pull",
            Mode::Serve => "serve",
        }
    }
}

/// The `target` directory of this build: the test executable is `<target>/<profile>/deps/<name>`.
pub(crate) fn target_dir() -> PathBuf {
    profile_dir()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// `<target>/<profile>`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| panic!("unexpected test executable path {}", exe.display()))
}

/// The workspace root (this crate is `<root>/tests`).
pub(crate) fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

/// The `bq-ingest` binary: `BQ_INGEST_BIN`, else `<target>/<profile>/bq-ingest`, built (or
/// brought up to date) once per test process with `cargo build -p bq-ingest`.
pub(crate) fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(bin) = std::env::var_os("BQ_INGEST_BIN").filter(|v| !v.is_empty()) {
            return PathBuf::from(bin);
        }
        let profile_dir = profile_dir();
        let bin = profile_dir.join("bq-ingest");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut command = Command::new(cargo);
        command
            .current_dir(workspace_root())
            .args(["build", "--quiet", "-p", "bq-ingest", "--bin", "bq-ingest"])
            .arg("--target-dir")
            .arg(target_dir());
        if profile_dir.file_name().and_then(|n| n.to_str()) == Some("release") {
            command.arg("--release");
        }
        let started = Instant::now();
        match command.output() {
            Ok(out) if out.status.success() => {
                let took = started.elapsed();
                if took > Duration::from_secs(2) {
                    eprintln!("e2e: built {} in {took:.1?}", bin.display());
                }
            }
            Ok(out) => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                if bin.exists() {
                    eprintln!(
                        "e2e: `cargo build -p bq-ingest` failed; using the existing {}:\n{stderr}",
                        bin.display()
                    );
                } else {
                    panic!("cannot build bq-ingest ({}):\n{stderr}", out.status);
                }
            }
            Err(e) if bin.exists() => {
                eprintln!(
                    "e2e: cannot run cargo ({e}); using the existing {}",
                    bin.display()
                )
            }
            Err(e) => panic!("cannot run cargo to build bq-ingest: {e}"),
        }
        bin
    })
}

/// Reads `path` from byte `offset` to the end (empty when missing).
fn read_from(path: &Path, offset: u64) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        if file.seek(SeekFrom::Start(offset)).is_ok() {
            let mut bytes = Vec::new();
            let _ = file.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    text
}

/// One log line as JSON: the service's Cloud Logging objects as they are; any other line (a
/// panic message on stderr, say) as `{"severity": "RAW", "message": line}`.
fn parse_line(line: &str) -> Value {
    match serde_json::from_str::<Value>(line) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({"severity": "RAW", "message": line}),
    }
}

/// The `message` field of a log line (empty when absent).
fn message_of(line: &Value) -> &str {
    line.get("message").and_then(Value::as_str).unwrap_or("")
}

/// A running `bq-ingest serve` or `bq-ingest pull`, started by
/// [`TestCase::spawn_service`](crate::TestCase::spawn_service).
///
/// Its stdout and stderr (Cloud Logging JSON lines) go to [`Service::log_path`]; a
/// [`restart`](Service::restart) appends to the same file. Dropping it stops the process
/// (SIGTERM, SIGKILL after 10 s), and when the test is failing prints the last lines of its
/// log.
#[derive(Debug)]
pub struct Service {
    child: Option<Child>,
    mode: Mode,
    binary: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log_path: PathBuf,
    port: Option<u16>,
    /// Byte offset of the log where the current process's output starts.
    run_offset: u64,
}

impl Service {
    /// Starts the binary and waits until it logs that it is ready (panics with the log tail if
    /// it exits or is not ready within 30 s).
    pub(crate) async fn start(
        mode: Mode,
        args: Vec<String>,
        env: Vec<(String, String)>,
        log_path: PathBuf,
        port: Option<u16>,
    ) -> Service {
        let mut service = Service {
            child: None,
            mode,
            binary: binary().to_path_buf(),
            args,
            env,
            log_path,
            port,
            run_offset: 0,
        };
        service.launch();
        service.wait_ready().await;
        service
    }

    fn launch(&mut self) {
        if let Some(dir) = self.log_path.parent() {
            std::fs::create_dir_all(dir)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.log_path.display()));
        self.run_offset = log.metadata().map(|m| m.len()).unwrap_or(0);
        let stderr = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot clone the log handle: {e}"));
        let mut command = Command::new(&self.binary);
        command
            .args(&self.args)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr));
        for key in ["PATH", "HOME", "TMPDIR", "RUST_LOG", "RUST_BACKTRACE"] {
            if let Some(value) = std::env::var_os(key) {
                command.env(key, value);
            }
        }
        command.env("NO_PROXY", "127.0.0.1,localhost");
        command.env("no_proxy", "127.0.0.1,localhost");
        for (key, value) in &self.env {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        self.child = Some(child);
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let logged_ready = read_from(&self.log_path, self.run_offset)
                .lines()
                .map(parse_line)
                .any(|line| message_of(&line).starts_with("ready"));
            let listening = match (self.mode, self.port) {
                (Mode::Serve, Some(port)) => tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok(),
                _ => true,
            };
            if logged_ready && listening {
                return;
            }
            if let Some(status) = self.try_wait() {
                panic!(
                    "bq-ingest {} exited during start-up ({status}); log {}:\n{}",
                    self.mode.name(),
                    self.log_path.display(),
                    self.log_tail(TAIL_LINES)
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "bq-ingest {} not ready within {READY_TIMEOUT:?}; log {}:\n{}",
                    self.mode.name(),
                    self.log_path.display(),
                    self.log_tail(TAIL_LINES)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The mode it runs in.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The process id of the current process (`None` once it has exited and been reaped).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The port `serve` listens on (`None` for `pull`).
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// `http://127.0.0.1:PORT` of `serve` (`None` for `pull`).
    pub fn url(&self) -> Option<String> {
        self.port.map(|p| format!("http://127.0.0.1:{p}"))
    }

    /// The log file (every run of this service, appended).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The whole log as text.
    pub fn log_text(&self) -> String {
        read_from(&self.log_path, 0)
    }

    /// Every log line, parsed (see [`Service::message`] for the message of one).
    pub fn log_lines(&self) -> Vec<Value> {
        self.log_text().lines().map(parse_line).collect()
    }

    /// The log lines that match `predicate`.
    pub fn log_matching(&self, predicate: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.log_lines()
            .into_iter()
            .filter(|l| predicate(l))
            .collect()
    }

    /// The last `n` lines of the log, as text.
    pub fn log_tail(&self, n: usize) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The `message` field of a log line (empty when absent).
    ///
    /// ```
    /// let line = serde_json::json!({"severity": "INFO", "message": "ready"});
    /// assert_eq!(bq_ingest_e2e::Service::message(&line), "ready");
    /// ```
    pub fn message(line: &Value) -> &str {
        message_of(line)
    }

    /// Waits until a log line (of any run) matches `predicate` and returns the first one;
    /// panics with the log tail after `timeout`.
    ///
    /// ```no_run
    /// # async fn example(service: &bq_ingest_e2e::Service) {
    /// use std::time::Duration;
    /// let line = service
    ///     .wait_for_log(|l| l["outcome"] == "failed", Duration::from_secs(30))
    ///     .await;
    /// println!("{}", line["error"]);
    /// # }
    /// ```
    pub async fn wait_for_log(
        &self,
        predicate: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.log_lines().into_iter().find(|l| predicate(l)) {
                return line;
            }
            if Instant::now() > deadline {
                panic!(
                    "no matching line in the log of bq-ingest {} within {timeout:?}; log {}:\n{}",
                    self.mode.name(),
                    self.log_path.display(),
                    self.log_tail(TAIL_LINES)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The log lines that report the outcome of handling one notification of `object_uri`
    /// (`gs://bucket/name`): lines whose `object` field is that URI and that carry an
    /// `outcome` field (`done`, `ignored`, `failed`, `running`, `transient_error`, …). Both
    /// `pull` ("…; acknowledged") and `serve` ("notification handled") write one per delivery.
    pub fn outcomes_for(&self, object_uri: &str) -> Vec<Value> {
        self.log_matching(|l| {
            l.get("object").and_then(Value::as_str) == Some(object_uri)
                && l.get("outcome").is_some()
        })
    }

    /// Waits until [`outcomes_for`](Service::outcomes_for) `object_uri` has at least `n` lines
    /// and returns them; panics with the log tail after `timeout`.
    pub async fn wait_for_outcomes(
        &self,
        object_uri: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let lines = self.outcomes_for(object_uri);
            if lines.len() >= n {
                return lines;
            }
            if Instant::now() > deadline {
                panic!(
                    "{object_uri}: {} of {n} handlings logged by bq-ingest {} within {timeout:?}; log {}:\n{}",
                    lines.len(),
                    self.mode.name(),
                    self.log_path.display(),
                    self.log_tail(TAIL_LINES)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether the current process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && self.try_wait().is_none()
    }

    /// The exit status if the process has exited (reaps it).
    fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    fn signal(&self, signal: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .args([signal, &pid.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    /// Sends SIGTERM (Cloud Run's stop signal) and returns at once; see
    /// [`wait_exit`](Service::wait_exit).
    pub fn sigterm(&mut self) {
        if self.is_running() {
            self.signal("-TERM");
        }
    }

    /// Kills the process with SIGKILL (a crash) and reaps it.
    pub fn sigkill(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits up to `timeout` for the process to exit; returns its status, or `None` if it
    /// is still running.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if self.child.is_none() || Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the process: SIGTERM, then SIGKILL if it has not exited after 10 s. Returns the
    /// exit status (`None` if it had already been reaped).
    pub async fn stop(&mut self) -> Option<ExitStatus> {
        self.sigterm();
        if let Some(status) = self.wait_exit(STOP_GRACE).await {
            return Some(status);
        }
        let child = self.child.as_mut()?;
        let _ = child.kill();
        child.wait().ok()
    }

    /// Stops the process (as [`stop`](Service::stop)) and starts it again with the same
    /// arguments, environment and port, appending to the same log; waits until it is ready.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.launch();
        self.wait_ready().await;
    }

    fn stop_blocking(&mut self) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        self.signal("-TERM");
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if child.try_wait().ok().flatten().is_some() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop_blocking();
        if std::thread::panicking() {
            eprintln!(
                "---- last lines of bq-ingest {} ({}):\n{}\n----",
                self.mode.name(),
                self.log_path.display(),
                self.log_tail(TAIL_LINES)
            );
        }
    }
}
