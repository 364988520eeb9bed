//! Two real `cobrowse` binaries on one real `redis-server`: a cluster. The
//! first node started leads; the second follows it and forwards the shared
//! sessions' requests to it.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::redis::Redis;
use super::{Cobrowse, wait_for};

/// Prefix of the test clusters' Redis keys.
pub const PREFIX: &str = "it:";

/// Redis and two nodes with the same configuration.
pub struct Cluster {
    pub redis: Redis,
    /// Started first: it holds the lease.
    pub leader: Cobrowse,
    /// Started once the first leads: it forwards to it.
    pub follower: Cobrowse,
    /// The configuration every node runs with, `[store]` and `[cluster]`
    /// included.
    pub config: String,
}

impl Cluster {
    /// Starts Redis and two nodes on `config` (a whole configuration
    /// without `[store]` nor `[cluster]`, which are added); returns once
    /// each node's `healthz` says which one leads.
    pub async fn start(config: &str) -> Cluster {
        let redis = Redis::start();
        let config = format!("{config}\n{}", redis.node_config(PREFIX));
        let leader = Cobrowse::with_config(&config).await;
        leads(&leader).await;
        let follower = Cobrowse::with_config(&config).await;
        follows(&follower).await;
        Cluster {
            redis,
            leader,
            follower,
            config,
        }
    }

    /// Starts one more node of this cluster (a third node, or a node
    /// restarted in a rolling restart); it follows the leader.
    pub async fn another_node(&self) -> Cobrowse {
        let node = Cobrowse::with_config(&self.config).await;
        follows(&node).await;
        node
    }

    /// Both nodes' output, for failure messages.
    pub fn output(&self) -> String {
        format!(
            "---- leader ----\n{}\n---- follower ----\n{}",
            self.leader.output(),
            self.follower.output()
        )
    }
}

/// A plain `GET` to `addr`: the status and the body.
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let Ok(Ok(mut stream)) =
        tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await
    else {
        return (0, String::new());
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(req.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw)).await;
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_string())
}

/// The node's `cluster:` line in `healthz`.
pub async fn standing(node: &Cobrowse) -> String {
    let (_, body) = get(node.addr, "/__cobrowse/healthz").await;
    body.lines()
        .find_map(|l| l.strip_prefix("cluster: "))
        .unwrap_or("")
        .to_string()
}

/// Waits until `node` says it leads.
pub async fn leads(node: &Cobrowse) {
    wait_for(
        "the node to lead",
        Duration::from_secs(10),
        || async { standing(node).await.starts_with("leading").then_some(()) },
        || node.output(),
    )
    .await;
}

/// Waits until `node` says it follows another node.
pub async fn follows(node: &Cobrowse) {
    wait_for(
        "the node to follow the leader",
        Duration::from_secs(10),
        || async { standing(node).await.starts_with("following").then_some(()) },
        || node.output(),
    )
    .await;
}
