//! Two cobrowse nodes sharing one Redis behind nginx, as
//! `examples/cluster/` runs them, on free ports: for tests where a node is
//! killed, stopped or restarted under a live session. A node keeps its
//! addresses across restarts (nginx knows them); its earlier runs' output
//! is kept for failure messages.

use std::net::SocketAddr;
use std::time::Duration;

use super::nginx::{Nginx, free_port};
use super::redis::Redis;
use super::{Cobrowse, Front, wait_for};

/// The secret both nodes share (`[cluster] secret`).
pub const CLUSTER_SECRET: &str = "cluster-test-secret-0123456789abcdef-0123456789";

/// The store prefix the nodes use (the default).
const PREFIX: &str = "cobrowse:";

pub struct Cluster {
    pub redis: Redis,
    pub nginx: Nginx,
    nodes: Vec<Node>,
}

struct Node {
    site: SocketAddr,
    console: SocketAddr,
    config: String,
    process: Option<Cobrowse>,
    /// What its earlier runs printed.
    past: String,
}

impl Cluster {
    /// Starts node 0, waits until it holds the lease (so it is the leader),
    /// starts node 1, then nginx in front of both. `config` is the nodes'
    /// configuration without `[console]`, `[store]` and `[cluster]`, which
    /// are added here.
    pub async fn start(config: &str, redis: Redis) -> Cluster {
        let (site, console) = Nginx::addresses();
        let at = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let nodes: Vec<Node> = (0..2)
            .map(|_| {
                let (node_site, node_console) = (at(free_port()), at(free_port()));
                Node {
                    site: node_site,
                    console: node_console,
                    // Top-level keys first: the site and the console as
                    // browsers see them, the balancer's doors (the console
                    // frames the first public origin).
                    config: format!(
                        "public_origins = [\"http://{site}\"]\n{config}\n[console]\nlisten = \"{node_console}\"\npublic_origin = \"http://{console}\"\n\n\
                         [store]\nkind = \"redis\"\nurl = \"{}\"\n\n[cluster]\nsecret = \"{CLUSTER_SECRET}\"\n",
                        redis.url()
                    ),
                    process: None,
                    past: String::new(),
                }
            })
            .collect();
        let mut cluster = Cluster {
            nginx: Nginx::balancing(
                site,
                console,
                [
                    (nodes[0].site, nodes[0].console),
                    (nodes[1].site, nodes[1].console),
                ],
            ),
            redis,
            nodes,
        };
        cluster.restart(0).await;
        cluster.wait_leader(0, Duration::from_secs(10)).await;
        cluster.restart(1).await;
        cluster
    }

    /// Node `i` as it runs now.
    pub fn node(&self, i: usize) -> &Cobrowse {
        self.nodes[i]
            .process
            .as_ref()
            .unwrap_or_else(|| panic!("node {i} is not running"))
    }

    /// Starts node `i` (again), on its addresses.
    pub async fn restart(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        assert!(node.process.is_none(), "node {i} is running");
        node.process = Some(Cobrowse::with_config_listening(&node.config, node.site).await);
    }

    /// Kills node `i` (SIGKILL), as a machine that dies.
    pub async fn kill(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let mut process = node.process.take().expect("the node is running");
        process.kill().await;
        node.past.push_str(&process.output());
        node.past.push_str("---- killed ----\n");
    }

    /// Stops node `i` as a rolling restart does (SIGTERM) and waits for it
    /// to exit.
    pub async fn stop(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let mut process = node.process.take().expect("the node is running");
        process.terminate();
        let exited = process.exited_within(Duration::from_secs(20)).await;
        node.past.push_str(&process.output());
        node.past.push_str("---- stopped ----\n");
        assert!(
            exited.is_some(),
            "node {i} did not exit within 20 s of SIGTERM:\n{}",
            node.past
        );
    }

    /// The node that holds the lease now, from Redis: the leader key names
    /// a node id, and that node's registration names its addresses.
    pub fn leader(&self) -> Option<usize> {
        let id = bulk(&self.redis.command(&["GET", &format!("{PREFIX}leader")]))?;
        let registration = bulk(&self.redis.command(&["GET", &format!("{PREFIX}node:{id}")]))?;
        self.nodes
            .iter()
            .position(|n| registration.contains(&n.site.to_string()))
    }

    /// Waits until node `i` holds the lease.
    pub async fn wait_leader(&self, i: usize, timeout: Duration) {
        wait_for(
            &format!("node {i} to lead"),
            timeout,
            || async { (self.leader() == Some(i)).then_some(()) },
            || {
                format!(
                    "leader key: {:?}\n{}",
                    self.redis.command(&["GET", &format!("{PREFIX}leader")]),
                    Front::output(self)
                )
            },
        )
        .await;
    }

    /// Node `i`'s id in the cluster, as it prints it once it joined (new
    /// at every start).
    pub async fn node_id(&self, i: usize) -> String {
        wait_for(
            &format!("node {i} to say its id"),
            Duration::from_secs(10),
            || async {
                self.node(i)
                    .output()
                    .lines()
                    .find_map(|l| l.trim_start().strip_prefix("cluster node:"))
                    .and_then(|rest| rest.split_whitespace().next())
                    .map(str::to_string)
            },
            || Front::output(self),
        )
        .await
    }

    /// Waits until the balancer sends requests to node `i` again: after a
    /// node failed, nginx skips it for its `fail_timeout`, so a rolling
    /// restart waits for this before stopping the next node. Asked through
    /// the balancer: its `healthz` answers name the node that answered.
    pub async fn wait_in_rotation(&self, i: usize, timeout: Duration) {
        let mark = format!("(node {})", self.node_id(i).await);
        let site = self.nginx.site;
        wait_for(
            &format!("the balancer to send requests to node {i} again"),
            timeout,
            || async {
                let answer = get(site, "/__cobrowse/healthz").await;
                answer.contains(&mark).then_some(())
            },
            || Front::output(self),
        )
        .await;
    }

    /// A URL on the balancer's console door.
    pub fn console_url(&self, path: &str) -> String {
        format!("http://{}{}", self.nginx.console, path)
    }
}

impl Front for Cluster {
    /// A URL on the balancer's site door.
    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.nginx.site, path)
    }

    /// The last lines of each node (this run and earlier ones) and nginx's
    /// error log.
    fn output(&self) -> String {
        let tail = |text: &str, n: usize| {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        };
        let mut out = String::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let now = node
                .process
                .as_ref()
                .map(Cobrowse::output)
                .unwrap_or_default();
            out.push_str(&format!(
                "==== node {i} ({}, console {}) ====\n{}\n",
                node.site,
                node.console,
                tail(&format!("{}{now}", node.past), 60)
            ));
        }
        out.push_str(&format!(
            "==== nginx ====\n{}\n",
            tail(&self.nginx.log(), 30)
        ));
        out
    }
}

/// A GET over HTTP/1.1 on a connection of its own: the whole answer as
/// text, or what went wrong.
async fn get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        std::io::Result::Ok(String::from_utf8_lossy(&answer).into_owned())
    };
    match tokio::time::timeout(Duration::from_secs(5), attempt).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => format!("GET {path}: {e}"),
        Err(_) => format!("GET {path}: no answer within 5 s"),
    }
}

/// A RESP bulk string reply's text (`$5\r\nhello\r\n`); `None` for nil or
/// anything else.
fn bulk(reply: &str) -> Option<String> {
    let rest = reply.strip_prefix('$')?;
    let (len, rest) = rest.split_once("\r\n")?;
    let len: usize = len.parse().ok()?;
    rest.get(..len).map(str::to_string)
}
