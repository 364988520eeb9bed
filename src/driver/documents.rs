//! The documents the driver received, kept per shared session so followers
//! are served the very same page instead of asking the upstream again: a
//! page reached by POST, a page behind the customer's login, a page with
//! per-request tokens all look the same on every terminal.
//!
//! Bounded per session in count, bytes and age; everything kept for a
//! session is dropped when the session ends.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use crate::body::BoxError;
use crate::proxy::stream::Stage;
use crate::telemetry;

/// Bounds on what is kept per session.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub documents_per_session: usize,
    pub bytes_per_session: usize,
    pub max_age: Duration,
}

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

#[derive(Default)]
struct SessionDocuments {
    /// Oldest first; a newer document for the same target replaces the old.
    documents: VecDeque<Document>,
    bytes: usize,
}

#[derive(Clone)]
pub struct Documents {
    inner: Arc<Mutex<HashMap<String, SessionDocuments>>>,
    limits: Limits,
}

impl Documents {
    pub fn new(limits: Limits) -> Documents {
        Documents {
            inner: Arc::default(),
            limits,
        }
    }

    pub fn limits(&self) -> Limits {
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
        let mut sessions = self.inner.lock().expect("documents lock");
        let docs = sessions.entry(session.to_string()).or_default();
        if let Some(i) = docs.documents.iter().position(|d| d.target == target) {
            let old = docs.documents.remove(i).expect("index from position");
            docs.bytes -= old.body.len();
        }
        docs.bytes += body.len();
        docs.documents.push_back(Document {
            target,
            status,
            headers,
            body,
            at: Instant::now(),
        });
        while docs.documents.len() > self.limits.documents_per_session
            || docs.bytes > self.limits.bytes_per_session
        {
            let evicted = docs
                .documents
                .pop_front()
                .expect("over a bound means not empty");
            docs.bytes -= evicted.body.len();
        }
    }

    /// The latest document the driver received for `target`, if it is still
    /// kept and not older than the age bound.
    pub fn lookup(&self, session: &str, target: &str) -> Option<Document> {
        let mut sessions = self.inner.lock().expect("documents lock");
        let docs = sessions.get_mut(session)?;
        let max_age = self.limits.max_age;
        while docs
            .documents
            .front()
            .is_some_and(|d| d.at.elapsed() > max_age)
        {
            let expired = docs.documents.pop_front().expect("front exists");
            docs.bytes -= expired.body.len();
        }
        docs.documents
            .iter()
            .rev()
            .find(|d| d.target == target)
            .cloned()
    }

    /// Forgets everything kept for `session`.
    pub fn drop_session(&self, session: &str) {
        self.inner.lock().expect("documents lock").remove(session);
    }

    /// Keeps only the sessions `alive` says are still going.
    pub fn retain(&self, mut alive: impl FnMut(&str) -> bool) {
        self.inner
            .lock()
            .expect("documents lock")
            .retain(|session, _| alive(session));
    }

    /// How many documents and bytes are kept for `session`.
    pub fn usage(&self, session: &str) -> (usize, usize) {
        let sessions = self.inner.lock().expect("documents lock");
        sessions
            .get(session)
            .map_or((0, 0), |d| (d.documents.len(), d.bytes))
    }
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

    fn limits() -> Limits {
        Limits {
            documents_per_session: 2,
            bytes_per_session: 10,
            max_age: Duration::from_secs(60),
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
        let d = Documents::new(Limits {
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
    fn recorder_passes_through_and_keeps_a_copy() {
        let d = Documents::new(Limits {
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
