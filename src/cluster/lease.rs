//! The leader's lease and the registry of nodes, in Redis.
//!
//! - `{prefix}leader`: the leader's node id, set only when absent (or
//!   marked `released` by a leader that stopped) and with an expiry (the
//!   lease); its holder extends it every third of the lease. Both in one
//!   script, so taking a free lease and extending one's own are each one
//!   step no other node can come between.
//! - `{prefix}node:<id>`: where peers reach that node's doors (JSON), with
//!   the same expiry, refreshed on the same beat.
//!
//! A node that holds the lease leads until another node's id is in the
//! key. While Redis does not answer nobody can take the lease, so the
//! leader keeps leading and the others keep forwarding to the leader they
//! know; once Redis answers again the leader takes its lease back (the key
//! may be gone: a Redis that restarted empty) or, if another node holds
//! it, hands over.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{RedisError, Script};
use serde::{Deserialize, Serialize};

use crate::hub::store::StoreError;

/// How long one request to Redis may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

// KEYS: the lease. ARGV: this node's id, the lease in ms, `1` to take the
// lease when it is free. A lease its leader released is taken at once.
// Returns the holder after the step (this node when it took or extended the
// lease), empty when the lease is free.
const CLAIM: &str = r#"
local holder = redis.call('GET', KEYS[1])
if not holder or holder == 'released' then
  if ARGV[3] ~= '1' and not holder then return '' end
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
if holder == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return holder
"#;

// KEYS: the lease, this node's record. ARGV: this node's id, the lease in
// ms. The lease, only when it is this node's own, is marked released (not
// a node id: ids are hex) so the next node to look takes it at once.
const RELEASE: &str = r#"
redis.call('DEL', KEYS[2])
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], 'released', 'PX', ARGV[2])
  return 1
end
return 0
"#;

/// Where peers reach a node's doors: `host:port` each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub site: String,
    pub console: String,
}

/// One node's handle on the lease and the registry.
pub struct Lease {
    conn: ConnectionManager,
    node: String,
    lease_key: String,
    record_key: String,
    prefix: String,
    lease_ms: u64,
    claim: Script,
    release: Script,
}

impl Lease {
    /// Connects lazily (a node starts while Redis is down); must be called
    /// inside the runtime.
    pub fn new(url: &str, prefix: &str, node: &str, lease: Duration) -> Result<Lease, StoreError> {
        let (_, conn) = crate::hub::redis::connect_within(url, REQUEST_TIMEOUT)?;
        Ok(Lease {
            conn,
            node: node.to_string(),
            lease_key: format!("{prefix}leader"),
            record_key: record_key(prefix, node),
            prefix: prefix.to_string(),
            lease_ms: lease.as_millis().clamp(1, u64::MAX as u128) as u64,
            claim: Script::new(CLAIM),
            release: Script::new(RELEASE),
        })
    }

    /// The lease's key, `{prefix}leader`.
    pub fn key(&self) -> &str {
        &self.lease_key
    }

    /// Refreshes this node's record, extends the lease when it is its own
    /// and, when `take` is set, takes it when it is free; returns the
    /// lease's holder, `None` when it is free.
    pub async fn step(&self, record: &Record, take: bool) -> Result<Option<String>, RedisError> {
        let mut conn = self.conn.clone();
        let json = serde_json::to_string(record).expect("a record serialises");
        redis::cmd("SET")
            .arg(&self.record_key)
            .arg(json)
            .arg("PX")
            .arg(self.lease_ms)
            .query_async::<()>(&mut conn)
            .await?;
        let holder: String = self
            .claim
            .key(&self.lease_key)
            .arg(&self.node)
            .arg(self.lease_ms)
            .arg(if take { "1" } else { "0" })
            .invoke_async(&mut conn)
            .await?;
        Ok(Some(holder).filter(|h| !h.is_empty()))
    }

    /// Where `node` says peers reach it; `None` when it is not registered
    /// (gone, or its record malformed).
    pub async fn record(&self, node: &str) -> Result<Option<Record>, RedisError> {
        let mut conn = self.conn.clone();
        let json: Option<String> = redis::cmd("GET")
            .arg(record_key(&self.prefix, node))
            .query_async(&mut conn)
            .await?;
        Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
    }

    /// Deletes this node's record, and the lease when it is its own (a
    /// graceful stop: another node takes over at once).
    pub async fn release(&self) -> Result<bool, RedisError> {
        let mut conn = self.conn.clone();
        let released: i64 = self
            .release
            .key(&self.lease_key)
            .key(&self.record_key)
            .arg(&self.node)
            .arg(self.lease_ms)
            .invoke_async(&mut conn)
            .await?;
        Ok(released == 1)
    }
}

fn record_key(prefix: &str, node: &str) -> String {
    format!("{prefix}node:{node}")
}
