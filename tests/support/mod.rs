//! Fixtures shared by every integration test: the real binary on an
//! ephemeral port, and waiting for conditions with a timeout.

#![allow(dead_code)]

pub mod balanced;
pub mod cluster;
pub mod nginx;
pub mod origin;
pub mod redis;
pub mod shop;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

/// The operator account every test config carries: user `op`, password
/// `op-password`.
pub const OPERATOR_USER: &str = "op";
pub const OPERATOR_PASSWORD: &str = "op-password";
/// argon2id of `op-password`, made with `cobrowse hash-password`.
pub const OPERATOR_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$fFU60TuR/LwNrJDlOoUW8A$VUpwlx3CTImGVMJQkARh2bjct8C5dFZmLRrccJ5nr/Q";

/// A running `cobrowse` binary; killed on drop.
pub struct Cobrowse {
    child: Child,
    pub addr: SocketAddr,
    /// The operator console's own listener (`operator console:` line).
    pub console_addr: SocketAddr,
    output: Arc<Mutex<String>>,
    /// Standard error alone (the logs).
    stderr: Arc<Mutex<String>>,
    dir: TempDir,
}

impl Cobrowse {
    /// Starts the binary with `args`, listening on an ephemeral loopback
    /// port, and waits until it says where it listens.
    pub async fn start(args: &[&str]) -> Cobrowse {
        Self::start_in(TempDir::new(), args).await
    }

    /// Starts the binary with a config file holding `toml` (its `listen` is
    /// replaced by an ephemeral port). `{dir}` in `toml` names a scratch
    /// directory for files the config refers to.
    pub async fn with_config(toml: &str) -> Cobrowse {
        let dir = TempDir::new();
        let path = dir.path.join("proxy.toml");
        std::fs::write(&path, toml.replace("{dir}", dir.path.to_str().unwrap())).unwrap();
        let path = path.to_str().unwrap().to_string();
        Self::start_in(dir, &["--config", &path]).await
    }

    /// A config for one upstream, with the test operator account.
    pub fn config_for(upstream: &str, extra: &str) -> String {
        format!(
            "upstream = \"{upstream}\"\n{extra}\n[[operators]]\nuser = \"{OPERATOR_USER}\"\nname = \"Olivia Operator\"\npassword_hash = \"{OPERATOR_HASH}\"\n"
        )
    }

    /// Like [`Cobrowse::with_config`], with the process's open-file limit
    /// set to `files` (through `prlimit`, which then becomes the binary: the
    /// process id is the binary's).
    pub async fn with_config_and_file_limit(toml: &str, files: u64) -> Cobrowse {
        let dir = TempDir::new();
        let path = dir.path.join("proxy.toml");
        std::fs::write(&path, toml.replace("{dir}", dir.path.to_str().unwrap())).unwrap();
        let path = path.to_str().unwrap().to_string();
        let limit = format!("--nofile={files}:{files}");
        Self::start_with(dir, Some(&["prlimit", &limit, "--"]), &["--config", &path]).await
    }

    /// Like [`Cobrowse::with_config`], listening on `listen` (a node that
    /// must come back on the same address after a restart).
    pub async fn with_config_listening(toml: &str, listen: SocketAddr) -> Cobrowse {
        let dir = TempDir::new();
        let path = dir.path.join("proxy.toml");
        std::fs::write(&path, toml.replace("{dir}", dir.path.to_str().unwrap())).unwrap();
        let path = path.to_str().unwrap().to_string();
        let listen = listen.to_string();
        Self::start_in(dir, &["--config", &path, "--listen", &listen]).await
    }

    async fn start_in(dir: TempDir, args: &[&str]) -> Cobrowse {
        Self::start_with(dir, None, args).await
    }

    async fn start_with(dir: TempDir, wrapper: Option<&[&str]>, args: &[&str]) -> Cobrowse {
        let mut cmd = match wrapper {
            Some([program, wrapper_args @ ..]) => {
                let mut cmd = Command::new(program);
                cmd.args(wrapper_args).arg(env!("CARGO_BIN_EXE_cobrowse"));
                cmd
            }
            _ => Command::new(env!("CARGO_BIN_EXE_cobrowse")),
        };
        cmd.args(args);
        if !args.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        cmd.current_dir(&dir.path)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info,cobrowse=debug".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn the cobrowse binary");
        let output = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        collect(child.stdout.take().unwrap(), vec![output.clone()], Some(tx));
        collect(
            child.stderr.take().unwrap(),
            vec![output.clone(), stderr.clone()],
            None,
        );
        // `http://HOST:PORT/...` -> HOST:PORT
        let addr_of = |url: &str| {
            url.split("://")
                .nth(1)
                .unwrap()
                .split('/')
                .next()
                .unwrap()
                .parse::<SocketAddr>()
                .unwrap()
        };
        let found = tokio::time::timeout(Duration::from_secs(20), async {
            let (mut addr, mut console) = (None, None);
            while let Some(line) = rx.recv().await {
                let line = line.trim_start();
                if let Some(url) = line.strip_prefix("cobrowse listening on ") {
                    addr = Some(addr_of(url));
                }
                // Behind a public origin, the console's listener has a line
                // of its own before the console's public address.
                if let Some(url) = line.strip_prefix("console listener:") {
                    console = Some(addr_of(url.trim()));
                }
                if let (Some(addr), Some(url)) = (addr, line.strip_prefix("operator console:")) {
                    return Some((addr, console.unwrap_or_else(|| addr_of(url.trim()))));
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some((addr, console_addr))) => Cobrowse {
                child,
                addr,
                console_addr,
                output,
                stderr,
                dir,
            },
            _ => panic!(
                "cobrowse did not start; it printed:\n{}",
                output.lock().unwrap()
            ),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// A URL on the operator console's own origin.
    pub fn console_url(&self, path: &str) -> String {
        format!("http://{}{}", self.console_addr, path)
    }

    pub fn console_ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.console_addr, path)
    }

    /// The console's origin, as a browser on it sends `Origin`.
    pub fn console_origin(&self) -> String {
        format!("http://{}", self.console_addr)
    }

    /// Everything the binary printed so far (for failure messages).
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// What the binary wrote to standard error so far: its log lines.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The scratch directory it runs in (`{dir}` in its config).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir.path
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the process is running")
    }

    /// A field of `/proc/PID/status` in KiB (`VmHWM`, the peak resident
    /// memory; `VmRSS`).
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("reading /proc/PID/status");
        let line = status
            .lines()
            .find(|l| l.starts_with(&format!("{field}:")))
            .unwrap_or_else(|| panic!("no {field} in:\n{status}"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM failed");
    }

    /// Sends SIGKILL: the process dies without a word.
    pub fn kill(&self) {
        let status = std::process::Command::new("kill")
            .args(["-KILL", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -KILL failed");
    }

    /// Waits for the process to exit; `None` if it still runs after `timeout`.
    pub async fn exited_within(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .ok()
            .map(Result::unwrap)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// What a browser test talks to: one node, or a load balancer in front of
/// several ([`cluster::Cluster`]); its output explains a failure.
pub trait Front {
    /// A URL on the site's door.
    fn url(&self, path: &str) -> String;
    /// What the server side printed (the last lines of each process).
    fn output(&self) -> String;
}

impl Front for Cobrowse {
    fn url(&self, path: &str) -> String {
        Cobrowse::url(self, path)
    }

    fn output(&self) -> String {
        Cobrowse::output(self)
    }
}

fn collect(
    stream: impl AsyncRead + Unpin + Send + 'static,
    outputs: Vec<Arc<Mutex<String>>>,
    lines: Option<tokio::sync::mpsc::UnboundedSender<String>>,
) {
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            for output in &outputs {
                let mut out = output.lock().unwrap();
                out.push_str(&line);
                out.push('\n');
            }
            if let Some(tx) = &lines {
                let _ = tx.send(line);
            }
        }
    });
}

/// Waits until `check` returns `Some`, polling every 50 ms; panics with
/// `what` and `context()` (what the page and the server saw) after `timeout`.
pub async fn wait_for<T, F, Fut>(
    what: &str,
    timeout: Duration,
    mut check: F,
    context: impl FnOnce() -> String,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n---- context ----\n{}",
                context()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A scratch directory, removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "cobrowse-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
