//! A real `redis-server` for the store's tests: on a free port, in a
//! directory of its own, saving nothing (or, for tests of a restart,
//! appending every write to its log before it answers); handed out once it
//! answers PING, killed when dropped. Standard library only: the library's unit tests
//! include this file too (`src/hub/contract.rs`).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `[cluster] secret` of every test cluster.
// The library's unit tests include this file and use neither.
#[allow(dead_code)]
pub const CLUSTER_SECRET: &str = "test-cluster-secret-0123456789abcdef";

pub struct Redis {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    persistent: bool,
}

impl Redis {
    /// Starts a server on a free port. Panics with what went wrong when
    /// `redis-server` is missing or does not come up (`tests/run.sh`
    /// installs it).
    pub fn start() -> Redis {
        Self::start_with(false)
    }

    /// Starts a server on a free port; `persistent`: with `appendonly yes`
    /// and `appendfsync always`, so a server killed and run again has every
    /// write it acknowledged (as a production Redis with persistence).
    pub fn start_with(persistent: bool) -> Redis {
        let mut last = String::new();
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let dir =
                std::env::temp_dir().join(format!("cobrowse-redis-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("a directory for redis-server");
            let mut redis = Redis {
                child: None,
                port,
                dir,
                persistent,
            };
            match redis.run() {
                Ok(()) => return redis,
                // Another process took the port between the probe and the
                // start: try another.
                Err(e) => last = e,
            }
        }
        panic!("redis-server did not start: {last}");
    }

    /// Starts the server on this fixture's port (again, after [`stop`]).
    /// Nothing was saved, so it starts empty; a persistent one reads back
    /// its append-only file.
    ///
    /// [`stop`]: Redis::stop
    pub fn run(&mut self) -> Result<(), String> {
        let log = self.dir.join("redis.log");
        let persistence: &[&str] = if self.persistent {
            &["--appendonly", "yes", "--appendfsync", "always"]
        } else {
            &["--appendonly", "no"]
        };
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(persistence)
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("cannot run redis-server ({e}); install it (tests/run.sh does)")
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.ping() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!(
                    "redis-server exited ({status}); its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ));
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(format!(
                    "redis-server on port {} did not answer PING in 10 s; its log:\n{}",
                    self.port,
                    std::fs::read_to_string(&log).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut answer = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok()
            && s.read_exact(&mut answer).is_ok()
            && &answer == b"+PONG\r\n"
    }

    /// Kills the server; [`run`](Redis::run) starts it again.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server's process where it stands (`SIGSTOP`): it keeps
    /// its data and its connections but answers nothing, as a Redis that
    /// hangs; [`thaw`](Redis::thaw) lets it go on.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("redis-server is running").id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {pid}: {status}");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The `[store]` and `[cluster]` tables of a node on this server, its
    /// keys under `prefix`: every node given them acts as one.
    #[allow(dead_code)]
    pub fn node_config(&self, prefix: &str) -> String {
        format!(
            "\n[store]\nkind = \"redis\"\nurl = \"{}\"\nprefix = \"{prefix}\"\n\n[cluster]\nsecret = \"{CLUSTER_SECRET}\"\n",
            self.url()
        )
    }

    /// Runs one command given as words and returns the raw reply (for
    /// tests that look at or disturb the server directly).
    pub fn command(&self, words: &[&str]) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis-server");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut out = format!("*{}\r\n", words.len());
        for w in words {
            out.push_str(&format!("${}\r\n{w}\r\n", w.len()));
        }
        s.write_all(out.as_bytes()).expect("write to redis-server");
        let mut reply = vec![0u8; 64 * 1024];
        let n = s.read(&mut reply).expect("read from redis-server");
        String::from_utf8_lossy(&reply[..n]).into_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
