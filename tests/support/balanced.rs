//! Two cobrowse nodes sharing one Redis behind nginx, as
//! `examples/cluster/` runs them, on free ports: for tests where a node is
//! killed, stopped or restarted under a live session and its clients must
//! reach the other through the load balancer (`cluster.rs` has two nodes
//! reached directly). A node keeps its addresses across restarts (nginx
//! knows them); its earlier runs' output is kept for failure messages.

use std::net::SocketAddr;
use std::time::Duration;

use super::cluster::{PREFIX, get, standing};
use super::nginx::{Nginx, free_port};
use super::redis::Redis;
use super::{Cobrowse, Front, wait_for};

pub struct Balanced {
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

impl Balanced {
    /// Starts node 0, waits until it holds the lease (so it is the leader),
    /// starts node 1, then nginx in front of both. `config` is the nodes'
    /// configuration without `[console]`, `[store]` and `[cluster]`, which
    /// are added here.
    pub async fn start(config: &str, redis: Redis) -> Balanced {
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
                         {}",
                        redis.node_config(PREFIX)
                    ),
                    process: None,
                    past: String::new(),
                }
            })
            .collect();
        let mut cluster = Balanced {
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
        process.kill();
        let killed = process.exited_within(Duration::from_secs(10)).await;
        assert!(killed.is_some(), "node {i} still runs after SIGKILL");
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

    /// Node `i`'s id in the cluster (new at every start), as its
    /// `healthz` says.
    pub async fn node_id(&self, i: usize) -> String {
        let node = self.node(i);
        wait_for(
            &format!("node {i} to say its id"),
            Duration::from_secs(10),
            || async { node_of(&standing(node).await) },
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
                let (_, body) = get(site, "/__cobrowse/healthz").await;
                body.contains(&mark).then_some(())
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

impl Front for Balanced {
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

/// The node id in a `cluster:` line of `healthz` (`leading (node ID)`,
/// `following LEADER (node ID)`).
fn node_of(standing: &str) -> Option<String> {
    let (_, rest) = standing.rsplit_once("(node ")?;
    rest.strip_suffix(')').map(str::to_string)
}

/// A RESP bulk string reply's text (`$5\r\nhello\r\n`); `None` for nil or
/// anything else.
fn bulk(reply: &str) -> Option<String> {
    let rest = reply.strip_prefix('$')?;
    let (len, rest) = rest.split_once("\r\n")?;
    let len: usize = len.parse().ok()?;
    rest.get(..len).map(str::to_string)
}
