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
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use tracing::{info, warn};

use self::documents::{Documents, Limits, Recorder};
use crate::body::{self, Body};
use crate::hub::Hub;
use crate::server::Ctx;

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
    take_cookie(headers, PARTICIPANT_COOKIE)
}

/// Removes cookie `name` from `headers` and returns its value.
pub fn take_cookie(headers: &mut HeaderMap, name: &str) -> Option<String> {
    let wanted = name;
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
                Some((name, v)) if name == wanted => found = Some(v.to_string()),
                _ if pair.trim().is_empty() => {}
                _ => rest.push(pair.trim()),
            }
        }
        if !rest.is_empty() {
            kept.push(
                HeaderValue::from_str(&rest.join("; ")).expect("parts of a valid header value"),
            );
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
        Driver {
            documents: Documents::new(limits),
            credentials: Arc::default(),
        }
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
        if let Some(cookie) = self
            .credentials
            .lock()
            .expect("credentials lock")
            .get(session)
        {
            headers.insert(header::COOKIE, cookie.clone());
        }
    }

    /// Drops everything kept for a session that ended.
    pub fn end_session(&self, session: &str) {
        self.documents.drop_session(session);
        self.credentials
            .lock()
            .expect("credentials lock")
            .remove(session);
    }

    /// Drops everything kept for sessions `alive` says have ended.
    pub fn retain(&self, mut alive: impl FnMut(&str) -> bool) {
        self.documents.retain(&mut alive);
        self.credentials
            .lock()
            .expect("credentials lock")
            .retain(|s, _| alive(s));
    }
}

/// The proxy's view of shared sessions: the hub says which participant a
/// request comes from, the driver keeps what followers are served.
#[derive(Clone)]
pub struct Sessions {
    pub hub: Hub,
    pub driver: Driver,
}

impl Sessions {
    /// Drops what was kept for a session as soon as the hub ends it, and
    /// starts the sweep that catches anything kept after that (a document
    /// still streaming in when the session ended).
    pub fn new(hub: Hub, driver: Driver) -> Sessions {
        let on_end = driver.clone();
        hub.on_session_end(move |id| on_end.end_session(id));
        let sessions = Sessions { hub, driver };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let s = sessions.clone();
            rt.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tick.tick().await;
                    s.driver.retain(|id| s.hub.session(id).is_some());
                }
            });
        }
        sessions
    }

    /// Where the request with these headers stands; takes the participant
    /// cookie out of them either way.
    pub fn standing(&self, headers: &mut HeaderMap) -> Standing {
        let Some(cookie) = take_participant_cookie(headers) else {
            return Standing::Alone;
        };
        let Some((session, resume)) = cookie.split_once('.') else {
            return Standing::Alone;
        };
        let Some((view, participant)) = self.hub.participant(session, resume) else {
            // The session ended: what was kept for it goes too.
            self.driver.end_session(session);
            return Standing::Alone;
        };
        let session = session.to_string();
        if view.is_follower(&participant.id) {
            Standing::Follower { session }
        } else {
            Standing::Driver { session }
        }
    }
}

#[derive(Deserialize)]
struct BindRequest {
    session: String,
    resume: String,
}

/// `POST {prefix}bind` with `{"session":…,"resume":…}`: sets the participant
/// cookie, so the proxy knows which participant this browser's requests come
/// from. An empty body clears it.
pub async fn bind(
    sessions: &Sessions,
    req: Request<Incoming>,
    ctx: Ctx,
    public_origins: &[String],
) -> Response<Body> {
    if req.method() != Method::POST {
        return json(
            StatusCode::METHOD_NOT_ALLOWED,
            r#"{"error":"use POST"}"#.into(),
            None,
        );
    }
    let (parts, body) = req.into_parts();
    // The same rule as the operator cookie's, for TLS ended in front of us.
    let https = crate::hub::ws::browser_over_https(&parts.headers, &ctx, public_origins);
    let bytes = match Limited::new(body, 4096).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return json(
                StatusCode::PAYLOAD_TOO_LARGE,
                r#"{"error":"body larger than 4096 bytes"}"#.into(),
                None,
            );
        }
    };
    let secure = if https { "; Secure" } else { "" };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        let clear =
            format!("{PARTICIPANT_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}");
        return json(StatusCode::OK, r#"{"bound":false}"#.into(), Some(clear));
    }
    let Ok(bind) = serde_json::from_slice::<BindRequest>(&bytes) else {
        return json(
            StatusCode::BAD_REQUEST,
            r#"{"error":"expected {\"session\":…,\"resume\":…}"}"#.into(),
            None,
        );
    };
    let Some((view, participant)) = sessions.hub.participant(&bind.session, &bind.resume) else {
        return json(
            StatusCode::FORBIDDEN,
            r#"{"error":"no such participant in a live session"}"#.into(),
            None,
        );
    };
    let driving = !view.is_follower(&participant.id);
    if driving {
        // The bind request carries the site's cookies too: followers can load
        // the customer's current page with them before it navigates again.
        let mut headers = parts.headers;
        take_participant_cookie(&mut headers);
        sessions.driver.record_credentials(&bind.session, &headers);
    }
    info!(target: "audit", session = %bind.session, participant = %participant.id, driving, "browser bound to session");
    let cookie = format!(
        "{PARTICIPANT_COOKIE}={}.{}; Path=/; HttpOnly; SameSite=Strict{secure}",
        bind.session, bind.resume
    );
    json(
        StatusCode::OK,
        serde_json::json!({ "bound": true, "driver": driving }).to_string(),
        Some(cookie),
    )
}

fn json(status: StatusCode, text: String, cookie: Option<String>) -> Response<Body> {
    let mut r = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store");
    if let Some(c) = cookie {
        r = r.header(header::SET_COOKIE, c);
    }
    r.body(body::full(text))
        .expect("static response parts are valid")
}

/// What the proxy does with a request, decided before it goes upstream.
pub enum Decision {
    /// Send it upstream. `record` names the session whose driver is
    /// navigating, so the document it gets back is kept for followers;
    /// `mask` says an HTML answer goes to a follower and has its masked
    /// fields blanked.
    Forward { record: Option<String>, mask: bool },
    /// Answer it here: a kept document for a follower, or a refusal.
    Answer(Response<Body>),
}

/// Whether the browser is loading a document (a page or a frame), as opposed
/// to a subresource or a scripted request.
pub fn is_navigation(headers: &HeaderMap) -> bool {
    let mode = headers.get("sec-fetch-mode").and_then(|v| v.to_str().ok());
    let dest = headers.get("sec-fetch-dest").and_then(|v| v.to_str().ok());
    mode == Some("navigate") || matches!(dest, Some("document" | "iframe" | "frame"))
}

impl Driver {
    /// The request phase for shared sessions. Runs after the participant
    /// cookie was taken out and before the request goes upstream.
    pub fn before_upstream(
        &self,
        standing: &Standing,
        parts: &mut http::request::Parts,
        mask: &[String],
    ) -> Decision {
        match standing {
            Standing::Alone => Decision::Forward {
                record: None,
                mask: false,
            },
            Standing::Driver { session } => {
                self.record_credentials(session, &parts.headers);
                // A page reached by POST is kept too: followers load its URL
                // with a GET and must see what the customer saw.
                let record = is_navigation(&parts.headers).then(|| session.clone());
                Decision::Forward {
                    record,
                    mask: false,
                }
            }
            Standing::Follower { session } => {
                if !is_safe(&parts.method) {
                    metrics::counter!("cobrowse_driver_follower_refusals_total").increment(1);
                    warn!(%session, method = %parts.method, uri = %parts.uri, "refused a follower request that would change state");
                    return Decision::Answer(refusal(&parts.method));
                }
                if is_navigation(&parts.headers) {
                    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                    if let Some(response) = self.kept_document(session, target, mask) {
                        metrics::counter!("cobrowse_driver_documents_served_total").increment(1);
                        return Decision::Answer(response);
                    }
                }
                // A read the driver has not made for us: make it with the
                // driver's credentials, never the follower's own.
                self.apply_credentials(session, &mut parts.headers);
                Decision::Forward {
                    record: None,
                    mask: true,
                }
            }
        }
    }

    /// The body stage that keeps a copy of the driver's document for
    /// followers.
    pub fn recorder(
        &self,
        session: String,
        target: String,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Recorder {
        let mut kept = HeaderMap::new();
        for name in [
            header::CONTENT_TYPE,
            header::CONTENT_LANGUAGE,
            header::CONTENT_SECURITY_POLICY,
        ] {
            for value in headers.get_all(&name) {
                kept.append(name.clone(), value.clone());
            }
        }
        Recorder::new(self.documents.clone(), session, target, status, kept)
    }

    fn kept_document(
        &self,
        session: &str,
        target: &str,
        mask: &[String],
    ) -> Option<Response<Body>> {
        let doc = self.documents.lookup(session, target)?;
        let encoding = doc
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|ct| {
                ct.split(';')
                    .find_map(|p| p.trim().strip_prefix("charset="))
            })
            .and_then(|label| encoding_rs::Encoding::for_label(label.trim_matches('"').as_bytes()))
            .unwrap_or(encoding_rs::UTF_8);
        let masked = mask::mask_document(&doc.body, encoding, mask)?;
        let mut response = Response::builder().status(doc.status);
        for (name, value) in &doc.headers {
            response = response.header(name, value);
        }
        Some(
            response
                .header(header::CACHE_CONTROL, "no-store")
                .header("x-cobrowse-document", "driver")
                .body(body::full(masked))
                .expect("parts copied from a valid response"),
        )
    }
}

/// The answer to a follower's request that would change the site's state.
fn refusal(method: &Method) -> Response<Body> {
    let html = format!(
        "<!doctype html><html><head><meta charset=utf-8><title>403 Not performed</title></head>\
         <body style=\"font-family:system-ui,sans-serif;max-width:40em;margin:4em auto\">\
         <h1>Not performed</h1><p>This {method} request was not sent to the site. \
         In a shared session only the customer's browser makes requests that change the site's state \
         (rule: one driver); ask the customer, or act with remote control so the customer's browser performs it.</p>\
         <p><small>cobrowse proxy</small></p></body></html>"
    );
    Response::builder()
        .status(StatusCode::FORBIDDEN)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .header("x-cobrowse-refused", "one-driver")
        .body(body::full(html))
        .expect("static response parts are valid")
}

/// All `Cookie` headers as one (HTTP/2 clients send one per cookie).
fn join_cookies(headers: &HeaderMap) -> Option<HeaderValue> {
    let parts: Vec<&str> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
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
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; cobrowse_participant=s.r; b=2"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("c=3"));
        assert_eq!(take_participant_cookie(&mut h).as_deref(), Some("s.r"));
        let left: Vec<_> = h
            .get_all(header::COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        assert_eq!(left, ["a=1; b=2", "c=3"]);
    }

    #[tokio::test]
    async fn what_was_kept_goes_when_the_session_ends() {
        use crate::hub::Role;
        let config = crate::config::Config::parse(
            "upstream = \"http://127.0.0.1:9\"\n",
            None,
            &Default::default(),
        )
        .unwrap();
        let hub = Hub::new(std::sync::Arc::new(config));
        let d = Driver::new(Limits {
            documents_per_session: 1,
            bytes_per_session: 1,
            max_age: std::time::Duration::from_secs(1),
        });
        let _sessions = Sessions::new(hub.clone(), d.clone());
        let shared = hub.shared().clone();
        let (conn, _rx, _cancel) =
            shared.connect(std::net::Ipv4Addr::LOCALHOST.into(), Role::Customer, None);
        shared.call(conn).await.unwrap();
        let session = shared.lock().sessions.keys().next().unwrap().clone();
        let mut driver = HeaderMap::new();
        driver.append(header::COOKIE, HeaderValue::from_static("sid=customer"));
        d.record_credentials(&session, &driver);
        shared.hangup(conn).unwrap();
        // At once, not at the next sweep.
        let mut follower = HeaderMap::new();
        d.apply_credentials(&session, &mut follower);
        assert!(follower.get(header::COOKIE).is_none());
    }

    #[test]
    fn follower_gets_the_drivers_cookies_only() {
        let d = Driver::new(Limits {
            documents_per_session: 1,
            bytes_per_session: 1,
            max_age: std::time::Duration::from_secs(1),
        });
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

    fn request(method: Method, target: &str, navigate: bool) -> http::request::Parts {
        let mut b = http::Request::builder()
            .method(method)
            .uri(target)
            .header(header::COOKIE, "sid=operator");
        if navigate {
            b = b
                .header("sec-fetch-mode", "navigate")
                .header("sec-fetch-dest", "iframe");
        }
        b.body(()).unwrap().into_parts().0
    }

    #[tokio::test]
    async fn followers_get_the_drivers_document_masked_and_never_post() {
        use http_body_util::BodyExt;
        let d = Driver::new(Limits {
            documents_per_session: 4,
            bytes_per_session: 1 << 20,
            max_age: std::time::Duration::from_secs(60),
        });
        let driver = Standing::Driver {
            session: "s".into(),
        };
        let follower = Standing::Follower {
            session: "s".into(),
        };

        let mut parts = request(Method::GET, "/account?tab=1", true);
        parts
            .headers
            .insert(header::COOKIE, HeaderValue::from_static("sid=customer"));
        let Decision::Forward {
            record: Some(session),
            mask: false,
        } = d.before_upstream(&driver, &mut parts, &[])
        else {
            panic!("driver navigation must be recorded")
        };
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        let page =
            r#"<p>Balance 12</p><input type=password value="hunter2"><input id=pin value="9999">"#;
        let mut recorder = d.recorder(session, "/account?tab=1".into(), StatusCode::OK, &headers);
        let mut out = Vec::new();
        crate::proxy::stream::Stage::push(&mut recorder, page.as_bytes(), &mut out).unwrap();
        crate::proxy::stream::Stage::finish(&mut recorder, &mut out).unwrap();

        let mut parts = request(Method::GET, "/account?tab=1", true);
        let Decision::Answer(response) = d.before_upstream(&follower, &mut parts, &["#pin".into()])
        else {
            panic!("follower navigation must be served the kept document")
        };
        let text = String::from_utf8(
            response
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap();
        assert!(text.contains("Balance 12"), "{text}");
        assert!(
            !text.contains("hunter2") && !text.contains("9999"),
            "masked values leaked: {text}"
        );

        let mut parts = request(Method::GET, "/img.png", false);
        assert!(matches!(
            d.before_upstream(&follower, &mut parts, &[]),
            Decision::Forward {
                record: None,
                mask: true
            }
        ));
        assert_eq!(
            parts.headers.get(header::COOKIE).unwrap(),
            "sid=customer",
            "follower reads use the driver's cookies"
        );

        let mut parts = request(Method::POST, "/order", true);
        let Decision::Answer(response) = d.before_upstream(&follower, &mut parts, &[]) else {
            panic!("follower POST must be refused")
        };
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }
}
