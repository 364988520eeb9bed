//! The documents the driver received, kept per shared session so followers
//! are served the very same page instead of asking the upstream again: a
//! page reached by POST, a page behind the customer's login, a page with
//! per-request tokens all look the same on every terminal.
//!
//! Bounded per session in count, bytes and age; everything kept for a
//! session is dropped when the session ends. With a Redis store, each
//! document kept is also handed to the write-behind to Redis
//! ([`Documents::on_kept`]), and a node that takes over loads them back
//! ([`Documents::restore`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use crate::body::BoxError;
use crate::config::DriverLimits;
use crate::lock::lock;
use crate::proxy::stage::Stage;
use crate::telemetry;

/// One document as the driver received it (decoded, agent injected).
#[derive(Debug, Clone)]
pub struct Document {
    /// Path and query, the key followers ask by.
    pub target: String,
    pub status: StatusCode,
    /// The response headers that describe the body (content type and
    /// language, cache policy); nothing connection- or cookie-related.
    pub headers: HeaderMap,
    pub body: Bytes,
    at: Instant,
}

impl Document {
    /// A document kept elsewhere (by the node that led before), `age` old.
    pub fn restored(
        target: String,
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        age: std::time::Duration,
    ) -> Document {
        let now = Instant::now();
        Document {
            target,
            status,
            headers,
            body,
            at: now.checked_sub(age).unwrap_or(now),
        }
    }

    /// How long ago the driver received it.
    pub fn age(&self) -> std::time::Duration {
        self.at.elapsed()
    }
}

/// A document as the per-session bounds count it: by its target (one per
/// target) and its body's bytes.
pub trait Bounded {
    fn target(&self) -> &str;
    fn bytes(&self) -> usize;
}

impl Bounded for Document {
    fn target(&self) -> &str {
        &self.target
    }

    fn bytes(&self) -> usize {
        self.body.len()
    }
}

/// One session's documents within its bounds: the copies kept in memory,
/// and the writes waiting for Redis ([`super::mirror`]) under the same rule.
pub struct SessionDocuments<T> {
    /// Oldest first; a newer document for the same target replaces the old.
    pub documents: VecDeque<T>,
    pub bytes: usize,
}

impl<T> Default for SessionDocuments<T> {
    fn default() -> Self {
        SessionDocuments {
            documents: VecDeque::new(),
            bytes: 0,
        }
    }
}

impl<T: Bounded> SessionDocuments<T> {
    /// Keeps `doc` as the newest, evicting the oldest past the bounds.
    pub fn keep(&mut self, doc: T, limits: &DriverLimits) {
        if let Some(i) = self
            .documents
            .iter()
            .position(|d| d.target() == doc.target())
        {
            let old = self.documents.remove(i).expect("index from position");
            self.bytes -= old.bytes();
        }
        self.bytes += doc.bytes();
        self.documents.push_back(doc);
        while self.documents.len() > limits.documents_per_session
            || self.bytes > limits.bytes_per_session
        {
            let evicted = self
                .documents
                .pop_front()
                .expect("over a bound means not empty");
            self.bytes -= evicted.bytes();
        }
    }

    /// Takes the oldest out.
    pub fn pop_oldest(&mut self) -> Option<T> {
        let oldest = self.documents.pop_front()?;
        self.bytes -= oldest.bytes();
        Some(oldest)
    }
}

#[derive(Clone)]
pub struct Documents {
    inner: Arc<Mutex<HashMap<String, SessionDocuments<Document>>>>,
    /// Woken whenever a document is kept: followers waiting for the
    /// driver's response look again.
    kept: Arc<tokio::sync::Notify>,
    limits: DriverLimits,
    /// Told of each document kept (the write-behind of a Redis store).
    on_kept: Option<Arc<OnKept>>,
}

/// What [`Documents::on_kept`] calls: with the session and the document.
type OnKept = dyn Fn(&str, &Document) + Send + Sync;

impl Documents {
    pub fn new(limits: DriverLimits) -> Documents {
        Documents {
            inner: Arc::default(),
            kept: Arc::default(),
            limits,
            on_kept: None,
        }
    }

    /// Calls `hook` with each document kept, in the order they are kept
    /// (under the lock: keep it short, and never call back in here).
    pub fn on_kept(mut self, hook: impl Fn(&str, &Document) + Send + Sync + 'static) -> Documents {
        self.on_kept = Some(Arc::new(hook));
        self
    }

    pub fn limits(&self) -> DriverLimits {
        self.limits
    }

    /// Keeps `document` for `session`, evicting the oldest past the bounds.
    /// A document larger than the whole per-session budget is not kept.
    pub fn record(
        &self,
        session: &str,
        target: String,
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
    ) {
        if body.len() > self.limits.bytes_per_session {
            metrics::counter!(telemetry::DOCUMENTS_TOO_LARGE).increment(1);
            telemetry::limit_hit(telemetry::limit::DOCUMENT_SIZE);
            return;
        }
        let doc = Document {
            target,
            status,
            headers,
            body,
            at: Instant::now(),
        };
        let mut sessions = lock(&self.inner);
        // Told under the lock, so the hook sees a session's documents in the
        // order they were kept here.
        if let Some(hook) = &self.on_kept {
            hook(session, &doc);
        }
        sessions
            .entry(session.to_string())
            .or_default()
            .keep(doc, &self.limits);
        drop(sessions);
        self.kept.notify_waiters();
    }

    /// Keeps `documents` (oldest first, loaded by a take-over) for
    /// `session`, within the bounds, unless this node keeps documents for
    /// it already (kept since: newer). Followers waiting for one look again.
    pub fn restore(&self, session: &str, documents: Vec<Document>) {
        {
            let mut sessions = lock(&self.inner);
            if sessions.contains_key(session) || documents.is_empty() {
                return;
            }
            let docs = sessions.entry(session.to_string()).or_default();
            for doc in documents {
                docs.keep(doc, &self.limits);
            }
        }
        self.kept.notify_waiters();
    }

    /// Forgets every session's documents (this node handed the sessions
    /// over; Redis keeps its copies).
    pub fn clear(&self) {
        lock(&self.inner).clear();
    }

    /// The latest document the driver received for `target`, if it is still
    /// kept and not older than the age bound. A target whose query has some
    /// values blanked (the agent blanks masked fields' values in the URLs it
    /// shares) matches the driver's document for the real URL.
    pub fn lookup(&self, session: &str, target: &str) -> Option<Document> {
        let mut sessions = lock(&self.inner);
        let docs = sessions.get_mut(session)?;
        let max_age = self.limits.max_age;
        while docs
            .documents
            .front()
            .is_some_and(|d| d.at.elapsed() > max_age)
        {
            docs.pop_oldest();
        }
        let newest_first = || docs.documents.iter().rev();
        newest_first()
            .find(|d| d.target == target)
            .or_else(|| newest_first().find(|d| blanked_form_of(target, &d.target)))
            .cloned()
    }

    /// As [`lookup`](Self::lookup), waiting up to the configured bound for
    /// the driver's response when it is not kept yet (a follower that asks
    /// before the driver's response is complete).
    pub async fn wait_for(&self, session: &str, target: &str) -> Option<Document> {
        let deadline = tokio::time::Instant::now() + self.limits.follower_wait;
        loop {
            // Registered before looking, so a document kept in between
            // still wakes us.
            let kept = self.kept.notified();
            tokio::pin!(kept);
            kept.as_mut().enable();
            if let Some(doc) = self.lookup(session, target) {
                return Some(doc);
            }
            if tokio::time::timeout_at(deadline, kept).await.is_err() {
                return None;
            }
        }
    }

    /// Forgets everything kept for `session`.
    pub fn drop_session(&self, session: &str) {
        lock(&self.inner).remove(session);
    }

    /// Keeps only the sessions `alive` says are still going.
    pub fn retain(&self, mut alive: impl FnMut(&str) -> bool) {
        lock(&self.inner).retain(|session, _| alive(session));
    }

    /// How many documents and bytes are kept for `session`.
    pub fn usage(&self, session: &str) -> (usize, usize) {
        let sessions = lock(&self.inner);
        sessions
            .get(session)
            .map_or((0, 0), |d| (d.documents.len(), d.bytes))
    }
}

/// Whether `asked` is `kept` with some query values blanked: the same path,
/// the same parameter names in the same order, and equal values except
/// where `asked` has an empty one. At least one value must be blanked, or
/// the targets would have matched exactly.
fn blanked_form_of(asked: &str, kept: &str) -> bool {
    let (Some((asked_path, asked_query)), Some((kept_path, kept_query))) =
        (asked.split_once('?'), kept.split_once('?'))
    else {
        return false;
    };
    if asked_path != kept_path {
        return false;
    }
    let asked: Vec<_> = url::form_urlencoded::parse(asked_query.as_bytes()).collect();
    let kept: Vec<_> = url::form_urlencoded::parse(kept_query.as_bytes()).collect();
    asked.len() == kept.len()
        && asked.iter().any(|(_, v)| v.is_empty())
        && asked
            .iter()
            .zip(&kept)
            .all(|((an, av), (kn, kv))| an == kn && (av.is_empty() || av == kv))
}

/// A body stage that passes HTML through unchanged while keeping a copy;
/// when the document ends complete and within the byte bound, the copy is
/// recorded for the session. It sits after the rewrite and before the
/// encoder, so what is kept is the document as the driver's browser read it.
pub struct Recorder {
    copy: Vec<u8>,
    pending: Option<Pending>,
}

struct Pending {
    documents: Documents,
    session: String,
    target: String,
    status: StatusCode,
    headers: HeaderMap,
}

impl Recorder {
    pub fn new(
        documents: Documents,
        session: String,
        target: String,
        status: StatusCode,
        headers: HeaderMap,
    ) -> Recorder {
        Recorder {
            copy: Vec::new(),
            pending: Some(Pending {
                documents,
                session,
                target,
                status,
                headers,
            }),
        }
    }
}

impl Stage for Recorder {
    fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), BoxError> {
        out.extend_from_slice(input);
        if let Some(p) = &self.pending {
            if self.copy.len() + input.len() > p.documents.limits.bytes_per_session {
                // Too big to keep: followers will load it themselves.
                self.pending = None;
                self.copy = Vec::new();
                metrics::counter!(telemetry::DOCUMENTS_TOO_LARGE).increment(1);
                telemetry::limit_hit(telemetry::limit::DOCUMENT_SIZE);
            } else {
                self.copy.extend_from_slice(input);
            }
        }
        Ok(())
    }

    fn finish(&mut self, _out: &mut Vec<u8>) -> Result<(), BoxError> {
        if let Some(p) = self.pending.take() {
            let body = Bytes::from(std::mem::take(&mut self.copy));
            p.documents
                .record(&p.session, p.target, p.status, p.headers, body);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits() -> DriverLimits {
        DriverLimits {
            documents_per_session: 2,
            bytes_per_session: 10,
            max_age: Duration::from_secs(60),
            follower_wait: Duration::from_millis(500),
        }
    }

    fn record(d: &Documents, target: &str, body: &'static str) {
        d.record(
            "s",
            target.into(),
            StatusCode::OK,
            HeaderMap::new(),
            Bytes::from_static(body.as_bytes()),
        );
    }

    #[test]
    fn same_target_replaces_and_count_bound_evicts_oldest() {
        let d = Documents::new(limits());
        record(&d, "/a", "1");
        record(&d, "/a", "22");
        assert_eq!(d.lookup("s", "/a").unwrap().body, "22");
        record(&d, "/b", "3");
        record(&d, "/c", "4");
        assert!(
            d.lookup("s", "/a").is_none(),
            "oldest evicted past two documents"
        );
        assert_eq!(d.usage("s"), (2, 2));
    }

    #[test]
    fn byte_bound_evicts_and_oversize_is_not_kept() {
        let d = Documents::new(limits());
        record(&d, "/a", "123456");
        record(&d, "/b", "12345");
        assert!(d.lookup("s", "/a").is_none());
        record(&d, "/huge", "12345678901");
        assert!(d.lookup("s", "/huge").is_none());
        assert_eq!(d.usage("s"), (1, 5));
    }

    #[test]
    fn age_bound_and_session_drop() {
        let d = Documents::new(DriverLimits {
            max_age: Duration::ZERO,
            ..limits()
        });
        record(&d, "/a", "1");
        std::thread::sleep(Duration::from_millis(2));
        assert!(d.lookup("s", "/a").is_none());
        let d = Documents::new(limits());
        record(&d, "/a", "1");
        d.drop_session("s");
        assert_eq!(d.usage("s"), (0, 0));
        assert!(d.lookup("other", "/a").is_none());
    }

    #[test]
    fn a_url_with_blanked_values_finds_the_drivers_document() {
        let d = Documents::new(DriverLimits {
            bytes_per_session: 1000,
            ..limits()
        });
        record(&d, "/search?q=tea&pw=hunter2&cardno=4111", "real");
        assert_eq!(
            d.lookup("s", "/search?q=tea&pw=&cardno=").unwrap().body,
            "real"
        );
        assert_eq!(
            d.lookup("s", "/search?q=tea&pw=&cardno").unwrap().body,
            "real",
            "a bare name is an empty value"
        );
        for other in [
            "/search?q=coffee&pw=&cardno=",
            "/search?pw=&q=tea&cardno=",
            "/search?q=tea&pw=",
            "/search?q=tea&pw=&cardno=&x=",
            "/find?q=tea&pw=&cardno=",
            "/search",
            "/search?q=tea&pw=hunter3&cardno=4111",
        ] {
            assert!(d.lookup("s", other).is_none(), "{other} must not match");
        }
    }

    #[tokio::test]
    async fn a_follower_waits_for_the_drivers_document_within_the_bound() {
        let d = Documents::new(DriverLimits {
            bytes_per_session: 1000,
            ..limits()
        });
        let later = d.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            record(&later, "/api", "driver's");
        });
        assert_eq!(d.wait_for("s", "/api").await.unwrap().body, "driver's");
        let started = std::time::Instant::now();
        assert!(d.wait_for("s", "/never").await.is_none());
        assert!(
            started.elapsed() >= Duration::from_millis(450),
            "waited the bound: {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn recorder_passes_through_and_keeps_a_copy() {
        let d = Documents::new(DriverLimits {
            bytes_per_session: 1000,
            ..limits()
        });
        let mut rec = Recorder::new(
            d.clone(),
            "s".into(),
            "/p".into(),
            StatusCode::OK,
            HeaderMap::new(),
        );
        let mut out = Vec::new();
        rec.push(b"<html>hel", &mut out).unwrap();
        assert!(d.lookup("s", "/p").is_none(), "kept only once complete");
        rec.push(b"lo</html>", &mut out).unwrap();
        rec.finish(&mut out).unwrap();
        assert_eq!(out, b"<html>hello</html>");
        assert_eq!(d.lookup("s", "/p").unwrap().body, "<html>hello</html>");
    }
}
