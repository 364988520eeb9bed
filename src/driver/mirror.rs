//! What the driver's proxy keeps per shared session — the documents and
//! reads the driver received, and its credentials (its cookies to the
//! upstream, the page it was on when bound) — written behind into Redis
//! when the store is Redis, so a node that takes over the shared sessions
//! ([`Mirror::load`]) serves followers what the driver saw and never asks
//! the site again as the customer.
//!
//! Never on a request's path: keeping a document or a change of
//! credentials only notes the write for its session, and one background
//! task writes. Noted writes are coalesced per session (the latest
//! credentials, the latest document per target) and bounded by the same
//! per-session limits as the documents in memory, so an outage costs no
//! more memory than what is kept anyway. They are retried, backing off up
//! to two seconds, until Redis answers; each failed attempt is counted
//! (`cobrowse_store_failures_total{operation="documents"}`) and an outage
//! logged once, when it starts and when it ends. Meanwhile the copies in
//! memory serve followers as before.
//!
//! Redis enforces the bounds itself (one Lua script per document: the
//! replaced and the expired go, then the oldest while over the count or
//! the bytes), so what it holds is bounded even if a write was lost.
//!
//! Keys, all under the store's prefix, per session `S` with the session id
//! as a hash tag (docs/scale-out.md has the table):
//! - `{S}:driver:meta`, a hash: `seq` (the last document's number), `bytes`
//!   (the bodies' total, against the byte bound), and per kept target
//!   `t:<target>` = `<kept at, ms since the epoch> <body bytes>`;
//! - `{S}:driver:order`, a sorted set: the kept targets by number, oldest
//!   first;
//! - `{S}:driver:docs`, a hash: target → the document as a record
//!   (`<kept at ms> <status> <head bytes> <head><body>`, the head being
//!   `name:value\r\n` lines);
//!
//!   these three expire `[driver] document_max_age_secs` after the last
//!   document kept, as its documents do;
//! - `{S}:driver:cred`, a hash: `cookie` (the driver's `Cookie` header) and
//!   `page` (its page when bound); it expires with the session's keys
//!   (`[store] expire_secs` after its last write) and is deleted when the
//!   session ends. It is the customer's login: never logged;
//! - `driver:sessions`, a set: the sessions with anything kept, which a
//!   take-over reads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ::redis::Script;
use ::redis::aio::ConnectionManager;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};
use tokio::sync::Notify;
use tracing::{info, warn};

use super::documents::{Bounded, Document, SessionDocuments};
use crate::config::DriverLimits;
use crate::hub::redis::{connect, describe};
use crate::hub::store::StoreError;
use crate::lock::lock;
use crate::telemetry::{self, store_operation};

/// Sessions loaded per round trip to Redis at a take-over: few round trips,
/// and a reply of at most this many sessions' bounds at once.
const LOAD_BATCH: usize = 32;

/// The first and the longest pause before a failed write is tried again.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

// KEYS: meta order docs cred. ARGV: target, record, body bytes, kept at
// (ms), kept at or after this is young enough (ms), max documents, max
// bytes, expiry of the documents (ms), expiry of the credentials (ms).
const KEEP: &str = r#"
local meta, order, docs = KEYS[1], KEYS[2], KEYS[3]
local function drop(t)
  local info = redis.call('HGET', meta, 't:' .. t)
  if info then
    redis.call('HINCRBY', meta, 'bytes', -tonumber(string.match(info, ' (%d+)$')))
    redis.call('HDEL', meta, 't:' .. t)
  end
  redis.call('ZREM', order, t)
  redis.call('HDEL', docs, t)
end
local function oldest() return redis.call('ZRANGE', order, 0, 0)[1] end
drop(ARGV[1])
-- Past the age bound, oldest first, up to the first young one.
while true do
  local t = oldest()
  if not t then break end
  local info = redis.call('HGET', meta, 't:' .. t)
  if info and tonumber(string.match(info, '^(%d+) ')) >= tonumber(ARGV[5]) then break end
  drop(t)
end
local seq = redis.call('HINCRBY', meta, 'seq', 1)
redis.call('HSET', meta, 't:' .. ARGV[1], ARGV[4] .. ' ' .. ARGV[3])
local bytes = redis.call('HINCRBY', meta, 'bytes', ARGV[3])
redis.call('ZADD', order, seq, ARGV[1])
redis.call('HSET', docs, ARGV[1], ARGV[2])
while redis.call('ZCARD', order) > tonumber(ARGV[6]) or bytes > tonumber(ARGV[7]) do
  local t = oldest()
  if not t then break end
  drop(t)
  bytes = tonumber(redis.call('HGET', meta, 'bytes'))
end
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[8]) end
redis.call('PEXPIRE', KEYS[4], ARGV[9])
return redis.call('ZCARD', order)
"#;

/// The driver's credentials for one session as they are written: the
/// `Cookie` header's bytes and the page it was on when bound.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialsRecord {
    pub cookie: Option<Vec<u8>>,
    pub page: Option<String>,
}

/// Everything a take-over loads for one session.
pub struct Loaded {
    pub session: String,
    /// Oldest first, each within the age bound.
    pub documents: Vec<Document>,
    pub credentials: Option<CredentialsRecord>,
}

/// A handle on the write-behind of one node's driver (cheap to clone).
#[derive(Clone)]
pub struct Mirror {
    inner: Arc<Inner>,
}

struct Inner {
    conn: ConnectionManager,
    prefix: String,
    limits: DriverLimits,
    /// How long credentials outlive their last write in Redis: the
    /// session's own expiry in the store.
    session_expire: Duration,
    keep: Script,
    pending: Mutex<Pending>,
    /// Wakes the writer when a write is noted.
    wake: Arc<Notify>,
    /// Told whenever the writer finished a batch, for [`Mirror::flush`].
    settled: Notify,
    /// Whether this node writes: it leads the shared sessions (or is the
    /// only node). A node that handed over writes nothing, and deletes
    /// nothing, until it takes over again.
    leading: AtomicBool,
    /// Whether the last write failed (an outage is logged once).
    down: AtomicBool,
}

#[derive(Default)]
struct Pending {
    sessions: HashMap<String, SessionWrites>,
    /// Sessions that ended lately, and when: what is kept for one after its
    /// end (a document that finished arriving) is not written, so nothing
    /// of a session outlives its end in Redis.
    ended: HashMap<String, Instant>,
    /// A batch is being written.
    in_flight: bool,
}

/// The writes noted for one session, in the order they must reach Redis.
#[derive(Default)]
struct SessionWrites {
    /// The session ended: its keys are deleted, and nothing else is
    /// written for it.
    end: bool,
    credentials: Option<CredentialsRecord>,
    /// Within the session's bounds: Redis would evict the others at once.
    documents: SessionDocuments<PendingDocument>,
}

struct PendingDocument {
    target: String,
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    kept_at: SystemTime,
}

impl Bounded for PendingDocument {
    fn target(&self) -> &str {
        &self.target
    }

    fn bytes(&self) -> usize {
        self.body.len()
    }
}

impl SessionWrites {
    /// What was not written (`self`, older) before what was noted since
    /// (`newer`).
    fn then(mut self, newer: SessionWrites, limits: &DriverLimits) -> SessionWrites {
        if newer.end {
            return newer;
        }
        if newer.credentials.is_some() {
            self.credentials = newer.credentials;
        }
        for doc in newer.documents.documents {
            self.documents.keep(doc, limits);
        }
        self
    }

    fn is_empty(&self) -> bool {
        !self.end && self.credentials.is_none() && self.documents.documents.is_empty()
    }
}

impl Mirror {
    /// A write-behind to the Redis at `url`, under `prefix`. Connects
    /// lazily; must be made inside a Tokio runtime (it starts the writer).
    pub fn new(
        url: &str,
        prefix: &str,
        limits: DriverLimits,
        session_expire: Duration,
    ) -> Result<Mirror, StoreError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            StoreError::Unavailable("the Redis store must be started inside the runtime".into())
        })?;
        let (_, conn) = connect(url)?;
        let wake = Arc::new(Notify::new());
        let inner = Arc::new(Inner {
            conn,
            prefix: prefix.to_string(),
            limits,
            session_expire,
            keep: Script::new(KEEP),
            pending: Mutex::default(),
            wake: wake.clone(),
            settled: Notify::new(),
            leading: AtomicBool::new(true),
            down: AtomicBool::new(false),
        });
        runtime.spawn(write_behind(Arc::downgrade(&inner), wake));
        Ok(Mirror { inner })
    }

    /// How long an ended session is remembered, so that what is kept for it
    /// later is not written: longer than any document takes to arrive.
    fn ended_memory(&self) -> Duration {
        self.inner.limits.max_age.max(Duration::from_secs(600))
    }

    /// Notes a document the driver received, to be written behind.
    pub fn keep_document(&self, session: &str, doc: &Document) {
        let doc = PendingDocument {
            target: doc.target.clone(),
            status: doc.status,
            headers: doc.headers.clone(),
            body: doc.body.clone(),
            kept_at: SystemTime::now(),
        };
        self.note(session, |w, limits| w.documents.keep(doc, limits));
    }

    /// Notes the driver's credentials for `session` as they now are.
    pub fn keep_credentials(&self, session: &str, credentials: CredentialsRecord) {
        self.note(session, |w, _| w.credentials = Some(credentials));
    }

    /// Notes that `session` ended: everything of it goes from Redis, and
    /// nothing kept for it from now on is written.
    pub fn end(&self, session: &str) {
        let inner = &self.inner;
        if !inner.leading.load(Ordering::SeqCst) {
            return;
        }
        let now = Instant::now();
        let memory = self.ended_memory();
        {
            let mut pending = lock(&inner.pending);
            pending
                .ended
                .retain(|_, at| now.duration_since(*at) < memory);
            pending.ended.insert(session.to_string(), now);
            pending.sessions.insert(
                session.to_string(),
                SessionWrites {
                    end: true,
                    ..SessionWrites::default()
                },
            );
        }
        inner.wake.notify_one();
    }

    fn note(&self, session: &str, change: impl FnOnce(&mut SessionWrites, &DriverLimits)) {
        let inner = &self.inner;
        if !inner.leading.load(Ordering::SeqCst) {
            return;
        }
        {
            let mut pending = lock(&inner.pending);
            if pending.ended.contains_key(session) {
                return;
            }
            change(
                pending.sessions.entry(session.to_string()).or_default(),
                &inner.limits,
            );
        }
        inner.wake.notify_one();
    }

    /// This node no longer leads: nothing more is written or deleted, and
    /// what was noted and not written yet is let go of (the node that took
    /// over may already have loaded and written newer).
    pub fn hand_over(&self) {
        self.inner.leading.store(false, Ordering::SeqCst);
        let mut pending = lock(&self.inner.pending);
        pending.sessions.clear();
        pending.ended.clear();
        drop(pending);
        self.inner.settled.notify_waiters();
    }

    /// This node leads again: it writes from now on.
    pub fn lead(&self) {
        self.inner.leading.store(true, Ordering::SeqCst);
    }

    /// Waits until everything noted is written, at most `within`; whether it
    /// was. For a node about to hand over on purpose (a graceful stop), and
    /// for tests.
    pub async fn flush(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let settled = self.inner.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            {
                let pending = lock(&self.inner.pending);
                if !pending.in_flight && pending.sessions.values().all(SessionWrites::is_empty) {
                    return true;
                }
            }
            if tokio::time::timeout_at(deadline, settled).await.is_err() {
                return false;
            }
        }
    }

    /// Everything kept in Redis for the sessions that have anything kept:
    /// their documents within the age bound, oldest first, and their
    /// credentials. Sessions whose keys are all gone (expired) are taken
    /// out of the set of sessions.
    pub async fn load(&self) -> Result<Vec<Loaded>, StoreError> {
        let inner = &self.inner;
        let mut conn = inner.conn.clone();
        let failed = |e: ::redis::RedisError| inner.failed(&e);
        let sessions: Vec<String> = ::redis::cmd("SMEMBERS")
            .arg(inner.sessions_key())
            .query_async(&mut conn)
            .await
            .map_err(failed)?;
        let mut loaded = Vec::new();
        let mut gone = Vec::new();
        // A batch of sessions per round trip: a take-over of many sessions
        // is not many round trips long.
        for batch in sessions.chunks(LOAD_BATCH) {
            let mut p = ::redis::pipe();
            p.atomic();
            for session in batch {
                let [_, order, docs, cred] = inner.keys(session);
                p.cmd("ZRANGE").arg(order).arg(0).arg(-1);
                p.cmd("HGETALL").arg(docs);
                p.cmd("HGETALL").arg(cred);
            }
            let answers: Vec<::redis::Value> = p.query_async(&mut conn).await.map_err(failed)?;
            let mut answers = answers.into_iter();
            for session in batch {
                let targets: Vec<String> = value(answers.next()).map_err(failed)?;
                let mut records: HashMap<String, Vec<u8>> =
                    value(answers.next()).map_err(failed)?;
                let cred: HashMap<String, Vec<u8>> = value(answers.next()).map_err(failed)?;
                if records.is_empty() && cred.is_empty() {
                    gone.push(session);
                    continue;
                }
                let now = SystemTime::now();
                let documents = targets
                    .into_iter()
                    .filter_map(|target| {
                        let record = records.remove(&target)?;
                        let doc = parse_record(target, &record, now);
                        if doc.is_none() {
                            warn!(
                                session,
                                "Redis store: a malformed kept document was skipped"
                            );
                        }
                        doc
                    })
                    .filter(|d| d.age() <= inner.limits.max_age)
                    .collect();
                let credentials = (!cred.is_empty()).then(|| CredentialsRecord {
                    cookie: cred.get("cookie").cloned(),
                    page: cred
                        .get("page")
                        .and_then(|p| String::from_utf8(p.clone()).ok()),
                });
                loaded.push(Loaded {
                    session: session.clone(),
                    documents,
                    credentials,
                });
            }
        }
        // Sessions whose keys all expired.
        if !gone.is_empty() {
            ::redis::cmd("SREM")
                .arg(inner.sessions_key())
                .arg(&gone)
                .query_async::<i64>(&mut conn)
                .await
                .map_err(failed)?;
        }
        inner.answered();
        Ok(loaded)
    }
}

impl Inner {
    /// `meta`, `order`, `docs`, `cred` of `session`.
    fn keys(&self, session: &str) -> [String; 4] {
        let base = format!("{}{{{session}}}:driver:", self.prefix);
        ["meta", "order", "docs", "cred"].map(|k| format!("{base}{k}"))
    }

    fn sessions_key(&self) -> String {
        format!("{}driver:sessions", self.prefix)
    }

    fn session_expire_ms(&self) -> u64 {
        millis(self.session_expire.max(self.limits.max_age))
    }

    /// Counts a failed write or read, logs the outage when it starts.
    fn failed(&self, e: &::redis::RedisError) -> StoreError {
        metrics::counter!(telemetry::STORE_FAILURES, "operation" => store_operation::DOCUMENTS)
            .increment(1);
        if !self.down.swap(true, Ordering::SeqCst) {
            warn!(
                reason = describe(e),
                "Redis store: keeping the driver's documents and credentials in Redis failed; followers are served from this node's memory, and the writes are retried until Redis answers"
            );
        }
        StoreError::Unavailable(format!(
            "the shared store (Redis) failed while keeping the driver's documents ({})",
            describe(e)
        ))
    }

    fn answered(&self) {
        if self.down.swap(false, Ordering::SeqCst) {
            info!("Redis store: the driver's documents and credentials are written to Redis again");
        }
    }

    /// Writes one session's noted writes in order, taking each out of
    /// `writes` once Redis has it; on a failure what is left stays there.
    async fn write(&self, session: &str, writes: &mut SessionWrites) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let [meta, order, docs, cred] = self.keys(session);
        if writes.end {
            ::redis::pipe()
                .cmd("DEL")
                .arg(&meta)
                .arg(&order)
                .arg(&docs)
                .arg(&cred)
                .ignore()
                .cmd("SREM")
                .arg(self.sessions_key())
                .arg(session)
                .ignore()
                .query_async::<()>(&mut conn)
                .await
                .map_err(|e| self.failed(&e))?;
            *writes = SessionWrites::default();
            return Ok(());
        }
        if writes.credentials.is_none() && writes.documents.documents.is_empty() {
            return Ok(());
        }
        // Listed before anything is kept, so a take-over finds it.
        ::redis::pipe()
            .cmd("SADD")
            .arg(self.sessions_key())
            .arg(session)
            .ignore()
            .cmd("PEXPIRE")
            .arg(self.sessions_key())
            .arg(self.session_expire_ms())
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| self.failed(&e))?;
        if let Some(c) = &writes.credentials {
            let mut p = ::redis::pipe();
            p.atomic().cmd("DEL").arg(&cred).ignore();
            if let Some(cookie) = &c.cookie {
                p.cmd("HSET").arg(&cred).arg("cookie").arg(cookie).ignore();
            }
            if let Some(page) = &c.page {
                p.cmd("HSET").arg(&cred).arg("page").arg(page).ignore();
            }
            p.cmd("PEXPIRE")
                .arg(&cred)
                .arg(self.session_expire_ms())
                .ignore();
            p.query_async::<()>(&mut conn)
                .await
                .map_err(|e| self.failed(&e))?;
            writes.credentials = None;
        }
        while let Some(doc) = writes.documents.documents.front() {
            let now = SystemTime::now();
            let age = now.duration_since(doc.kept_at).unwrap_or_default();
            if age <= self.limits.max_age {
                let young_since = now.checked_sub(self.limits.max_age).unwrap_or(UNIX_EPOCH);
                let mut call = self.keep.prepare_invoke();
                call.key(&meta).key(&order).key(&docs).key(&cred);
                call.arg(&doc.target)
                    .arg(record(doc))
                    .arg(doc.body.len())
                    .arg(epoch_ms(doc.kept_at))
                    .arg(epoch_ms(young_since))
                    .arg(self.limits.documents_per_session)
                    .arg(self.limits.bytes_per_session)
                    .arg(millis(self.limits.max_age))
                    .arg(self.session_expire_ms())
                    .invoke_async::<i64>(&mut conn)
                    .await
                    .map_err(|e| self.failed(&e))?;
            }
            writes.documents.pop_oldest();
        }
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The writer wakes, finds no mirror any more, and ends.
        self.wake.notify_one();
    }
}

/// The one task that writes a node's noted writes, a batch at a time.
async fn write_behind(inner: Weak<Inner>, wake: Arc<Notify>) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        wake.notified().await;
        loop {
            let Some(mirror) = inner.upgrade() else {
                return;
            };
            let batch = {
                let mut pending = lock(&mirror.pending);
                pending.in_flight = true;
                std::mem::take(&mut pending.sessions)
            };
            if batch.is_empty() {
                lock(&mirror.pending).in_flight = false;
                mirror.settled.notify_waiters();
                break;
            }
            let mut unwritten = Vec::new();
            let mut failed = false;
            for (session, mut writes) in batch {
                // Handed over meanwhile: the rest is not this node's to write.
                if !failed && mirror.leading.load(Ordering::SeqCst) {
                    failed = mirror.write(&session, &mut writes).await.is_err();
                }
                if failed && !writes.is_empty() {
                    unwritten.push((session, writes));
                }
            }
            if !failed {
                mirror.answered();
            }
            {
                let mut pending = lock(&mirror.pending);
                pending.in_flight = false;
                if mirror.leading.load(Ordering::SeqCst) {
                    for (session, older) in unwritten {
                        let merged = match pending.sessions.remove(&session) {
                            Some(newer) => older.then(newer, &mirror.limits),
                            None => older,
                        };
                        pending.sessions.insert(session, merged);
                    }
                }
            }
            mirror.settled.notify_waiters();
            drop(mirror);
            if failed {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            } else {
                backoff = FIRST_BACKOFF;
            }
        }
    }
}

/// One answer of a pipeline as `T`; a missing one is an error.
fn value<T: ::redis::FromRedisValue>(
    answer: Option<::redis::Value>,
) -> Result<T, ::redis::RedisError> {
    let answer = answer.ok_or_else(|| {
        ::redis::RedisError::from(std::io::Error::other("an answer short of the pipeline"))
    })?;
    Ok(::redis::from_redis_value(answer)?)
}

/// `doc` as it is kept in Redis (see the module).
fn record(doc: &PendingDocument) -> Vec<u8> {
    let mut head = Vec::new();
    for (name, value) in &doc.headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.push(b':');
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    let mut out = format!(
        "{} {} {} ",
        epoch_ms(doc.kept_at),
        doc.status.as_u16(),
        head.len()
    )
    .into_bytes();
    out.extend_from_slice(&head);
    out.extend_from_slice(&doc.body);
    out
}

/// A record back into a document kept for `target`, aged from its kept-at
/// time to `now`; `None` when it is not one.
fn parse_record(target: String, record: &[u8], now: SystemTime) -> Option<Document> {
    let mut fields = record.splitn(4, |b| *b == b' ');
    let mut number = || -> Option<u64> { std::str::from_utf8(fields.next()?).ok()?.parse().ok() };
    let kept_ms = number()?;
    let status = StatusCode::from_u16(u16::try_from(number()?).ok()?).ok()?;
    let head_len = usize::try_from(number()?).ok()?;
    let rest = fields.next()?;
    let (head, body) = (rest.get(..head_len)?, rest.get(head_len..)?);
    let mut headers = HeaderMap::new();
    for line in head.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let line = line.strip_suffix(b"\r")?;
        let colon = line.iter().position(|b| *b == b':')?;
        headers.append(
            HeaderName::from_bytes(&line[..colon]).ok()?,
            HeaderValue::from_bytes(&line[colon + 1..]).ok()?,
        );
    }
    let kept_at = UNIX_EPOCH + Duration::from_millis(kept_ms);
    let age = now.duration_since(kept_at).unwrap_or_default();
    Some(Document::restored(
        target,
        status,
        headers,
        Bytes::copy_from_slice(body),
        age,
    ))
}

fn epoch_ms(t: SystemTime) -> u64 {
    millis(t.duration_since(UNIX_EPOCH).unwrap_or_default())
}

fn millis(d: Duration) -> u64 {
    d.as_millis().clamp(1, u64::MAX as u128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_keeps_status_headers_and_body() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            "text/html; charset=utf-8".parse().unwrap(),
        );
        headers.append(http::header::CONTENT_LANGUAGE, "en".parse().unwrap());
        headers.append(http::header::CONTENT_LANGUAGE, "de".parse().unwrap());
        let doc = PendingDocument {
            target: "/a?b=c d".into(),
            status: StatusCode::CREATED,
            headers,
            body: Bytes::from_static(b"<p>1 2\r\n3</p>"),
            kept_at: SystemTime::now() - Duration::from_secs(5),
        };
        let back = parse_record(doc.target.clone(), &record(&doc), SystemTime::now()).unwrap();
        assert_eq!(back.target, doc.target);
        assert_eq!(back.status, StatusCode::CREATED);
        assert_eq!(back.headers, doc.headers);
        assert_eq!(back.body, doc.body);
        assert!((Duration::from_secs(4)..Duration::from_secs(7)).contains(&back.age()));
        for broken in [
            &b""[..],
            b"1 200",
            b"1 200 9 short",
            b"x 200 0 ",
            b"1 200 5 a:b\n",
        ] {
            assert!(parse_record("/".into(), broken, SystemTime::now()).is_none());
        }
    }
}
