//! One driver: in a shared session the customer's browser drives, and
//! followers (operators) never repeat a side effect.
//!
//! - Requests that change state (any method but GET, HEAD, OPTIONS) reach
//!   the upstream only from the driver; a follower's are refused here.
//! - The documents the driver received are kept ([`documents`]) and served to
//!   followers with masked fields blanked ([`mask`]).
//! - A follower's GETs carry the driver's upstream cookies, never the
//!   follower's own.
//!
//! Which participant a request comes from is told by the participant cookie
//! the agent obtains from `{prefix}bind` once it has joined a session.

pub mod documents;
pub mod mask;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::{HeaderMap, HeaderValue, Method, header};

use self::documents::{Documents, Limits};

/// The cookie that names the participant a browser is in a session:
/// `<session>.<resume secret>`. HttpOnly, SameSite=Strict, Path=/; removed
/// from every request before it goes upstream.
pub const PARTICIPANT_COOKIE: &str = "cobrowse_participant";

/// Where a request stands in a shared session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Not in a session (or the session is not shared yet).
    Alone,
    /// The customer's browser: its requests go upstream as they are.
    Driver { session: String },
    /// An operator's browser following the driver.
    Follower { session: String },
}

/// Methods that cannot change the site's state (RFC 9110 9.2.1).
pub fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Removes the participant cookie from `headers` (it is ours, not the
/// site's) and returns its value.
pub fn take_participant_cookie(headers: &mut HeaderMap) -> Option<String> {
    let mut found = None;
    let mut kept: Vec<HeaderValue> = Vec::new();
    for value in headers.get_all(header::COOKIE) {
        let Ok(text) = value.to_str() else {
            kept.push(value.clone());
            continue;
        };
        let mut rest = Vec::new();
        for pair in text.split(';') {
            match pair.trim().split_once('=') {
                Some((name, v)) if name == PARTICIPANT_COOKIE => found = Some(v.to_string()),
                _ if pair.trim().is_empty() => {}
                _ => rest.push(pair.trim()),
            }
        }
        if !rest.is_empty() {
            kept.push(HeaderValue::from_str(&rest.join("; ")).expect("parts of a valid header value"));
        }
    }
    headers.remove(header::COOKIE);
    for value in kept {
        headers.append(header::COOKIE, value);
    }
    found
}

/// What the proxy keeps per shared session for its followers.
#[derive(Clone)]
pub struct Driver {
    pub documents: Documents,
    /// The driver's latest `Cookie` header to the upstream, per session.
    credentials: Arc<Mutex<HashMap<String, HeaderValue>>>,
}

impl Driver {
    pub fn new(limits: Limits) -> Driver {
        Driver { documents: Documents::new(limits), credentials: Arc::default() }
    }

    /// Remembers the cookies the driver sends upstream, so followers' reads
    /// are made with the same credentials.
    pub fn record_credentials(&self, session: &str, headers: &HeaderMap) {
        let mut creds = self.credentials.lock().expect("credentials lock");
        match join_cookies(headers) {
            Some(cookie) => creds.insert(session.to_string(), cookie),
            None => creds.remove(session),
        };
    }

    /// Replaces the follower's cookies with the driver's.
    pub fn apply_credentials(&self, session: &str, headers: &mut HeaderMap) {
        headers.remove(header::COOKIE);
        if let Some(cookie) = self.credentials.lock().expect("credentials lock").get(session) {
            headers.insert(header::COOKIE, cookie.clone());
        }
    }

    /// Drops everything kept for a session that ended.
    pub fn end_session(&self, session: &str) {
        self.documents.drop_session(session);
        self.credentials.lock().expect("credentials lock").remove(session);
    }
}

/// All `Cookie` headers as one (HTTP/2 clients send one per cookie).
fn join_cookies(headers: &HeaderMap) -> Option<HeaderValue> {
    let parts: Vec<&str> = headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).collect();
    if parts.is_empty() {
        return None;
    }
    HeaderValue::from_str(&parts.join("; ")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn participant_cookie_is_taken_out() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; cobrowse_participant=s.r; b=2"));
        h.append(header::COOKIE, HeaderValue::from_static("c=3"));
        assert_eq!(take_participant_cookie(&mut h).as_deref(), Some("s.r"));
        let left: Vec<_> = h.get_all(header::COOKIE).iter().map(|v| v.to_str().unwrap().to_string()).collect();
        assert_eq!(left, ["a=1; b=2", "c=3"]);
    }

    #[test]
    fn follower_gets_the_drivers_cookies_only() {
        let d = Driver::new(Limits { documents_per_session: 1, bytes_per_session: 1, max_age: std::time::Duration::from_secs(1) });
        let mut driver = HeaderMap::new();
        driver.append(header::COOKIE, HeaderValue::from_static("sid=customer"));
        d.record_credentials("s", &driver);
        let mut follower = HeaderMap::new();
        follower.append(header::COOKIE, HeaderValue::from_static("sid=operator"));
        d.apply_credentials("s", &mut follower);
        assert_eq!(follower.get(header::COOKIE).unwrap(), "sid=customer");
        d.end_session("s");
        d.apply_credentials("s", &mut follower);
        assert!(follower.get(header::COOKIE).is_none());
    }
}
