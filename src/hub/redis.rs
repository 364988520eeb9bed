//! The Redis store: sessions' difference commands kept in Redis, so several
//! nodes with the same `[store]` share them, under the same contract as the
//! in-memory store (`store.rs`).
//!
//! Per session, all under one hash tag (`{session}`) so a Redis Cluster keeps
//! them on one shard (docs/scale-out.md has the layout):
//! - `m`, a hash: `seq` (the last sequence number) and `bytes` (what the
//!   stored commands cost against the byte bound); its presence is the
//!   session being open;
//! - `c`, a hash: each key's latest command's sequence number and cost;
//! - `o`, a sorted set scored by sequence number: the latest command of each
//!   key as a record (below), so a snapshot is one range read in write order;
//! - `k`, a sorted set of the keys at one score: a lexical range finds a
//!   frame's subtree;
//! - the channel `live`: every accepted record, then `closed` when the
//!   session is removed.
//!
//! Appending is one Lua script: it takes the next sequence number, drops
//! the subtree of a frame URL, checks the bounds (refusing without a
//! change), stores the record and publishes it. Redis runs scripts one at a
//! time, so every node sees records in sequence order.
//!
//! Live delivery: each node holds one subscriber connection and a local
//! [`Feed`] per followed session. `follow` subscribes first (and waits for
//! Redis to confirm), then reads the snapshot: every record above the
//! snapshot's sequence number arrives on the feed, and receivers drop what
//! is at or below it. When the subscriber connection is lost, records
//! published meanwhile are lost to it: once it is back and resubscribed,
//! each feed is told which sequence numbers may be missing and its
//! receivers resynchronise from a snapshot.
//!
//! A record is `seq bytes flags keylen senderlen key sender json`, with
//! `flags` bit 0 a frame URL and bit 1 the attribute `all`; `json` is the
//! `command` message exactly as receivers get it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, RedisError, Script};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::protocol::{Attribute, Command};
use super::store::{
    Bounds, Feed, STAMPED_OVERHEAD, Snapshot, Stamped, Store, StoreError, StoreHealth,
    Subscription, wire,
};
use crate::telemetry::{self, store_operation};

/// The message on a session's channel once it is removed.
const CLOSED: &[u8] = b"closed";

/// How long one Redis request, or one connection attempt, may take before
/// the store reports Redis unavailable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The longest pause between attempts to bring the subscriber connection
/// back.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

const OPEN: &str = r#"
redis.call('HSETNX', KEYS[1], 'seq', 0)
redis.call('HSETNX', KEYS[1], 'bytes', 0)
for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
return 1
"#;

// KEYS: m c o k. ARGV: key, frame URL (1/0), the record's fixed part
// (`flags keylen senderlen key sender`), the wire form's head and tail, its
// cost without the sequence number's digits, max keys, max bytes, expiry
// in ms, the channel.
const APPEND: &str = r#"
local seq = redis.call('HGET', KEYS[1], 'seq')
if not seq then return {'unknown'} end
seq = tonumber(seq) + 1
local key = ARGV[1]
local function cost(entry) return tonumber(string.match(entry, ' (%d+)$')) end
local dropped = {}
local dropped_bytes = 0
local old = redis.call('HGET', KEYS[2], key)
if old then
  dropped[#dropped + 1] = key
  dropped_bytes = dropped_bytes + cost(old)
end
if ARGV[2] == '1' then
  -- `key/` up to, not including, `key0`: every key below the frame.
  local below = redis.call('ZRANGEBYLEX', KEYS[4], '[' .. key .. '/', '(' .. key .. '0')
  for _, k in ipairs(below) do
    dropped[#dropped + 1] = k
    dropped_bytes = dropped_bytes + cost(redis.call('HGET', KEYS[2], k))
  end
end
local keys = redis.call('HLEN', KEYS[2]) - #dropped + 1
if keys > tonumber(ARGV[7]) then return {'keys'} end
local digits = tostring(seq)
local bytes = tonumber(ARGV[6]) + #digits
local total = tonumber(redis.call('HGET', KEYS[1], 'bytes')) - dropped_bytes + bytes
if total > tonumber(ARGV[8]) then return {'bytes', total} end
for _, k in ipairs(dropped) do
  local entry = redis.call('HGET', KEYS[2], k)
  local s = string.match(entry, '^(%d+) ')
  redis.call('ZREMRANGEBYSCORE', KEYS[3], s, s)
  redis.call('HDEL', KEYS[2], k)
  redis.call('ZREM', KEYS[4], k)
end
local record = digits .. ' ' .. bytes .. ' ' .. ARGV[3] .. ARGV[4] .. digits .. ARGV[5]
redis.call('HSET', KEYS[2], key, digits .. ' ' .. bytes)
redis.call('ZADD', KEYS[3], seq, record)
redis.call('ZADD', KEYS[4], 0, key)
redis.call('HSET', KEYS[1], 'seq', seq, 'bytes', total)
for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[9]) end
redis.call('PUBLISH', ARGV[10], record)
return {'ok', seq}
"#;

// KEYS: m c o k. ARGV: expiry in ms. The last sequence number, then every
// record in write order; nothing when the session is not open.
const SNAPSHOT: &str = r#"
local seq = redis.call('HGET', KEYS[1], 'seq')
if not seq then return {} end
for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
local out = redis.call('ZRANGE', KEYS[3], 0, -1)
table.insert(out, 1, seq)
return out
"#;

// KEYS: m c o k. ARGV: the channel.
const REMOVE: &str = r#"
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
redis.call('PUBLISH', ARGV[1], 'closed')
return 1
"#;

struct Scripts {
    open: Script,
    append: Script,
    snapshot: Script,
    remove: Script,
}

/// The feeds this node's receivers follow, by channel.
struct Live {
    feeds: Mutex<HashMap<String, Weak<Feed>>>,
}

impl Live {
    fn feeds(&self) -> std::sync::MutexGuard<'_, HashMap<String, Weak<Feed>>> {
        crate::lock::lock(&self.feeds)
    }
}

/// Asks the subscriber task to subscribe to a channel; answered once Redis
/// confirmed it.
struct Subscribe {
    channel: String,
    done: oneshot::Sender<Result<(), StoreError>>,
}

pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    bounds: Bounds,
    expire_ms: u64,
    backlog: usize,
    feed_bytes: usize,
    scripts: Scripts,
    live: Arc<Live>,
    subscribe: mpsc::UnboundedSender<Subscribe>,
    health: Arc<Health>,
}

/// What this node knows of whether Redis answers, for `{prefix}healthz`
/// and the `cobrowse_store_up` gauge. Every store request's outcome
/// refreshes it, and a PING when nothing was heard for a second (an idle
/// node notices too), so reading it never costs a request to Redis.
struct Health {
    state: Mutex<HealthState>,
}

struct HealthState {
    /// Since when Redis has not answered, and why; `None` while it does.
    down: Option<(Instant, String)>,
    /// When Redis last answered or failed; `None` before the first request.
    heard: Option<Instant>,
    /// When a failure was last logged, and how many were not logged since.
    logged: Option<Instant>,
    not_logged: u64,
}

/// How often the health of an otherwise idle store is checked, and how long
/// its PING may take.
const PROBE_EVERY: Duration = Duration::from_secs(1);
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

impl Health {
    fn new() -> Arc<Health> {
        Arc::new(Health {
            state: Mutex::new(HealthState {
                down: Some((Instant::now(), "not checked yet".into())),
                heard: None,
                logged: None,
                not_logged: 0,
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, HealthState> {
        crate::lock::lock(&self.state)
    }

    /// Redis answered.
    fn answered(&self) {
        let mut st = self.state();
        st.heard = Some(Instant::now());
        if let Some((since, _)) = st.down.take() {
            info!(
                down_secs = since.elapsed().as_secs(),
                "Redis store: Redis answers; calls and commands are accepted"
            );
        }
    }

    /// What a Redis failure means to the hub: the store is unavailable.
    /// Counted by `operation`, and logged with what was being done at most
    /// once a second (an outage under load fails every request), with the
    /// count of those not logged.
    fn failed(&self, operation: &'static str, doing: &str, e: &RedisError) -> StoreError {
        metrics::counter!(telemetry::STORE_FAILURES, "operation" => operation).increment(1);
        let now = Instant::now();
        let mut st = self.state();
        // A node that starts while Redis is down says so too.
        let first = st.heard.replace(now).is_none();
        let reason = format!("{doing} failed ({})", describe(e));
        match &mut st.down {
            Some((_, why)) if !first => *why = reason,
            _ => {
                warn!(
                    reason,
                    "Redis store: Redis does not answer; healthz reports 503 and calls and commands are refused until it does"
                );
                st.down = Some((now, reason));
            }
        }
        if st
            .logged
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1))
        {
            st.logged = Some(now);
            let also = std::mem::take(&mut st.not_logged);
            warn!(error = %e, failures_not_logged = also, "Redis store: {doing} failed");
        } else {
            st.not_logged += 1;
        }
        // The participant is told what failed, not Redis's own words (hosts,
        // addresses): those are in the log.
        StoreError::Unavailable(format!(
            "the shared store (Redis) failed while {doing}; try again"
        ))
    }

    /// Whether nothing was heard from Redis for `quiet`.
    fn quiet_for(&self, quiet: Duration) -> bool {
        self.state().heard.is_none_or(|at| at.elapsed() >= quiet)
    }

    fn report(&self) -> StoreHealth {
        let st = self.state();
        StoreHealth {
            kind: "redis",
            down: st.down.as_ref().map(|(since, why)| {
                format!(
                    "Redis does not answer (for {} s): {why}",
                    since.elapsed().as_secs()
                )
            }),
        }
    }
}

/// A client for the Redis at `url` and its command connection, made lazily
/// (a node starts while Redis is down) and bounded in time per request, so a
/// Redis that stops answering is reported within seconds. Everything of the
/// program that writes to the store's Redis connects through this.
pub(crate) fn connect(url: &str) -> Result<(Client, ConnectionManager), StoreError> {
    connect_within(url, REQUEST_TIMEOUT)
}

/// [`connect`] with another bound per request (the cluster's lease wants
/// its answer sooner than the store does).
pub(crate) fn connect_within(
    url: &str,
    request_timeout: Duration,
) -> Result<(Client, ConnectionManager), StoreError> {
    let client = Client::open(url)
        .map_err(|e| StoreError::Unavailable(format!("not a usable Redis URL ({e})")))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(request_timeout))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500));
    let conn = ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(|e| {
        StoreError::Unavailable(format!("cannot connect to Redis ({})", describe(&e)))
    })?;
    Ok((client, conn))
}

/// A failure in words of our own: Redis's error text may name hosts.
pub(crate) fn describe(e: &RedisError) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connection_refusal() {
        "connection refused"
    } else if e.is_connection_dropped() {
        "connection lost"
    } else if e.is_io_error() {
        "network error"
    } else {
        "error from Redis"
    }
}

/// Checks that Redis answers whenever nothing else was heard from it for a
/// second; ends with the store.
async fn probe(conn: ConnectionManager, health: Weak<Health>) {
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(health) = health.upgrade() else {
            return;
        };
        if !health.quiet_for(PROBE_EVERY) {
            continue;
        }
        let mut conn = conn.clone();
        let ping = ::redis::cmd("PING");
        match tokio::time::timeout(PROBE_TIMEOUT, ping.query_async::<String>(&mut conn)).await {
            Ok(Ok(_)) => health.answered(),
            Ok(Err(e)) => {
                health.failed(telemetry::store_operation::PING, "answering a PING", &e);
            }
            Err(_) => {
                let e = RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no answer to PING",
                ));
                health.failed(telemetry::store_operation::PING, "answering a PING", &e);
            }
        }
    }
}

fn malformed(what: &str) -> StoreError {
    warn!("Redis store: malformed {what}");
    StoreError::Unavailable(format!("the shared store (Redis) holds a malformed {what}"))
}

impl RedisStore {
    /// A store on the Redis at `url`. Connects lazily and reconnects on its
    /// own; must be made inside a Tokio runtime (it starts the subscriber
    /// task).
    pub fn new(
        url: &str,
        prefix: &str,
        bounds: Bounds,
        backlog: usize,
        expire: Duration,
    ) -> Result<RedisStore, StoreError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            StoreError::Unavailable("the Redis store must be started inside the runtime".into())
        })?;
        let (client, conn) = connect(url)?;
        let health = Health::new();
        runtime.spawn(probe(conn.clone(), Arc::downgrade(&health)));
        let live = Arc::new(Live {
            feeds: Mutex::new(HashMap::new()),
        });
        let (subscribe, requests) = mpsc::unbounded_channel();
        runtime.spawn(subscriber(
            client,
            conn.clone(),
            prefix.to_string(),
            live.clone(),
            requests,
            health.clone(),
        ));
        Ok(RedisStore {
            conn,
            prefix: prefix.to_string(),
            bounds,
            expire_ms: expire.as_millis().clamp(1, u64::MAX as u128) as u64,
            backlog: backlog.max(1),
            feed_bytes: usize::MAX,
            scripts: Scripts {
                open: Script::new(OPEN),
                append: Script::new(APPEND),
                snapshot: Script::new(SNAPSHOT),
                remove: Script::new(REMOVE),
            },
            live,
            subscribe,
            health,
        })
    }

    /// Bounds each session's live feed on this node by bytes as well as by
    /// count.
    pub fn with_feed_bytes(mut self, feed_bytes: usize) -> RedisStore {
        self.feed_bytes = feed_bytes;
        self
    }

    fn keys(&self, session: &str) -> [String; 4] {
        session_keys(&self.prefix, session)
    }

    fn channel(&self, session: &str) -> String {
        channel(&self.prefix, session)
    }

    async fn open_now(&self, session: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let mut call = self.scripts.open.prepare_invoke();
        for k in self.keys(session) {
            call.key(k);
        }
        call.arg(self.expire_ms)
            .invoke_async::<i64>(&mut conn)
            .await
            .map_err(|e| {
                self.health
                    .failed(store_operation::OPEN, "opening a session", &e)
            })?;
        self.health.answered();
        Ok(())
    }

    async fn append_now(
        &self,
        session: &str,
        sender: &str,
        command: Command,
    ) -> Result<Arc<Stamped>, StoreError> {
        let (head, tail) = Stamped::wire_parts(session, sender, &command);
        let frame_url = command.is_frame_url();
        let all = command.attribute == Attribute::All;
        let key = command.key;
        let flags = u8::from(frame_url) | (u8::from(all) << 1);
        let fixed = format!("{flags} {} {} {key}{sender}", key.len(), sender.len());
        let base = head.len() + tail.len() + key.len() + sender.len() + STAMPED_OVERHEAD;

        let mut conn = self.conn.clone();
        let mut call = self.scripts.append.prepare_invoke();
        for k in self.keys(session) {
            call.key(k);
        }
        call.arg(&key)
            .arg(if frame_url { "1" } else { "0" })
            .arg(&fixed)
            .arg(&head)
            .arg(&tail)
            .arg(base)
            .arg(self.bounds.max_keys)
            .arg(self.bounds.max_bytes)
            .arg(self.expire_ms)
            .arg(self.channel(session));
        let answer: Vec<::redis::Value> = call.invoke_async(&mut conn).await.map_err(|e| {
            self.health
                .failed(store_operation::APPEND, "storing a command", &e)
        })?;
        self.health.answered();
        let word = |i: usize| match answer.get(i) {
            Some(::redis::Value::BulkString(b)) => std::str::from_utf8(b).ok(),
            Some(::redis::Value::SimpleString(s)) => Some(s.as_str()),
            _ => None,
        };
        let number = |i: usize| match answer.get(i) {
            Some(::redis::Value::Int(n)) => u64::try_from(*n).ok(),
            _ => None,
        };
        match word(0) {
            Some("ok") => {
                let seq = number(1).ok_or_else(|| malformed("answer to an append"))?;
                Ok(Arc::new(Stamped {
                    seq,
                    sender: sender.to_string(),
                    key: key.into(),
                    attribute: command.attribute,
                    frame_url,
                    json: wire(format!("{head}{seq}{tail}")),
                }))
            }
            Some("unknown") => Err(StoreError::UnknownSession),
            Some("keys") => Err(StoreError::Limit(format!(
                "the session already holds {} keys, its bound",
                self.bounds.max_keys
            ))),
            Some("bytes") => Err(StoreError::Limit(format!(
                "storing this command would take the session to {} bytes, over its bound of {}",
                number(1).unwrap_or(0),
                self.bounds.max_bytes
            ))),
            _ => Err(malformed("answer to an append")),
        }
    }

    async fn snapshot_now(&self, session: &str) -> Result<Snapshot, StoreError> {
        let mut conn = self.conn.clone();
        let mut call = self.scripts.snapshot.prepare_invoke();
        for k in self.keys(session) {
            call.key(k);
        }
        let answer: Vec<Vec<u8>> = call
            .arg(self.expire_ms)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| {
                self.health.failed(
                    store_operation::SNAPSHOT,
                    "reading a session's commands",
                    &e,
                )
            })?;
        self.health.answered();
        let mut answer = answer.into_iter();
        let Some(last_seq) = answer.next() else {
            return Err(StoreError::UnknownSession);
        };
        let last_seq = std::str::from_utf8(&last_seq)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| malformed("sequence number"))?;
        let mut frames = Vec::new();
        let mut parts = Vec::new();
        for record in answer {
            let c = parse_record(&record).ok_or_else(|| malformed("stored command"))?;
            if c.frame_url {
                frames.push(Arc::new(c));
            } else {
                parts.push(Arc::new(c));
            }
        }
        // As the in-memory store: frame URLs shallow to deep (stable, so
        // equal depths keep their write order), then the parts.
        frames.sort_by_key(|c| c.key.matches('/').count());
        frames.extend(parts);
        Ok(Snapshot {
            commands: frames,
            last_seq,
        })
    }

    async fn follow_now(&self, session: &str) -> Result<(Subscription, Snapshot), StoreError> {
        let channel = self.channel(session);
        let feed = {
            let mut feeds = self.live.feeds();
            match feeds.get(&channel).and_then(Weak::upgrade) {
                Some(feed) => feed,
                None => {
                    let feed = Feed::new(self.backlog, self.feed_bytes);
                    feeds.insert(channel.clone(), Arc::downgrade(&feed));
                    feed
                }
            }
        };
        // This receiver's place in the feed is taken before anything else,
        // holding what arrives from now on: a command published after the
        // snapshot may reach this node before the snapshot does, and the
        // feed would let go of it if nobody here wanted it yet.
        let mut live = feed.subscribe(0);
        // Subscribed (and confirmed) before the snapshot is read: nothing
        // published after the snapshot can be missed.
        let (done, confirmed) = oneshot::channel();
        self.subscribe
            .send(Subscribe { channel, done })
            .map_err(|_| StoreError::Unavailable("the Redis subscriber has stopped".into()))?;
        match tokio::time::timeout(REQUEST_TIMEOUT * 2, confirmed).await {
            Ok(Ok(subscribed)) => subscribed?,
            Ok(Err(_)) => {
                return Err(StoreError::Unavailable(
                    "the Redis subscriber has stopped".into(),
                ));
            }
            Err(_) => {
                return Err(StoreError::Unavailable(
                    "the shared store (Redis) did not confirm a subscription in time".into(),
                ));
            }
        }
        let snapshot = self.snapshot_now(session).await?;
        live.skip_to(snapshot.last_seq);
        Ok((live, snapshot))
    }

    async fn remove_now(&self, session: &str) {
        let mut conn = self.conn.clone();
        let mut call = self.scripts.remove.prepare_invoke();
        for k in self.keys(session) {
            call.key(k);
        }
        let channel = self.channel(session);
        let removed = call.arg(&channel).invoke_async::<i64>(&mut conn).await;
        if let Err(e) = removed {
            // The keys expire on their own; this node's receivers are told
            // now, other nodes' when their sessions end.
            self.health
                .failed(store_operation::REMOVE, "removing a session", &e);
            let feed = self.live.feeds().remove(&channel);
            if let Some(feed) = feed.and_then(|f| f.upgrade()) {
                feed.close();
            }
        } else {
            self.health.answered();
        }
    }
}

fn session_keys(prefix: &str, session: &str) -> [String; 4] {
    let base = format!("{prefix}{{{session}}}:");
    ["m", "c", "o", "k"].map(|k| format!("{base}{k}"))
}

fn channel(prefix: &str, session: &str) -> String {
    format!("{prefix}{{{session}}}:live")
}

/// A record back into a stamped command; `None` when it is not one.
fn parse_record(record: &[u8]) -> Option<Stamped> {
    let text = std::str::from_utf8(record).ok()?;
    let mut fields = text.splitn(6, ' ');
    let seq: u64 = fields.next()?.parse().ok()?;
    let _bytes: usize = fields.next()?.parse().ok()?;
    let flags: u8 = fields.next()?.parse().ok()?;
    let key_len: usize = fields.next()?.parse().ok()?;
    let sender_len: usize = fields.next()?.parse().ok()?;
    let rest = fields.next()?;
    let key = rest.get(..key_len)?;
    let sender = rest.get(key_len..key_len + sender_len)?;
    let json = rest.get(key_len + sender_len..)?;
    Some(Stamped {
        seq,
        sender: sender.to_string(),
        key: key.into(),
        attribute: if flags & 2 != 0 {
            Attribute::All
        } else {
            Attribute::Others
        },
        frame_url: flags & 1 != 0,
        json: json.into(),
    })
}

/// The sequence number of the last command accepted into `session`, read
/// after a lost subscriber connection came back.
async fn last_seq(conn: &mut ConnectionManager, prefix: &str, channel: &str) -> Option<u64> {
    let session = channel
        .strip_prefix(prefix)?
        .strip_prefix('{')?
        .strip_suffix("}:live")?;
    let [m, ..] = session_keys(prefix, session);
    ::redis::cmd("HGET")
        .arg(m)
        .arg("seq")
        .query_async::<Option<u64>>(conn)
        .await
        .ok()
        .flatten()
}

/// The node's one subscriber connection: subscribes on request, hands each
/// record to its session's feed, and when the connection is lost, brings it
/// back, resubscribes and tells every feed what it may have missed.
async fn subscriber(
    client: Client,
    mut conn: ConnectionManager,
    prefix: String,
    live: Arc<Live>,
    mut requests: mpsc::UnboundedReceiver<Subscribe>,
    health: Arc<Health>,
) {
    let mut backoff = Duration::from_millis(50);
    let mut was_down = false;
    loop {
        let pubsub = match tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub()).await {
            Ok(Ok(p)) => p,
            failed => {
                let error = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".to_string(),
                };
                metrics::counter!(telemetry::STORE_FAILURES, "operation" => store_operation::SUBSCRIBER)
                    .increment(1);
                if !was_down {
                    warn!(
                        error,
                        "Redis store: the subscriber connection is down; retrying"
                    );
                }
                was_down = true;
                // Whoever waits to follow is told now rather than kept waiting.
                let wait = tokio::time::sleep(backoff);
                tokio::pin!(wait);
                loop {
                    tokio::select! {
                        _ = &mut wait => break,
                        request = requests.recv() => match request {
                            Some(r) => {
                                let _ = r.done.send(Err(StoreError::Unavailable(
                                    "the shared store (Redis) is unreachable; try again".into(),
                                )));
                            }
                            None => return,
                        },
                    }
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();

        // Resubscribe to what this node's receivers follow, then tell each
        // feed that what was published while the link was down is lost.
        let followed: Vec<(String, Arc<Feed>)> = {
            let mut feeds = live.feeds();
            feeds.retain(|_, f| f.strong_count() > 0);
            feeds
                .iter()
                .filter_map(|(c, f)| Some((c.clone(), f.upgrade()?)))
                .collect()
        };
        let mut resubscribed = true;
        for (channel, _) in &followed {
            let subscribed = tokio::time::timeout(REQUEST_TIMEOUT, sink.subscribe(channel)).await;
            if !matches!(subscribed, Ok(Ok(()))) {
                resubscribed = false;
                break;
            }
        }
        if !resubscribed {
            continue;
        }
        for (channel, feed) in &followed {
            match last_seq(&mut conn, &prefix, channel).await {
                Some(seq) => feed.lost(seq),
                // Gone from Redis (removed or expired) or unreadable: its
                // receivers stop following rather than wait for nothing.
                None => feed.close(),
            }
        }
        if was_down {
            info!("Redis store: the subscriber connection is back");
        }
        // Every way out of the loop below is the connection lost.
        was_down = true;
        backoff = Duration::from_millis(50);

        loop {
            tokio::select! {
                request = requests.recv() => {
                    let Some(Subscribe { channel, done }) = request else { return };
                    // Channels nobody follows any more are let go of here,
                    // where subscriptions change one at a time.
                    let dead: Vec<String> = {
                        let mut feeds = live.feeds();
                        let dead = feeds
                            .iter()
                            .filter(|(c, f)| f.strong_count() == 0 && **c != channel)
                            .map(|(c, _)| c.clone())
                            .collect::<Vec<_>>();
                        for c in &dead {
                            feeds.remove(c);
                        }
                        dead
                    };
                    // Bounded: a Redis that stops answering must not hold
                    // this task (and every follow behind it) for ever.
                    let changed = tokio::time::timeout(REQUEST_TIMEOUT, async {
                        if !dead.is_empty() {
                            sink.unsubscribe(&dead).await?;
                        }
                        sink.subscribe(&channel).await
                    })
                    .await;
                    match changed {
                        Ok(Ok(())) => {
                            let _ = done.send(Ok(()));
                        }
                        Ok(Err(e)) => {
                            let _ = done.send(Err(health.failed(store_operation::FOLLOW, "subscribing to a session", &e)));
                            break;
                        }
                        Err(_) => {
                            warn!("Redis store: a subscription was not confirmed in time; reconnecting");
                            let _ = done.send(Err(StoreError::Unavailable(
                                "the shared store (Redis) did not confirm a subscription in time".into(),
                            )));
                            break;
                        }
                    }
                }
                message = stream.next() => {
                    let Some(message) = message else {
                        warn!("Redis store: the subscriber connection was lost; reconnecting");
                        break;
                    };
                    let channel = message.get_channel_name().to_string();
                    let payload = message.get_payload_bytes();
                    let feed = live.feeds().get(&channel).and_then(Weak::upgrade);
                    let Some(feed) = feed else { continue };
                    if payload == CLOSED {
                        live.feeds().remove(&channel);
                        feed.close();
                    } else if let Some(c) = parse_record(payload) {
                        feed.publish(Arc::new(c));
                    } else {
                        // Skipped: the gap it leaves makes the feed's
                        // receivers resynchronise at the next record.
                        warn!(channel, "Redis store: a malformed record on a session's channel");
                    }
                }
            }
        }
    }
}

impl Store for RedisStore {
    fn open<'a>(&'a self, session: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        self.open_now(session).boxed()
    }

    fn append<'a>(
        &'a self,
        session: &'a str,
        sender: &'a str,
        command: Command,
    ) -> BoxFuture<'a, Result<Arc<Stamped>, StoreError>> {
        self.append_now(session, sender, command).boxed()
    }

    fn snapshot<'a>(&'a self, session: &'a str) -> BoxFuture<'a, Result<Snapshot, StoreError>> {
        self.snapshot_now(session).boxed()
    }

    fn follow<'a>(
        &'a self,
        session: &'a str,
    ) -> BoxFuture<'a, Result<(Subscription, Snapshot), StoreError>> {
        self.follow_now(session).boxed()
    }

    fn remove<'a>(&'a self, session: &'a str) -> BoxFuture<'a, ()> {
        self.remove_now(session).boxed()
    }

    fn health(&self) -> StoreHealth {
        self.health.report()
    }
}
