//! The hub's shared state checkpointed to Redis, so that a node taking
//! over the shared sessions (`docs/scale-out.md`: one leader serves them)
//! goes on where the last one stopped: sessions with their participants
//! and resume secrets, control, the queue's order, chat logs, join codes
//! and operator logins. Active only when the store is Redis.
//!
//! Write-behind, by one writer task fed through a set of marks: releasing
//! the state lock after a change marks what changed (a session, its chat,
//! the queue, a login) and wakes the writer. The writer takes the marks,
//! reads the current state of each under the lock, and writes them in one
//! pipeline with the lock released. However often a session changed while
//! a write was under way, it is written once, as it is now (coalesced per
//! session); one writer on one connection keeps writes in order. Whatever
//! is absent from the state when it is written (a session that ended, a
//! login revoked or lapsed) is deleted.
//!
//! Records expire like the session's commands (`[store] expire_secs`);
//! the writer marks everything again three times per expiry, so what does
//! not change does not expire while it lasts. Once the cluster gives the
//! hub its lease ([`Checkpoint::fence`]), every batch is one script that
//! writes nothing unless the lease is still this node's.
//!
//! Redis failing: the marks are kept and written once Redis answers; every
//! failed write is counted (`cobrowse_store_failures_total
//! {operation="checkpoint"}`), the outage is logged once, and its end.
//!
//! Taking over loads it all back ([`Loaded::apply`]): participants come back
//! detached (idle expiry and the reconnect grace apply from then, and
//! `resume` with the secret attaches a new connection), the queue in its
//! order. Taking over and handing over themselves, which need the lock,
//! are in `handover`.
//!
//! Not checkpointed: connections, and with them offers and operators
//! waiting (they come back by reconnecting and saying `ready`); bind
//! tokens (a resume hands out a fresh one); open requests for control;
//! rate limits.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ::redis::aio::ConnectionManager;
use ::redis::{Pipeline, Script};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tracing::{info, warn};

use super::auth::{Account, LOGIN_LIFETIME, Logins};
use super::conversation::Conversation;
use super::protocol::{ChatMessage, Role};
use super::registry::State;
use super::session::{Participant, Session};
use super::store::StoreError;
use crate::config::Config;
use crate::lock::lock;
use crate::secret::is_secret;
use crate::telemetry::{self, store_operation};

/// The pause after a failed write before the next attempt, doubled up to
/// [`MAX_BACKOFF`] while Redis does not answer.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

// KEYS: the lease. ARGV: this node's value in it, then each command as
// its number of words and the words. Everything or nothing, and nothing
// unless the lease is this node's.
const FENCED: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local i = 2
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
return 1
"#;

/// Something whose current state is to be written (or deleted).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Item {
    Session(String),
    Chat(String),
    Queue,
    Login(String),
}

/// Marks not written yet, in the order they were first made.
#[derive(Default)]
struct Marks {
    order: Vec<Item>,
    set: HashSet<Item>,
}

impl Marks {
    fn add(&mut self, item: Item) {
        if self.set.insert(item.clone()) {
            self.order.push(item);
        }
    }

    fn take(&mut self) -> Vec<Item> {
        self.set.clear();
        std::mem::take(&mut self.order)
    }

    fn clear(&mut self) {
        self.set.clear();
        self.order.clear();
    }
}

/// Where the checkpoint lives.
struct Link {
    conn: ConnectionManager,
    prefix: String,
    /// A record's expiry: `[store] expire_secs`, like the session's
    /// commands.
    expire_ms: u64,
}

/// What the writer did, for the measurements (`docs/performance.md`).
#[derive(Default)]
pub struct Stats {
    /// Changes marked (before coalescing).
    pub marked: AtomicU64,
    /// Items written or deleted (after coalescing).
    pub written: AtomicU64,
    /// Pipelines sent.
    pub batches: AtomicU64,
    /// Pipelines that failed (kept and sent again).
    pub failed: AtomicU64,
    /// Batches not written because this node no longer held the lease.
    pub fenced: AtomicU64,
    /// Rounds of marking everything again (against expiry).
    pub refreshed: AtomicU64,
    /// Time spent reading the state into writes, under the lock, in
    /// nanoseconds.
    pub reading_ns: AtomicU64,
    /// Time spent waiting for Redis, in nanoseconds.
    pub writing_ns: AtomicU64,
}

struct Inner {
    link: Option<Link>,
    /// Whether changes are marked and written: this node serves the shared
    /// sessions. Changed only under the hub's state lock, and read there
    /// by the writer before it reads the state.
    active: AtomicBool,
    marks: Mutex<Marks>,
    wake: Notify,
    stats: Stats,
    /// The lease (its key and this node's value in it) every write is
    /// conditional on, once the cluster set one.
    fence: Mutex<Option<(String, String)>>,
    fenced: Script,
}

/// The checkpoint of one hub (off when the store is in memory).
pub struct Checkpoint {
    inner: Arc<Inner>,
}

impl Drop for Checkpoint {
    /// The writer notices the hub is gone and ends.
    fn drop(&mut self) {
        self.inner.wake.notify_one();
    }
}

impl Checkpoint {
    /// On when `[store]` is Redis and a runtime runs (a unit test building a
    /// hub without one checkpoints nothing).
    pub fn new(config: &Config) -> Checkpoint {
        let link = match &config.store {
            crate::config::Store::Redis(r) if tokio::runtime::Handle::try_current().is_ok() => {
                connect(&r.url).map(|conn| Link {
                    conn,
                    prefix: r.prefix.clone(),
                    expire_ms: r.expire.as_millis().clamp(1, u64::MAX as u128) as u64,
                })
            }
            _ => None,
        };
        Checkpoint {
            inner: Arc::new(Inner {
                active: AtomicBool::new(link.is_some()),
                link,
                marks: Mutex::new(Marks::default()),
                wake: Notify::new(),
                stats: Stats::default(),
                fence: Mutex::new(None),
                fenced: Script::new(FENCED),
            }),
        }
    }

    /// Whether the hub's state is checkpointed at all (the store is Redis).
    pub fn enabled(&self) -> bool {
        self.inner.link.is_some()
    }

    fn active(&self) -> bool {
        self.inner.active.load(Ordering::Acquire)
    }

    /// Marks `item` to be written; nothing while inactive.
    pub(super) fn mark(&self, item: Item) {
        if !self.active() {
            return;
        }
        self.inner.stats.marked.fetch_add(1, Ordering::Relaxed);
        lock(&self.inner.marks).add(item);
        self.inner.wake.notify_one();
    }

    pub(super) fn session(&self, sid: &str) {
        if self.active() {
            self.mark(Item::Session(sid.to_string()));
        }
    }

    pub(super) fn chat(&self, sid: &str) {
        if self.active() {
            self.mark(Item::Chat(sid.to_string()));
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// Starts or stops marking and writing. Called under the hub's state
    /// lock, where the writer looks before it reads the state; stopping
    /// drops what was marked.
    pub(super) fn set_active(&self, on: bool) {
        self.inner.active.store(on, Ordering::Release);
        if !on {
            lock(&self.inner.marks).clear();
        }
    }

    /// From now on every write is made only while `key` holds `holder`
    /// (the cluster's lease and this node's id in it), in one script: a
    /// node that lost the lease without knowing it yet never overwrites
    /// what the node that took over wrote. A write refused so stops the
    /// checkpoint until the next take-over.
    pub fn fence(&self, key: String, holder: String) {
        *lock(&self.inner.fence) = Some((key, holder));
    }

    /// Logins are issued and revoked outside the state lock: they mark
    /// themselves.
    pub(super) fn watch_logins(&self, logins: &Logins) {
        if !self.enabled() {
            return;
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        logins.on_change(move |token| {
            if let Some(inner) = weak.upgrade()
                && inner.active.load(Ordering::Acquire)
            {
                inner.stats.marked.fetch_add(1, Ordering::Relaxed);
                lock(&inner.marks).add(Item::Login(token.to_string()));
                inner.wake.notify_one();
            }
        });
    }

    /// Takes what was marked and reads it into writes (`None` when there
    /// is nothing to write, or the checkpoint is stopped). Called under
    /// the state lock `st`; takes the conversation's and the logins' locks
    /// after it.
    pub(super) fn take(
        &self,
        st: &State,
        conversation: &Conversation,
        logins: &Logins,
    ) -> Option<Batch> {
        if !self.active() {
            lock(&self.inner.marks).clear();
            return None;
        }
        let items = lock(&self.inner.marks).take();
        if items.is_empty() {
            return None;
        }
        let started = Instant::now();
        let ops = self.ops_for(st, conversation, logins, &items);
        self.inner
            .stats
            .reading_ns
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        Some(Batch { items, ops })
    }

    /// What writing `items` takes, read from the state now.
    fn ops_for(
        &self,
        st: &State,
        conversation: &Conversation,
        logins: &Logins,
        items: &[Item],
    ) -> Vec<Op> {
        let Some(link) = &self.inner.link else {
            return Vec::new();
        };
        let prefix = &link.prefix;
        let wall = now_ms();
        let mut ops = Vec::with_capacity(items.len() + 1);
        for item in items {
            match item {
                Item::Session(sid) => match st.sessions.get(sid) {
                    Some(s) => {
                        let code = conversation
                            .codes
                            .of(sid)
                            .map(|(code, left)| (code, wall + left.as_millis() as u64));
                        let record = record_of(st, s, code);
                        let json = serde_json::to_string(&record).expect("records serialise");
                        ops.push(Op::Set(session_key(prefix, sid), json, link.expire_ms));
                        ops.push(Op::Index(sid.clone(), true));
                    }
                    None => {
                        ops.push(Op::Del(session_key(prefix, sid)));
                        ops.push(Op::Del(chat_key(prefix, sid)));
                        ops.push(Op::Index(sid.clone(), false));
                    }
                },
                Item::Chat(sid) => {
                    let log = st
                        .sessions
                        .contains_key(sid)
                        .then(|| conversation.chats().export(sid))
                        .flatten();
                    match log {
                        Some((next, messages)) => {
                            let json = serde_json::to_string(&ChatRecord { next, messages })
                                .expect("records serialise");
                            ops.push(Op::Set(chat_key(prefix, sid), json, link.expire_ms));
                        }
                        None => ops.push(Op::Del(chat_key(prefix, sid))),
                    }
                }
                Item::Queue => {
                    let json = serde_json::to_string(&st.queue).expect("ids serialise");
                    ops.push(Op::Set(queue_key(prefix), json, link.expire_ms));
                }
                Item::Login(token) => {
                    let record = logins.get(token).map(|(account, left)| {
                        serde_json::to_string(&LoginRecord {
                            user: account.user,
                            name: account.name,
                            until: wall + left.as_millis() as u64,
                        })
                        .expect("records serialise")
                    });
                    ops.push(Op::Login(token.clone(), record));
                }
            }
        }
        ops
    }

    /// Starts the one writer. `next` takes the next batch under the hub's
    /// lock. `refresh` marks everything the hub holds
    /// ([`Checkpoint::mark_all`]), which the writer does a few times per
    /// expiry so that what did not change does not expire.
    pub(super) fn start<F, R>(&self, next: F, refresh: R)
    where
        F: Fn() -> Next + Send + 'static,
        R: Fn() + Send + 'static,
    {
        let Some(link) = &self.inner.link else {
            return;
        };
        let every = Duration::from_millis(link.expire_ms / 3).max(Duration::from_secs(1));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(writer(self.inner.clone(), next, refresh, every));
        }
    }

    /// Marks every session the hub holds, its chat and the queue: a session
    /// whose state did not change for a long time is written again before
    /// its record expires.
    pub(super) fn mark_all(&self, st: &State, conversation: &Conversation) {
        // A hub that holds nothing (a node that does not lead) has nothing
        // to keep alive, and must not write its empty queue over the
        // leader's.
        if !self.active() || st.sessions.is_empty() {
            return;
        }
        let chats = conversation.chats();
        let mut marks = lock(&self.inner.marks);
        for sid in st.sessions.keys() {
            marks.add(Item::Session(sid.clone()));
            if chats.export(sid).is_some() {
                marks.add(Item::Chat(sid.clone()));
            }
        }
        marks.add(Item::Queue);
        drop(marks);
        self.inner.wake.notify_one();
    }

    /// Writes a batch taken when the hub stopped (it is not active any
    /// more): bounded by the request timeout, and said in the log when it
    /// fails.
    pub(super) async fn write_last(&self, batch: Batch) {
        let Some(link) = &self.inner.link else {
            return;
        };
        if batch.ops.is_empty() {
            return;
        }
        match write(&self.inner, link, &batch.ops).await {
            Ok(true) => {}
            Ok(false) => {
                warn!(
                    "hub checkpoint: the last changes before stopping were not written: this node no longer holds the lease"
                );
            }
            Err(e) => {
                metrics::counter!(telemetry::STORE_FAILURES, "operation" => store_operation::CHECKPOINT)
                    .increment(1);
                warn!(error = %e, "hub checkpoint: the last changes before stopping were not written");
            }
        }
    }

    /// Reads the whole checkpoint; `None` when the store is in memory.
    pub(super) async fn load(&self) -> Result<Option<Loaded>, StoreError> {
        match &self.inner.link {
            Some(link) => load(link).await.map(Some),
            None => Ok(None),
        }
    }

    /// Deletes what a load found stale (sessions gone, logins lapsed):
    /// best effort, the next load skips them anyway.
    pub(super) async fn clean(&self, loaded: &Loaded) {
        let Some(link) = &self.inner.link else {
            return;
        };
        if loaded.stale_sessions.is_empty() && loaded.stale_logins.is_empty() {
            return;
        }
        let mut pipe = Pipeline::new();
        for sid in &loaded.stale_sessions {
            pipe.cmd("SREM")
                .arg(index_key(&link.prefix))
                .arg(sid)
                .ignore();
        }
        for token in &loaded.stale_logins {
            pipe.cmd("HDEL")
                .arg(logins_key(&link.prefix))
                .arg(token)
                .ignore();
        }
        let mut conn = link.conn.clone();
        if let Err(e) = pipe.query_async::<()>(&mut conn).await {
            warn!(error = %e, "hub checkpoint: leftovers of ended sessions were not cleaned up");
        }
    }
}

/// What the writer is to do next.
pub(super) enum Next {
    Write(Batch),
    /// Nothing marked (or the checkpoint is stopped).
    Nothing,
    /// The hub is gone: the writer ends.
    Gone,
}

/// Marks taken and read into writes.
pub struct Batch {
    items: Vec<Item>,
    ops: Vec<Op>,
}

/// The one writer: takes the marks, reads them into writes under the lock
/// (`next`), writes them without it; on failure keeps them for the next
/// attempt.
async fn writer<F, R>(inner: Arc<Inner>, next: F, refresh: R, every: Duration)
where
    F: Fn() -> Next,
    R: Fn(),
{
    let link = inner.link.as_ref().expect("started only with a link");
    let mut backoff = FIRST_BACKOFF;
    let mut down: Option<Instant> = None;
    let mut again = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    again.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = inner.wake.notified() => {}
            _ = again.tick() => {
                refresh();
                inner.stats.refreshed.fetch_add(1, Ordering::Relaxed);
            }
        }
        loop {
            let Batch { items, ops } = match next() {
                Next::Write(batch) => batch,
                Next::Nothing => break,
                Next::Gone => return,
            };
            let started = Instant::now();
            let written = write(&inner, link, &ops).await;
            inner
                .stats
                .writing_ns
                .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
            match written {
                Ok(false) => {
                    // Another node leads: what this one holds is stale, and
                    // it hands over as soon as the cluster notices.
                    inner.stats.fenced.fetch_add(1, Ordering::Relaxed);
                    inner.active.store(false, Ordering::Release);
                    lock(&inner.marks).clear();
                    warn!(
                        "hub checkpoint: this node no longer holds the lease; nothing more is written until it takes over again"
                    );
                }
                Ok(true) => {
                    inner.stats.batches.fetch_add(1, Ordering::Relaxed);
                    inner
                        .stats
                        .written
                        .fetch_add(items.len() as u64, Ordering::Relaxed);
                    backoff = FIRST_BACKOFF;
                    if let Some(since) = down.take() {
                        info!(
                            down_ms = since.elapsed().as_millis() as u64,
                            "hub checkpoint: Redis answers; the changes kept meanwhile are written"
                        );
                    }
                }
                Err(e) => {
                    metrics::counter!(telemetry::STORE_FAILURES, "operation" => store_operation::CHECKPOINT)
                        .increment(1);
                    inner.stats.failed.fetch_add(1, Ordering::Relaxed);
                    if down.is_none() {
                        down = Some(Instant::now());
                        warn!(error = %e, "hub checkpoint: writing to Redis failed; the changes are kept and written when Redis answers");
                    }
                    // Kept: whatever was marked meanwhile joins them, and
                    // each is read afresh at the next attempt. Not when the
                    // hub handed over meanwhile: nothing more is written.
                    if inner.active.load(Ordering::Acquire) {
                        let mut marks = lock(&inner.marks);
                        for item in items {
                            marks.add(item);
                        }
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

fn connect(url: &str) -> Option<ConnectionManager> {
    match super::redis::connect(url) {
        Ok((_, conn)) => Some(conn),
        Err(e) => {
            // The config check refuses URLs the client would; this is a
            // client that changed its mind.
            warn!(error = %e, "hub checkpoint: cannot use the Redis URL; the hub's state is not checkpointed");
            None
        }
    }
}

// ---- keys and records -----------------------------------------------------

fn session_key(prefix: &str, sid: &str) -> String {
    format!("{prefix}{{{sid}}}:hub")
}

fn chat_key(prefix: &str, sid: &str) -> String {
    format!("{prefix}{{{sid}}}:chat")
}

fn index_key(prefix: &str) -> String {
    format!("{prefix}hub:sessions")
}

fn queue_key(prefix: &str) -> String {
    format!("{prefix}hub:queue")
}

fn logins_key(prefix: &str) -> String {
    format!("{prefix}hub:logins")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[derive(Debug, Serialize, Deserialize)]
struct SessionRecord {
    since: u64,
    control: bool,
    wants_operator: bool,
    /// In the order they joined.
    participants: Vec<ParticipantRecord>,
    /// The live join code and when it lapses (ms since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    code: Option<(String, u64)>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ParticipantRecord {
    id: String,
    role: Role,
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    resume: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct ChatRecord {
    next: u64,
    messages: Vec<ChatMessage>,
}

#[derive(Debug, Serialize, Deserialize)]
struct LoginRecord {
    user: String,
    name: String,
    /// When it lapses, in ms since the Unix epoch.
    until: u64,
}

/// One write of the checkpoint.
#[derive(Debug)]
pub enum Op {
    /// A string with an expiry in ms.
    Set(String, String, u64),
    Del(String),
    /// Adds to or removes from the index of sessions.
    Index(String, bool),
    /// A login written (token, record) or deleted (token, `None`).
    Login(String, Option<String>),
}

fn record_of(st: &State, s: &Session, code: Option<(String, u64)>) -> SessionRecord {
    SessionRecord {
        since: s.since,
        control: s.control,
        wants_operator: s.wants_operator,
        participants: s
            .participants
            .iter()
            .filter_map(|p| st.participants.get(p))
            .map(|p| ParticipantRecord {
                id: p.id.clone(),
                role: p.role,
                name: p.name.clone(),
                user: p.user.clone(),
                resume: p.resume.clone(),
            })
            .collect(),
        code,
    }
}

/// The Redis commands that make `ops`, in their order, as words.
fn commands(link: &Link, ops: &[Op]) -> Vec<Vec<String>> {
    let index = index_key(&link.prefix);
    let logins = logins_key(&link.prefix);
    let mut indexed = false;
    let mut logged_in = false;
    let mut out: Vec<Vec<String>> = Vec::with_capacity(ops.len() + 2);
    for op in ops {
        out.push(match op {
            Op::Set(key, value, ms) => {
                vec![
                    "SET".into(),
                    key.clone(),
                    value.clone(),
                    "PX".into(),
                    ms.to_string(),
                ]
            }
            Op::Del(key) => vec!["DEL".into(), key.clone()],
            Op::Index(sid, true) => {
                indexed = true;
                vec!["SADD".into(), index.clone(), sid.clone()]
            }
            Op::Index(sid, false) => vec!["SREM".into(), index.clone(), sid.clone()],
            Op::Login(token, Some(record)) => {
                logged_in = true;
                vec!["HSET".into(), logins.clone(), token.clone(), record.clone()]
            }
            Op::Login(token, None) => vec!["HDEL".into(), logins.clone(), token.clone()],
        });
    }
    // The index and the logins go when nothing was written for as long as
    // what they list lives.
    if indexed {
        out.push(vec!["PEXPIRE".into(), index, link.expire_ms.to_string()]);
    }
    if logged_in {
        let ms = LOGIN_LIFETIME.as_millis() as u64;
        out.push(vec!["PEXPIRE".into(), logins, ms.to_string()]);
    }
    out
}

/// Writes `ops` in their order: in one pipeline, or, once the cluster set
/// a lease to fence the writes with, in one script that writes nothing
/// unless the lease is this node's. `Ok(false)`: it was not.
async fn write(inner: &Inner, link: &Link, ops: &[Op]) -> Result<bool, ::redis::RedisError> {
    let commands = commands(link, ops);
    let fence = lock(&inner.fence).clone();
    let mut conn = link.conn.clone();
    match fence {
        None => {
            let mut pipe = Pipeline::new();
            for words in &commands {
                let mut cmd = ::redis::Cmd::new();
                for w in words {
                    cmd.arg(w);
                }
                pipe.add_command(cmd).ignore();
            }
            pipe.query_async::<()>(&mut conn).await?;
            Ok(true)
        }
        Some((key, holder)) => {
            let mut call = inner.fenced.prepare_invoke();
            call.key(key).arg(holder);
            for words in &commands {
                call.arg(words.len());
                for w in words {
                    call.arg(w);
                }
            }
            let done: i64 = call.invoke_async(&mut conn).await?;
            Ok(done == 1)
        }
    }
}

// ---- loading ----------------------------------------------------------------

/// What a node that takes over reads.
pub struct Loaded {
    sessions: Vec<(String, SessionRecord)>,
    chats: HashMap<String, ChatRecord>,
    queue: Vec<String>,
    logins: Vec<(String, LoginRecord)>,
    /// Index entries whose session is gone (expired), and logins that
    /// lapsed: cleaned up after the load.
    stale_sessions: Vec<String>,
    stale_logins: Vec<String>,
}

fn unavailable(doing: &str, e: &::redis::RedisError) -> StoreError {
    metrics::counter!(telemetry::STORE_FAILURES, "operation" => store_operation::CHECKPOINT)
        .increment(1);
    warn!(error = %e, "hub checkpoint: {doing} failed");
    StoreError::Unavailable(format!(
        "the shared store (Redis) failed while {doing}; try again"
    ))
}

async fn load(link: &Link) -> Result<Loaded, StoreError> {
    let mut conn = link.conn.clone();
    let prefix = &link.prefix;
    let reading = "reading the hub's checkpoint";
    let ids: Vec<String> = ::redis::cmd("SMEMBERS")
        .arg(index_key(prefix))
        .query_async(&mut conn)
        .await
        .map_err(|e| unavailable(reading, &e))?;
    let ids: Vec<String> = ids.into_iter().filter(|id| is_secret(id)).collect();
    let mut pipe = Pipeline::new();
    for id in &ids {
        pipe.cmd("GET").arg(session_key(prefix, id));
        pipe.cmd("GET").arg(chat_key(prefix, id));
    }
    let values: Vec<Option<String>> = if ids.is_empty() {
        Vec::new()
    } else {
        pipe.query_async(&mut conn)
            .await
            .map_err(|e| unavailable(reading, &e))?
    };
    let (queue, logins): (Option<String>, HashMap<String, String>) = ::redis::pipe()
        .cmd("GET")
        .arg(queue_key(prefix))
        .cmd("HGETALL")
        .arg(logins_key(prefix))
        .query_async(&mut conn)
        .await
        .map_err(|e| unavailable(reading, &e))?;

    let mut loaded = Loaded {
        sessions: Vec::new(),
        chats: HashMap::new(),
        queue: Vec::new(),
        logins: Vec::new(),
        stale_sessions: Vec::new(),
        stale_logins: Vec::new(),
    };
    for (id, pair) in ids.iter().zip(values.chunks(2)) {
        let Some(Some(json)) = pair.first() else {
            loaded.stale_sessions.push(id.clone());
            continue;
        };
        match serde_json::from_str::<SessionRecord>(json) {
            Ok(record) => loaded.sessions.push((id.clone(), record)),
            Err(e) => {
                warn!(session = %id, error = %e, "hub checkpoint: a session's record is malformed; it is not taken over")
            }
        }
        if let Some(Some(json)) = pair.get(1) {
            match serde_json::from_str::<ChatRecord>(json) {
                Ok(chat) => {
                    loaded.chats.insert(id.clone(), chat);
                }
                Err(e) => {
                    warn!(session = %id, error = %e, "hub checkpoint: a session's chat is malformed; it is not taken over")
                }
            }
        }
    }
    if let Some(json) = queue {
        match serde_json::from_str::<Vec<String>>(&json) {
            Ok(q) => loaded.queue = q,
            Err(e) => {
                warn!(error = %e, "hub checkpoint: the queue is malformed; calls are queued by the time they were made")
            }
        }
    }
    let wall = now_ms();
    for (token, json) in logins {
        match serde_json::from_str::<LoginRecord>(&json) {
            Ok(login) if is_secret(&token) && login.until > wall => {
                loaded.logins.push((token, login));
            }
            _ => loaded.stale_logins.push(token),
        }
    }
    Ok(loaded)
}

/// Why a loaded session is not taken up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum Unfit {
    #[error("its id is not one the hub gives")]
    Id,
    #[error("it has no customer")]
    NoCustomer,
    #[error("a participant's id is malformed or repeated")]
    ParticipantId,
    #[error("a participant's id is taken on this node")]
    Taken,
    #[error("a resume secret is malformed")]
    Secret,
    #[error("an operator without an account, or a customer with one")]
    Account,
}

/// Why a loaded session cannot be taken up as it is: the checkpoint is
/// checked like input, and a record that does not hold together is left
/// out (logged), never half loaded.
fn check(sid: &str, record: &SessionRecord, st: &State) -> Result<(), Unfit> {
    if !is_secret(sid) {
        return Err(Unfit::Id);
    }
    if !record.participants.iter().any(|p| p.role == Role::Customer) {
        return Err(Unfit::NoCustomer);
    }
    let mut ids = HashSet::new();
    for p in &record.participants {
        if participant_number(&p.id).is_none() || !ids.insert(p.id.as_str()) {
            return Err(Unfit::ParticipantId);
        }
        if st.participants.contains_key(&p.id) {
            return Err(Unfit::Taken);
        }
        if !is_secret(&p.resume) {
            return Err(Unfit::Secret);
        }
        if (p.role == Role::Operator) != p.user.is_some() {
            return Err(Unfit::Account);
        }
    }
    Ok(())
}

/// The number in a participant id (`p17`): the hub's counter goes past
/// every one taken over, so no id is given twice.
fn participant_number(id: &str) -> Option<u64> {
    id.strip_prefix('p')?.parse().ok()
}

impl Loaded {
    /// Takes up what was loaded into the state `st` (and the
    /// conversation's and logins' tables): every session that holds
    /// together and is not held here already, its participants detached,
    /// the queue in its order. Returns the ids of the sessions taken up.
    pub(super) fn apply(
        &mut self,
        st: &mut State,
        conversation: &Conversation,
        logins: &Logins,
    ) -> Vec<String> {
        let now = Instant::now();
        let wall = now_ms();
        let mut taken = Vec::new();
        for (sid, record) in std::mem::take(&mut self.sessions) {
            if st.sessions.contains_key(&sid) {
                continue;
            }
            if let Err(why) = check(&sid, &record, st) {
                warn!(session = %sid, why = %why, "hub checkpoint: a session is not taken over");
                continue;
            }
            let top = record
                .participants
                .iter()
                .filter_map(|p| participant_number(&p.id))
                .max()
                .unwrap_or(0);
            st.reserve(top);
            let mut session = Session::new(sid.clone(), record.since);
            session.control = record.control;
            session.wants_operator = record.wants_operator;
            // Nobody is connected yet: the idle expiry counts from now.
            session.idle_since = Some(now);
            for p in record.participants {
                session.participants.push(p.id.clone());
                st.participants.insert(
                    p.id.clone(),
                    Participant {
                        id: p.id,
                        session: sid.clone(),
                        role: p.role,
                        name: p.name,
                        user: p.user,
                        resume: p.resume,
                        conn: None,
                        detached_since: Some(now),
                        bind: None,
                    },
                );
            }
            st.sessions.insert(sid.clone(), session);
            if let Some((code, until)) = record.code
                && until > wall
            {
                conversation
                    .codes
                    .restore(&sid, code, Duration::from_millis(until - wall));
            }
            if let Some(chat) = self.chats.remove(&sid) {
                conversation.chats().restore(&sid, chat.next, chat.messages);
            }
            taken.push(sid);
        }
        // The queue in its order; a waiting call its record missed (written
        // in between) goes after, by the time it was made.
        let waits = |st: &State, sid: &String| {
            st.sessions.get(sid).is_some_and(|s| s.wants_operator) && !st.queue.contains(sid)
        };
        let mut ordered: Vec<String> = Vec::new();
        for sid in &self.queue {
            if taken.contains(sid) && waits(st, sid) && !ordered.contains(sid) {
                ordered.push(sid.clone());
            }
        }
        let mut rest: Vec<String> = taken
            .iter()
            .filter(|sid| waits(st, sid) && !ordered.contains(sid))
            .cloned()
            .collect();
        rest.sort_by_key(|sid| st.sessions.get(sid).map_or(0, |s| s.since));
        st.queue.extend(ordered);
        st.queue.extend(rest);
        for (token, login) in std::mem::take(&mut self.logins) {
            let account = Account {
                user: login.user,
                name: login.name,
            };
            let left = Duration::from_millis(login.until.saturating_sub(wall));
            logins.restore(token, account, left);
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_coalesced_in_the_order_first_made() {
        let mut m = Marks::default();
        m.add(Item::Session("a".into()));
        m.add(Item::Queue);
        m.add(Item::Session("a".into()));
        m.add(Item::Chat("a".into()));
        assert_eq!(
            m.take(),
            [
                Item::Session("a".into()),
                Item::Queue,
                Item::Chat("a".into())
            ]
        );
        assert!(m.take().is_empty());
    }

    #[test]
    fn only_the_hubs_own_forms_are_taken_up() {
        assert!(is_secret(&crate::secret::new_secret()));
        assert!(!is_secret("../../etc"));
        assert!(!is_secret(&"A".repeat(32)));
        assert_eq!(participant_number("p17"), Some(17));
        assert_eq!(participant_number("q1"), None);
        assert_eq!(participant_number("p"), None);
    }
}
