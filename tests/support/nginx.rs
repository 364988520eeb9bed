//! A real nginx as the load balancer in front of cobrowse nodes, for tests
//! where a client must move between nodes. It runs the example cluster's
//! own configuration (`examples/cluster/nginx.conf`: WebSocket upgrade, no
//! sticky sessions, passive health) with its addresses moved to free ports,
//! so the tests check the configuration the project ships. Killed when
//! dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::TempDir;

/// The addresses `examples/cluster/nginx.conf` names: the balancer's two
/// doors, then each node's site and console.
const BALANCER_SITE: &str = "127.0.0.1:8080";
const BALANCER_CONSOLE: &str = "127.0.0.1:8081";
const NODES: [(&str, &str); 2] = [
    ("127.0.0.1:8180", "127.0.0.1:8181"),
    ("127.0.0.1:8280", "127.0.0.1:8281"),
];

pub struct Nginx {
    child: Option<Child>,
    /// The balancer's site door and console door.
    pub site: SocketAddr,
    pub console: SocketAddr,
    dir: TempDir,
}

/// A port nothing listens on now (another process may take it before it is
/// used: callers retry).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Nginx {
    /// Two free addresses for the balancer's doors, known before the nodes
    /// start (their console's public origin names the balancer's).
    pub fn addresses() -> (SocketAddr, SocketAddr) {
        let at = |port| SocketAddr::from(([127, 0, 0, 1], port));
        (at(free_port()), at(free_port()))
    }

    /// Starts nginx on `site` and `console` in front of two nodes, each
    /// given as its (site, console) addresses. Panics with nginx's own
    /// words when it is missing (`tests/run.sh` installs it) or does not
    /// come up.
    pub fn balancing(
        site: SocketAddr,
        console: SocketAddr,
        nodes: [(SocketAddr, SocketAddr); 2],
    ) -> Nginx {
        let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/cluster/nginx.conf");
        let mut config = std::fs::read_to_string(&example)
            .unwrap_or_else(|e| panic!("reading {}: {e}", example.display()));
        let mut moves = vec![
            (BALANCER_SITE, site.to_string()),
            (BALANCER_CONSOLE, console.to_string()),
        ];
        for ((site, console), node) in NODES.iter().zip(nodes) {
            moves.push((site, node.0.to_string()));
            moves.push((console, node.1.to_string()));
        }
        for (from, to) in moves {
            assert!(
                config.contains(from),
                "{} no longer names {from}: update tests/support/nginx.rs",
                example.display()
            );
            config = config.replace(from, &to);
        }
        let dir = TempDir::new();
        let path = dir.path.join("nginx.conf");
        std::fs::write(&path, config).unwrap();
        let mut nginx = Nginx {
            child: None,
            site,
            console,
            dir,
        };
        nginx.run().unwrap_or_else(|e| panic!("{e}"));
        nginx
    }

    fn run(&mut self) -> Result<(), String> {
        let program = ["/usr/sbin/nginx", "nginx"]
            .into_iter()
            .find(|p| !p.starts_with('/') || std::path::Path::new(p).exists())
            .unwrap();
        // As root, nginx would run its workers as an unprivileged user who
        // cannot write the scratch directory.
        let globals = if is_root() {
            "daemon off; user root;"
        } else {
            "daemon off;"
        };
        let error_log = self.dir.path.join("nginx-error.log");
        let child = Command::new(program)
            .arg("-p")
            .arg(&self.dir.path)
            .arg("-c")
            .arg(self.dir.path.join("nginx.conf"))
            .arg("-e")
            .arg(&error_log)
            .args(["-g", globals])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("cannot run nginx ({e}); install it: `sudo apt-get install -y nginx` (tests/run.sh does)")
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect(self.site).is_ok() && TcpStream::connect(self.console).is_ok() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!("nginx exited ({status}); its log:\n{}", self.log()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "nginx did not listen on {} and {} within 10 s; its log:\n{}",
                    self.site,
                    self.console,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// nginx's error log (for failure messages: which node it gave up on).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path.join("nginx-error.log")).unwrap_or_default()
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

impl Drop for Nginx {
    /// SIGTERM, which stops the workers too (a killed master would leave
    /// its worker serving the port); SIGKILL if it has not stopped in 5 s.
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}
