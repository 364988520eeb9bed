//! One driver: in a shared session the customer's browser drives, and
//! followers (operators) never repeat a side effect.
//!
//! - Requests that change state (any method but GET, HEAD, OPTIONS) reach
//!   the upstream only from the driver; a follower's are refused here.
//! - The documents the driver received are kept ([`documents`]) and served to
//!   followers with masked fields blanked ([`crate::proxy::mask`]).
//! - A follower reads what the driver read, and nothing else as the
//!   customer: its reads the driver also made (documents, and the GETs the
//!   driver's scripts made) are answered with what the driver received
//!   ([`documents`]), masked fields blanked in HTML ([`crate::proxy::mask`]) and masked
//!   keys in JSON ([`json`]); the page the driver was on when its browser was
//!   bound is read with the driver's cookies; every other read goes upstream
//!   without any credentials. Site WebSockets, event streams and method
//!   overrides from followers are refused; a follower never receives the
//!   site's cookies; what cannot be masked is refused to it, never passed.
//!
//! Which participant a request comes from is told by the participant cookie
//! the agent obtains from `{prefix}bind` once it has joined a session, with
//! the single-use bind token its connection got in `joined`.
//!
//! With a Redis store, what is kept per session (documents, credentials) is
//! written behind to Redis ([`mirror`]): a node that takes over the shared
//! sessions loads it ([`Driver::take_over`]) and serves followers the same.

pub mod documents;
pub mod json;
pub mod mirror;
pub mod refusal;
#[cfg(test)]
mod takeover;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use tracing::info;

use self::documents::{Document, Documents, Recorder};
use self::mirror::{CredentialsRecord, Mirror};
use self::refusal::{BIND_MAX_BYTES, Refusal, Rule};
use crate::body::{self, Body};
use crate::config::{DriverLimits, Privacy, Store};
use crate::hub::Hub;
use crate::hub::store::StoreError;
use crate::lock::lock;
use crate::proxy::error::{Error, Unmaskable};
use crate::proxy::policy::{Decision, Follower, Policy};
use crate::proxy::stage::Stage;
use crate::telemetry;
use crate::web::{self, Ctx, Kind, kind};

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
    Follower {
        session: String,
        participant: String,
    },
}

/// Methods that cannot change the site's state (RFC 9110 9.2.1).
pub fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Removes the participant cookie from `headers` (it is ours, not the
/// site's) and returns its value.
pub fn take_participant_cookie(headers: &mut HeaderMap) -> Option<String> {
    web::take_cookie(headers, PARTICIPANT_COOKIE)
}

/// What the proxy keeps per shared session for its followers.
#[derive(Clone)]
pub struct Driver {
    pub documents: Documents,
    /// Per session: the driver's latest `Cookie` header to the upstream, and
    /// the page its browser was on when it was bound.
    credentials: Arc<Mutex<HashMap<String, Credentials>>>,
    /// Where documents and credentials are written behind (a Redis store).
    mirror: Option<Mirror>,
}

#[derive(Default, Clone, PartialEq)]
struct Credentials {
    cookie: Option<HeaderValue>,
    /// Path and query of the page the driver read before documents were
    /// kept for the session (the page it called from): followers may read it
    /// with the driver's cookies.
    page: Option<String>,
}

impl Driver {
    /// A driver that keeps everything in this process's memory.
    pub fn new(limits: DriverLimits) -> Driver {
        Driver {
            documents: Documents::new(limits),
            credentials: Arc::default(),
            mirror: None,
        }
    }

    /// A driver for the store `[store]` names: with Redis, what it keeps is
    /// written behind to Redis too. Must be made inside the runtime when the
    /// store is Redis; fails only outside one or on a URL the client
    /// refuses (it connects lazily).
    pub fn for_store(limits: DriverLimits, store: &Store) -> Result<Driver, StoreError> {
        let Store::Redis(redis) = store else {
            return Ok(Driver::new(limits));
        };
        let mirror = Mirror::new(&redis.url, &redis.prefix, limits, redis.expire)?;
        let writer = mirror.clone();
        Ok(Driver {
            documents: Documents::new(limits)
                .on_kept(move |session, doc| writer.keep_document(session, doc)),
            credentials: Arc::default(),
            mirror: Some(mirror),
        })
    }

    /// This node now leads the shared sessions: loads every kept document
    /// and credential of the sessions Redis holds any for into memory
    /// (keeping what this node holds already for a session, which is newer),
    /// and writes behind again. Followers waiting for a document look again.
    /// Call it after the hub took over, so the sweep finds their sessions.
    /// Returns how many sessions were loaded; nothing with the in-memory
    /// store.
    pub async fn take_over(&self) -> Result<usize, StoreError> {
        let Some(mirror) = &self.mirror else {
            return Ok(0);
        };
        mirror.lead();
        let loaded = mirror.load().await?;
        let count = loaded.len();
        for session in loaded {
            if let Some(c) = session.credentials {
                let cookie = c.cookie.and_then(|v| HeaderValue::from_bytes(&v).ok());
                lock(&self.credentials)
                    .entry(session.session.clone())
                    .or_insert(Credentials {
                        cookie,
                        page: c.page,
                    });
            }
            self.documents.restore(&session.session, session.documents);
        }
        info!(
            sessions = count,
            "driver: kept documents and credentials loaded from Redis"
        );
        Ok(count)
    }

    /// Another node now leads the shared sessions: forgets every kept
    /// document and credential in memory and stops writing to Redis,
    /// without deleting anything there (the sessions go on, on that node).
    pub fn hand_over(&self) {
        if let Some(mirror) = &self.mirror {
            mirror.hand_over();
        }
        self.documents.clear();
        lock(&self.credentials).clear();
    }

    /// Waits, at most `within`, until what was kept is written to Redis
    /// (before a graceful stop hands the sessions over); whether it is.
    /// True at once with the in-memory store.
    pub async fn flush(&self, within: Duration) -> bool {
        match &self.mirror {
            Some(mirror) => mirror.flush(within).await,
            None => true,
        }
    }

    /// Called when the driver's browser is bound to its session: remembers
    /// its cookies, and the page the bind request comes from (its
    /// `Referer`), which the driver read before anything was kept for the
    /// session, so followers can load it as the customer sees it.
    pub fn record_credentials(&self, session: &str, headers: &HeaderMap) {
        let page = headers
            .get(header::REFERER)
            .and_then(|v| v.to_str().ok())
            .and_then(|r| r.parse::<http::Uri>().ok())
            .and_then(|u| u.path_and_query().map(|p| p.as_str().to_string()));
        let cookie = join_cookies(headers);
        self.change_credentials(session, |c| {
            c.cookie = cookie;
            c.page = page;
        });
    }

    /// Remembers the cookies the driver sends upstream.
    fn remember_cookies(&self, session: &str, headers: &HeaderMap) {
        let cookie = join_cookies(headers);
        self.change_credentials(session, |c| c.cookie = cookie);
    }

    /// Applies `change` to a session's credentials; a change that changed
    /// something is written behind (under the lock, so Redis gets changes
    /// in the order they were made here).
    fn change_credentials(&self, session: &str, change: impl FnOnce(&mut Credentials)) {
        let mut all = lock(&self.credentials);
        let credentials = all.entry(session.to_string()).or_default();
        let before = credentials.clone();
        change(credentials);
        if let Some(mirror) = &self.mirror
            && *credentials != before
        {
            mirror.keep_credentials(
                session,
                CredentialsRecord {
                    cookie: credentials.cookie.as_ref().map(|v| v.as_bytes().to_vec()),
                    page: credentials.page.clone(),
                },
            );
        }
    }

    /// Replaces the follower's cookies with the driver's.
    pub fn apply_credentials(&self, session: &str, headers: &mut HeaderMap) {
        headers.remove(header::COOKIE);
        headers.remove(header::AUTHORIZATION);
        if let Some(cookie) = lock(&self.credentials)
            .get(session)
            .and_then(|c| c.cookie.clone())
        {
            headers.insert(header::COOKIE, cookie);
        }
    }

    /// Whether `target` is the page the driver was on when it was bound.
    fn is_drivers_page(&self, session: &str, target: &str) -> bool {
        lock(&self.credentials)
            .get(session)
            .and_then(|c| c.page.as_deref())
            == Some(target)
    }

    /// Drops everything kept for a session that ended, here and in Redis.
    pub fn end_session(&self, session: &str) {
        self.forget_session(session);
        if let Some(mirror) = &self.mirror {
            mirror.end(session);
        }
    }

    /// Drops what this node keeps in memory for a session; Redis is left
    /// to the hub's end of the session (a request naming a session this
    /// node does not know may come from anyone, with any name).
    fn forget_session(&self, session: &str) {
        self.documents.drop_session(session);
        lock(&self.credentials).remove(session);
    }

    /// Drops what this node keeps for sessions `alive` says have ended (a
    /// document that finished arriving after the end). Redis is left to the
    /// hub's end of the session: nothing kept after it is written there,
    /// and a session this node loaded but its hub does not hold is not
    /// this node's to delete.
    pub fn retain(&self, mut alive: impl FnMut(&str) -> bool) {
        self.documents.retain(&mut alive);
        lock(&self.credentials).retain(|s, _| alive(s));
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
            // The session ended: what this node kept for it goes too. A
            // wrong secret for a live session changes nothing, and Redis's
            // copies go only when the hub ends the session.
            if self.hub.session(session).is_none() {
                self.driver.forget_session(session);
            }
            return Standing::Alone;
        };
        let session = session.to_string();
        if view.is_follower(&participant.id) {
            Standing::Follower {
                session,
                participant: participant.id,
            }
        } else {
            Standing::Driver { session }
        }
    }
}

#[derive(Deserialize)]
struct BindRequest {
    session: String,
    /// The single-use token the hub gave this participant's connection in
    /// `joined`.
    token: String,
}

/// Whether the body is declared JSON: a form (`text/plain`,
/// `application/x-www-form-urlencoded`, `multipart/form-data`) cannot be
/// sent with this type by another site's page without the browser asking us
/// first (CORS), and we never agree.
fn is_json(headers: &HeaderMap) -> bool {
    web::media_type(headers).is_some_and(|(essence, _)| essence == "application/json")
}

/// `POST {prefix}bind` with `{"session":…,"token":…}`: sets the participant
/// cookie, so the proxy knows which participant this browser's requests come
/// from. An empty body clears it.
///
/// Binding says whose pages and cookies a browser's requests stand for, so
/// only the page that holds the participant's connection may do it: the
/// request comes from our own origin (checked for every state-changing route
/// in `server::route`), is JSON, and carries the bind token the hub gave
/// that connection, good once and for [`crate::hub::membership::BIND_TOKEN_LIFETIME`].
/// A session id and resume secret alone bind nothing.
pub async fn bind(
    sessions: &Sessions,
    req: Request<Incoming>,
    ctx: Ctx,
    public_origins: &[String],
) -> Response<Body> {
    try_bind(sessions, req, ctx, public_origins)
        .await
        .unwrap_or_else(Refusal::into_response)
}

async fn try_bind(
    sessions: &Sessions,
    req: Request<Incoming>,
    ctx: Ctx,
    public_origins: &[String],
) -> Result<Response<Body>, Refusal> {
    if req.method() != Method::POST {
        return Err(Refusal::BindMethod);
    }
    if !is_json(req.headers()) {
        return Err(Refusal::BindNotJson {
            remote: ctx.remote,
            content_type: req.headers().get(header::CONTENT_TYPE).cloned(),
        });
    }
    let (parts, body) = req.into_parts();
    // The same rule as the operator cookie's, for TLS ended in front of us.
    let https = web::browser_on_https(&ctx, web::Named::Origin(&parts.headers), public_origins);
    let bytes = Limited::new(body, BIND_MAX_BYTES)
        .collect()
        .await
        .map_err(|_| Refusal::BindTooLarge)?
        .to_bytes();
    let secure = if https { "; Secure" } else { "" };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        let clear =
            format!("{PARTICIPANT_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}");
        return Ok(with_cookie(r#"{"bound":false}"#.into(), clear));
    }
    let bind = serde_json::from_slice::<BindRequest>(&bytes).map_err(|_| Refusal::BindMalformed)?;
    let Some((view, participant, resume)) = sessions.hub.redeem_bind(&bind.session, &bind.token)
    else {
        return Err(Refusal::BindToken {
            remote: ctx.remote,
            session: bind.session,
        });
    };
    let driving = !view.is_follower(&participant.id);
    if driving {
        // The bind request carries the site's cookies too: followers can load
        // the customer's current page with them before it navigates again.
        let mut headers = parts.headers;
        take_participant_cookie(&mut headers);
        sessions.driver.record_credentials(&bind.session, &headers);
    }
    info!(target: "audit", event = "bind", session = %bind.session, participant = %participant.id, user = participant.user.as_deref().unwrap_or(""), driving, "browser bound to session");
    let cookie = format!(
        "{PARTICIPANT_COOKIE}={}.{resume}; Path=/; HttpOnly; SameSite=Strict{secure}",
        bind.session
    );
    Ok(with_cookie(
        serde_json::json!({ "bound": true, "driver": driving }).to_string(),
        cookie,
    ))
}

/// `bind`'s answer: `text`, and the participant cookie set or cleared.
fn with_cookie(text: String, cookie: String) -> Response<Body> {
    let mut r = web::json(StatusCode::OK, text);
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::try_from(cookie)
            .expect("the cookie is made of a live session's id and secret"),
    );
    r
}

/// The proxy's phases ask the shared sessions through this.
impl Policy for Sessions {
    fn unbound(&self, headers: &HeaderMap) -> bool {
        // The binding is `SameSite=Strict`: a navigation from another site
        // comes without it even when the browser is bound, and a request
        // without `Sec-Fetch-Site` may come from anything.
        let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
        web::cookie(headers, PARTICIPANT_COOKIE).is_none()
            && matches!(site, Some("same-origin" | "same-site" | "none"))
    }

    fn before_upstream<'a>(
        &'a self,
        parts: &'a mut http::request::Parts,
        privacy: &'a Privacy,
    ) -> BoxFuture<'a, Decision> {
        Box::pin(async move {
            let standing = self.standing(&mut parts.headers);
            self.driver.before_upstream(&standing, parts, privacy).await
        })
    }

    fn recorder(
        &self,
        session: String,
        target: String,
        status: StatusCode,
        headers: &HeaderMap,
        decoded: bool,
    ) -> Box<dyn Stage> {
        Box::new(
            self.driver
                .recorder(session, target, status, headers, decoded),
        )
    }

    fn mask_json<'a>(
        &'a self,
        headers: &'a mut HeaderMap,
        status: StatusCode,
        body: Body,
        privacy: &'a Privacy,
    ) -> BoxFuture<'a, Result<Body, Unmaskable>> {
        Box::pin(mask_json_response(headers, status, body, privacy))
    }
}

/// Whether the browser is loading a document (a page or a frame), as opposed
/// to a subresource or a scripted request.
pub fn is_navigation(headers: &HeaderMap) -> bool {
    let mode = headers.get("sec-fetch-mode").and_then(|v| v.to_str().ok());
    let dest = headers.get("sec-fetch-dest").and_then(|v| v.to_str().ok());
    mode == Some("navigate") || matches!(dest, Some("document" | "iframe" | "frame"))
}

/// Whether a script of the page made the request (fetch, XHR): those reads
/// are kept from the driver and served to followers like documents.
pub fn is_scripted(headers: &HeaderMap) -> bool {
    headers.get("sec-fetch-dest").is_some_and(|v| v == "empty")
}

/// Headers that ask the site to treat a request as another method.
const METHOD_OVERRIDES: [&str; 3] = [
    "x-http-method-override",
    "x-method-override",
    "x-http-method",
];

impl Driver {
    /// The request phase for shared sessions. Runs after the participant
    /// cookie was taken out and before the request goes upstream; may wait
    /// (bounded) for the driver's response to the same read.
    pub async fn before_upstream(
        &self,
        standing: &Standing,
        parts: &mut http::request::Parts,
        privacy: &Privacy,
    ) -> Decision {
        match standing {
            Standing::Alone => Decision::Forward {
                record: None,
                follower: None,
            },
            Standing::Driver { session } => {
                self.remember_cookies(session, &parts.headers);
                // A page reached by POST is kept too: followers load its URL
                // with a GET and must see what the customer saw.
                let keep = is_navigation(&parts.headers)
                    || (parts.method == Method::GET && is_scripted(&parts.headers));
                Decision::Forward {
                    record: keep.then(|| session.clone()),
                    follower: None,
                }
            }
            Standing::Follower {
                session,
                participant,
            } => {
                if let Some(rule) = broken_rule(parts) {
                    let refusal = Refusal::Follower {
                        session: session.clone(),
                        participant: participant.clone(),
                        method: parts.method.clone(),
                        uri: parts.uri.clone(),
                        rule,
                    };
                    return Decision::Answer(refusal.into_response());
                }
                // Served whole or not at all: a part of a document cannot be
                // masked.
                parts.headers.remove(header::RANGE);
                parts.headers.remove(header::IF_RANGE);
                let target = parts
                    .uri
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_string();
                let as_driver_read = parts.method == Method::GET
                    && (is_navigation(&parts.headers) || is_scripted(&parts.headers));
                if as_driver_read {
                    let kept = match self.documents.lookup(session, &target) {
                        Some(doc) => Some(doc),
                        // The page the driver called from was never kept: it
                        // is read again with the driver's cookies.
                        None if is_navigation(&parts.headers)
                            && self.is_drivers_page(session, &target) =>
                        {
                            None
                        }
                        None => self.documents.wait_for(session, &target).await,
                    };
                    if let Some(doc) = kept {
                        return Decision::Answer(match serve_kept(doc, privacy) {
                            Ok(response) => {
                                metrics::counter!(telemetry::DOCUMENTS_SERVED).increment(1);
                                response
                            }
                            Err(reason) => Error::Unmaskable {
                                session: session.clone(),
                                target,
                                reason,
                            }
                            .into_response(),
                        });
                    }
                }
                let as_driver =
                    is_navigation(&parts.headers) && self.is_drivers_page(session, &target);
                if as_driver {
                    self.apply_credentials(session, &mut parts.headers);
                } else {
                    // A read the driver never made: not as the customer.
                    parts.headers.remove(header::COOKIE);
                    parts.headers.remove(header::AUTHORIZATION);
                }
                Decision::Forward {
                    record: None,
                    follower: Some(Follower {
                        session: session.clone(),
                        as_driver,
                    }),
                }
            }
        }
    }

    /// The body stage that keeps a copy of the driver's response for
    /// followers. `decoded`: it sits after the decoders (HTML, kept as the
    /// driver's browser read it after the rewrite); otherwise it keeps the
    /// upstream's bytes and their `Content-Encoding`.
    pub fn recorder(
        &self,
        session: String,
        target: String,
        status: StatusCode,
        headers: &HeaderMap,
        decoded: bool,
    ) -> Recorder {
        let mut kept = HeaderMap::new();
        let encoding = (!decoded).then_some(header::CONTENT_ENCODING);
        for name in [
            header::CONTENT_TYPE,
            header::CONTENT_LANGUAGE,
            header::CONTENT_SECURITY_POLICY,
        ]
        .into_iter()
        .chain(encoding)
        {
            for value in headers.get_all(&name) {
                kept.append(name.clone(), value.clone());
            }
        }
        Recorder::new(self.documents.clone(), session, target, status, kept)
    }
}

/// The rule a follower's request would break if it reached the site, if
/// any: such a request is answered here ([`Refusal::Follower`]).
fn broken_rule(parts: &http::request::Parts) -> Option<Rule> {
    let headers = &parts.headers;
    if !is_safe(&parts.method) {
        Some(Rule::Method)
    } else if let Some(name) = METHOD_OVERRIDES.iter().find(|n| headers.contains_key(**n)) {
        Some(Rule::MethodOverride(name))
    } else if headers.contains_key(header::UPGRADE) {
        Some(Rule::WebSocket)
    } else if headers
        .get_all(header::ACCEPT)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.contains("text/event-stream")))
    {
        Some(Rule::EventStream)
    } else {
        None
    }
}

/// What the driver received for a read, prepared for a follower: decoded,
/// masked (HTML fields, JSON keys), never a cookie of the site.
fn serve_kept(doc: Document, privacy: &Privacy) -> Result<Response<Body>, Unmaskable> {
    // HTML was kept decoded; JSON as the upstream sent it.
    let body = match doc.headers.contains_key(header::CONTENT_ENCODING) {
        true => json::decode(&doc.headers, &doc.body, privacy.json_max_bytes)?,
        false => doc.body.to_vec(),
    };
    let masked = match kind(&doc.headers) {
        (Kind::Html, declared) => crate::proxy::mask::mask_document(
            &body,
            declared.unwrap_or(encoding_rs::UTF_8),
            &privacy.mask,
        )
        .ok_or(Unmaskable::Html)?,
        (Kind::Json, _) => json::mask(&body, &privacy.json_keys, privacy.json_max_bytes)?,
        _ => return Err(Unmaskable::Type),
    };
    let mut response = Response::builder().status(doc.status);
    for (name, value) in doc
        .headers
        .iter()
        .filter(|(n, _)| *n != header::CONTENT_ENCODING)
    {
        response = response.header(name, value);
    }
    Ok(response
        .header(header::CACHE_CONTROL, "no-store")
        .header("x-cobrowse-document", "driver")
        .body(body::full(masked))
        .expect("parts copied from a valid response"))
}

/// A JSON response from the upstream on its way to a follower: read whole
/// (bounded), decoded, its masked keys blanked. Headers are fixed for the
/// new body.
pub async fn mask_json_response(
    headers: &mut HeaderMap,
    status: StatusCode,
    incoming: Body,
    privacy: &Privacy,
) -> Result<Body, Unmaskable> {
    if status == StatusCode::PARTIAL_CONTENT {
        return Err(Unmaskable::Partial);
    }
    let mut incoming = incoming;
    let mut raw = Vec::new();
    while let Some(frame) = incoming.frame().await {
        let Ok(data) = frame
            .map_err(|_| ())
            .and_then(|f| f.into_data().or(Ok(bytes::Bytes::new())))
        else {
            return Err(Unmaskable::Upstream);
        };
        raw.extend_from_slice(&data);
        if raw.len() > privacy.json_max_bytes {
            return Err(Unmaskable::TooLarge);
        }
    }
    let body = json::decode(headers, &raw, privacy.json_max_bytes)?;
    let masked = json::mask(&body, &privacy.json_keys, privacy.json_max_bytes)?;
    for name in [
        header::CONTENT_ENCODING,
        header::CONTENT_LENGTH,
        header::ACCEPT_RANGES,
        header::ETAG,
    ] {
        headers.remove(name);
    }
    Ok(body::full(masked))
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
        let hub = Hub::new(std::sync::Arc::new(config)).unwrap();
        let d = Driver::new(limits());
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
        let d = Driver::new(limits());
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

    pub(super) fn request(method: Method, target: &str, navigate: bool) -> http::request::Parts {
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

    pub(super) fn limits() -> DriverLimits {
        DriverLimits {
            documents_per_session: 4,
            bytes_per_session: 1 << 20,
            max_age: std::time::Duration::from_secs(60),
            follower_wait: std::time::Duration::from_millis(300),
        }
    }

    pub(super) fn privacy(mask: &[&str]) -> Privacy {
        Privacy {
            mask: mask.iter().map(|s| s.to_string()).collect(),
            ..Privacy::default()
        }
    }

    /// Keeps `body` as the driver's response to `target`, as the proxy's
    /// body phase would.
    pub(super) fn keep(
        d: &Driver,
        target: &str,
        content_type: &'static str,
        extra: Option<(header::HeaderName, &'static str)>,
        body: &[u8],
    ) {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(header::SET_COOKIE, HeaderValue::from_static("sid=fresh"));
        if let Some((name, value)) = extra {
            headers.insert(name, HeaderValue::from_static(value));
        }
        let decoded = content_type.starts_with("text/html");
        let mut recorder = d.recorder("s".into(), target.into(), StatusCode::OK, &headers, decoded);
        let mut out = Vec::new();
        crate::proxy::stage::Stage::push(&mut recorder, body, &mut out).unwrap();
        crate::proxy::stage::Stage::finish(&mut recorder, &mut out).unwrap();
    }

    pub(super) async fn text(response: Response<Body>) -> String {
        use http_body_util::BodyExt;
        String::from_utf8(
            response
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap()
    }

    fn scripted(target: &str) -> http::request::Parts {
        let mut parts = request(Method::GET, target, false);
        parts
            .headers
            .insert("sec-fetch-dest", HeaderValue::from_static("empty"));
        parts
    }

    #[tokio::test]
    async fn followers_get_the_drivers_document_masked_and_never_post() {
        let d = Driver::new(limits());
        let driver = Standing::Driver {
            session: "s".into(),
        };
        let follower = Standing::Follower {
            session: "s".into(),
            participant: "p2".into(),
        };

        let mut parts = request(Method::GET, "/account?tab=1", true);
        parts
            .headers
            .insert(header::COOKIE, HeaderValue::from_static("sid=customer"));
        let Decision::Forward {
            record: Some(_),
            follower: None,
        } = d.before_upstream(&driver, &mut parts, &privacy(&[])).await
        else {
            panic!("driver navigation must be recorded")
        };
        keep(
            &d,
            "/account?tab=1",
            "text/html",
            None,
            br#"<p>Balance 12</p><input type=password value="hunter2"><input id=pin value="9999">"#,
        );

        let mut parts = request(Method::GET, "/account?tab=1", true);
        let Decision::Answer(response) = d
            .before_upstream(&follower, &mut parts, &privacy(&["#pin"]))
            .await
        else {
            panic!("follower navigation must be served the kept document")
        };
        assert!(
            response.headers().get(header::SET_COOKIE).is_none(),
            "the site's cookies are not kept for followers"
        );
        let text = text(response).await;
        assert!(text.contains("Balance 12"), "{text}");
        assert!(
            !text.contains("hunter2") && !text.contains("9999"),
            "masked values leaked: {text}"
        );

        // A subresource the driver's copy does not hold: made without any
        // credentials, never the driver's.
        let mut parts = request(Method::GET, "/img.png", false);
        parts.headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic b3A6b3A="),
        );
        let Decision::Forward {
            record: None,
            follower: Some(f),
        } = d
            .before_upstream(&follower, &mut parts, &privacy(&[]))
            .await
        else {
            panic!()
        };
        assert!(!f.as_driver);
        assert!(
            parts.headers.get(header::COOKIE).is_none()
                && parts.headers.get(header::AUTHORIZATION).is_none(),
            "{:?}",
            parts.headers
        );

        let mut parts = request(Method::POST, "/order", true);
        let Decision::Answer(response) = d
            .before_upstream(&follower, &mut parts, &privacy(&[]))
            .await
        else {
            panic!("follower POST must be refused")
        };
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn a_read_the_driver_never_made_goes_without_the_customers_credentials() {
        let d = Driver::new(limits());
        let follower = Standing::Follower {
            session: "s".into(),
            participant: "p".into(),
        };
        let mut bound = HeaderMap::new();
        bound.insert(header::COOKIE, HeaderValue::from_static("sid=customer"));
        bound.insert(
            header::REFERER,
            HeaderValue::from_static("http://proxy.test:8080/account?tab=2"),
        );
        d.record_credentials("s", &bound);

        // The page the driver was on when bound: read as the customer.
        let mut parts = request(Method::GET, "/account?tab=2", true);
        let Decision::Forward {
            follower: Some(f), ..
        } = d
            .before_upstream(&follower, &mut parts, &privacy(&[]))
            .await
        else {
            panic!()
        };
        assert!(f.as_driver);
        assert_eq!(parts.headers.get(header::COOKIE).unwrap(), "sid=customer");

        // A GET with a side effect the driver never made, as a navigation
        // and as a script's read: after the bounded wait, without cookies.
        for mut parts in [
            request(Method::GET, "/transfer?to=mallory", true),
            scripted("/transfer?to=mallory"),
        ] {
            let started = std::time::Instant::now();
            let Decision::Forward {
                follower: Some(f), ..
            } = d
                .before_upstream(&follower, &mut parts, &privacy(&[]))
                .await
            else {
                panic!()
            };
            assert!(!f.as_driver);
            assert!(
                parts.headers.get(header::COOKIE).is_none(),
                "{:?}",
                parts.headers
            );
            assert!(
                started.elapsed() >= std::time::Duration::from_millis(250),
                "waited for the driver first"
            );
        }
    }

    #[tokio::test]
    async fn followers_cannot_reach_the_site_through_other_doors() {
        let d = Driver::new(limits());
        let follower = Standing::Follower {
            session: "s".into(),
            participant: "p".into(),
        };
        for (name, value) in [
            ("x-http-method-override", "DELETE"),
            ("x-method-override", "PUT"),
            ("x-http-method", "PATCH"),
            ("upgrade", "websocket"),
            ("accept", "text/event-stream"),
        ] {
            let mut parts = request(Method::GET, "/account", false);
            parts.headers.insert(
                header::HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
            let Decision::Answer(response) = d
                .before_upstream(&follower, &mut parts, &privacy(&[]))
                .await
            else {
                panic!("{name} must be refused")
            };
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{name}");
            assert_eq!(response.headers()["x-cobrowse-refused"], "one-driver");
        }
        // The driver's own are its business.
        let mut parts = request(Method::GET, "/ws", false);
        parts
            .headers
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(matches!(
            d.before_upstream(
                &Standing::Driver {
                    session: "s".into()
                },
                &mut parts,
                &privacy(&[])
            )
            .await,
            Decision::Forward { .. }
        ));
        // A follower's range is dropped: documents are read whole.
        let mut parts = request(Method::GET, "/big", false);
        parts
            .headers
            .insert(header::RANGE, HeaderValue::from_static("bytes=0-"));
        d.before_upstream(&follower, &mut parts, &privacy(&[]))
            .await;
        assert!(parts.headers.get(header::RANGE).is_none());
    }

    #[tokio::test]
    async fn a_scripts_json_is_served_from_the_drivers_copy_with_masked_keys_blanked() {
        let d = Driver::new(limits());
        let follower = Standing::Follower {
            session: "s".into(),
            participant: "p".into(),
        };
        let json = br#"{"holder":"Pat","cardNumber":"4111111111111111","cvc":"123","serial":7}"#;
        let mut gzip = crate::proxy::stream::Pipeline::default().then(
            crate::proxy::compress::Codec::encoder(crate::proxy::compress::Coding::Gzip),
        );
        let mut compressed = gzip.push(json).unwrap();
        compressed.extend(gzip.finish().unwrap());

        // The follower asks first; the driver's answer arrives meanwhile.
        let later = d.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            keep(
                &later,
                "/api/account",
                "application/json",
                Some((header::CONTENT_ENCODING, "gzip")),
                &compressed,
            );
        });
        let mut parts = scripted("/api/account");
        let Decision::Answer(response) = d
            .before_upstream(&follower, &mut parts, &privacy(&[]))
            .await
        else {
            panic!("served the driver's copy")
        };
        assert!(response.headers().get(header::CONTENT_ENCODING).is_none());
        assert_eq!(
            text(response).await,
            r#"{"holder":"Pat","cardNumber":"","cvc":"","serial":7}"#
        );

        // What cannot be masked is refused, not passed.
        keep(
            &d,
            "/api/broken",
            "application/json",
            None,
            br#"{"cardNumber":"4111"#,
        );
        let Decision::Answer(response) = d
            .before_upstream(&follower, &mut scripted("/api/broken"), &privacy(&[]))
            .await
        else {
            panic!()
        };
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(response.headers()["x-cobrowse-refused"], "unmaskable");
        assert!(!text(response).await.contains("4111"));
    }
}
