//! The WebSocket handshake at `{prefix}ws`: checks the door, Origin, role
//! and the operator cookie, answers `101`, then hands the upgraded
//! connection to [`super::connection::serve`].
//!
//! Customers connect on the site's door from the site's origin; operators
//! on the console's door from the console's origin, and nowhere else, so a
//! site script in an operator's browser (whose cookie the browser would
//! send, cookies ignoring ports) cannot open the hub as that operator.

use std::sync::Arc;

use futures_util::StreamExt;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role as WsRole, WebSocketConfig};
use tracing::{Instrument, debug, info, warn};

use super::protocol::Role;
use super::state::Shared;
use crate::body::{self, Body};
use crate::server::{Ctx, Door};

fn plain(status: StatusCode, message: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(body::full(format!("{message}\n")))
        .expect("static response parts are valid")
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Whether the handshake comes from a page of our own origin. With
/// `public` origins configured (a load balancer in front terminates TLS, so
/// the request's own scheme is not the one the browser used) the `Origin`
/// must be one of them; otherwise it must be the scheme we were reached with
/// and the `Host` the client asked for.
pub fn same_origin(headers: &HeaderMap, host: Option<&str>, ctx: &Ctx, public: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    if !public.is_empty() {
        // `null` and other opaque origins do not parse, and match nothing.
        return url::Url::parse(origin.trim())
            .is_ok_and(|u| public.contains(&u.origin().ascii_serialization()));
    }
    let Some(host) = host else { return false };
    let ours = format!("{}://{}", ctx.scheme(), host);
    let default_port = if ctx.tls { ":443" } else { ":80" };
    let normal = |s: &str| s.trim_end_matches(default_port).to_ascii_lowercase();
    normal(origin) == normal(&ours)
}

/// Why a request that may change state (under the prefix: `bind`, `login`,
/// `logout`, any method but GET, HEAD and OPTIONS) does not come from a page
/// of our own origin, or `None` when it does. Browsers send `Origin` with
/// every such request, forms and scripts alike, so a missing one is refused
/// as a foreign one is (a page on another site posting a form, an
/// `enctype=text/plain` form carrying JSON included). Where the browser also
/// says `Sec-Fetch-Site`, it must be `same-origin`.
pub fn foreign_page<B>(req: &Request<B>, ctx: &Ctx, public: &[String]) -> Option<&'static str> {
    let headers = req.headers();
    if !headers.contains_key(header::ORIGIN) {
        return Some("the request carries no Origin");
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or(req.uri().authority().map(|a| a.as_str()));
    if !same_origin(headers, host, ctx, public) {
        return Some("the Origin is not this proxy's own");
    }
    match headers.get("sec-fetch-site").map(|v| v.as_bytes()) {
        None | Some(b"same-origin") => None,
        Some(_) => Some("the browser says the request comes from another site (Sec-Fetch-Site)"),
    }
}

/// Whether the browser reached us over HTTPS: our own TLS, or a request
/// from one of the configured public `https://` origins (TLS ended in
/// front of us). Cookies set for such a browser get `Secure`.
pub fn browser_over_https(headers: &HeaderMap, ctx: &Ctx, public: &[String]) -> bool {
    ctx.tls
        || headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .and_then(|o| url::Url::parse(o.trim()).ok())
            .is_some_and(|u| {
                u.scheme() == "https" && public.contains(&u.origin().ascii_serialization())
            })
}

/// Bytes of the read buffer each socket allocates up front. Messages
/// larger than it grow it for as long as they take; an idle socket costs
/// only this.
const READ_BUFFER: usize = 4 * 1024;

/// The socket's own bounds. Messages over `max_message_bytes` are refused
/// with `too_large` and the connection stays; a frame or message over four
/// times that ends the connection before it is buffered, which bounds what
/// one socket can make us hold while reading.
fn ws_config(max_message_bytes: usize) -> WebSocketConfig {
    let hard_limit = max_message_bytes.saturating_mul(4);
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(hard_limit))
        .max_frame_size(Some(hard_limit))
}

fn role_of(query: Option<&str>) -> Option<Role> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "role")
        .and_then(|(_, v)| match &*v {
            "customer" => Some(Role::Customer),
            "operator" => Some(Role::Operator),
            _ => None,
        })
}

pub fn upgrade(shared: &Arc<Shared>, mut req: Request<Incoming>, ctx: Ctx) -> Response<Body> {
    let headers = req.headers();
    if req.method() != Method::GET
        || !has_token(headers, header::UPGRADE, "websocket")
        || !has_token(headers, header::CONNECTION, "upgrade")
        || headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_none_or(|v| v != "13")
    {
        return plain(
            StatusCode::BAD_REQUEST,
            "this is the hub's WebSocket: open it with a WebSocket (version 13) GET",
        );
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return plain(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key");
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or(req.uri().authority().map(|a| a.as_str()));
    let Some(role) = role_of(req.uri().query()) else {
        return plain(
            StatusCode::BAD_REQUEST,
            "say who you are: `?role=customer` or `?role=operator`",
        );
    };
    let config = &shared.config;
    let (door_ok, origins) = match role {
        Role::Customer => (ctx.door == Door::Site, config.public_origins.as_slice()),
        Role::Operator => (
            ctx.door == Door::Console,
            config.console.public_origin.as_slice(),
        ),
    };
    if !door_ok {
        info!(remote = %ctx.remote, role = role.as_str(), door = ?ctx.door, "WebSocket refused: wrong door for the role");
        metrics::counter!(crate::telemetry::HUB_OPERATOR_REFUSALS, "reason" => "door").increment(1);
        return plain(
            StatusCode::FORBIDDEN,
            match role {
                Role::Operator => "operators connect from the operator console's own origin",
                Role::Customer => "customers connect on the site's origin, not the console's",
            },
        );
    }
    if !same_origin(headers, host, &ctx, origins) {
        info!(remote = %ctx.remote, origin = ?headers.get(header::ORIGIN), host, "WebSocket refused: foreign origin");
        return plain(StatusCode::FORBIDDEN, "the Origin is not this proxy's own");
    }
    let account = shared.logins.account(headers);
    if role == Role::Operator && account.is_none() {
        return plain(StatusCode::UNAUTHORIZED, "operators log in first");
    }
    let account = if role == Role::Operator {
        account
    } else {
        None
    };
    let max = shared.config.hub.max_sockets_per_address;
    // Held for as long as the connection lives.
    let Some(slot) = shared.sockets.take(ctx.remote.ip(), max) else {
        warn!(remote = %ctx.remote, max, "WebSocket refused: its address holds hub.max_sockets_per_address sockets");
        metrics::counter!(crate::telemetry::HUB_SOCKETS_REFUSED, "reason" => "per_address")
            .increment(1);
        return plain(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "too many WebSockets open from this address (hub.max_sockets_per_address = {max}); close one and try again"
            ),
        );
    };
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    let shared = shared.clone();
    let ws_config = ws_config(shared.config.hub.max_message_bytes);
    // Every line about this connection carries its id; the handshake's own
    // request id is on the line that answered it.
    let span = tracing::info_span!(parent: None, "connection", id = %crate::logging::new_id(), role = role.as_str(), remote = %ctx.remote);
    let task = async move {
        let _slot = slot;
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    WsRole::Server,
                    Some(ws_config),
                )
                .await;
                let (sink, stream) = ws.split();
                let peer = super::connection::Peer {
                    remote: ctx.remote.ip(),
                    role,
                    account,
                };
                super::connection::serve(shared, sink, stream, peer).await;
            }
            Err(e) => debug!(error = %e, "WebSocket upgrade failed"),
        }
    };
    tokio::spawn(task.instrument(span));
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(body::empty())
        .expect("static response parts are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(tls: bool) -> Ctx {
        Ctx {
            remote: "127.0.0.1:1".parse().unwrap(),
            tls,
            door: Door::Site,
        }
    }

    #[test]
    fn origin_must_be_our_own() {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, "http://proxy.example:8080".parse().unwrap());
        assert!(same_origin(
            &h,
            Some("proxy.example:8080"),
            &ctx(false),
            &[]
        ));
        assert!(!same_origin(
            &h,
            Some("proxy.example:8080"),
            &ctx(true),
            &[]
        ));
        assert!(!same_origin(
            &h,
            Some("evil.example:8080"),
            &ctx(false),
            &[]
        ));
        assert!(!same_origin(&h, None, &ctx(false), &[]));
        h.insert(header::ORIGIN, "https://Proxy.Example".parse().unwrap());
        assert!(same_origin(&h, Some("proxy.example:443"), &ctx(true), &[]));
        assert!(!same_origin(
            &HeaderMap::new(),
            Some("proxy.example"),
            &ctx(false),
            &[]
        ));
    }

    #[test]
    fn public_origins_replace_our_own() {
        let public = [
            "https://support.example.com".to_string(),
            "http://b.test:8080".to_string(),
        ];
        let check = |origin: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ORIGIN, origin.parse().unwrap());
            same_origin(&h, Some("support.example.com"), &ctx(false), &public)
        };
        assert!(check("https://support.example.com"));
        assert!(check("https://Support.Example.com:443"));
        assert!(check("http://b.test:8080"));
        // What the request itself looks like behind the load balancer.
        assert!(!check("http://support.example.com"));
        assert!(!check("https://support.example.com:8443"));
        assert!(!check("https://evil.example"));
        assert!(!check("null"));
        assert!(!same_origin(
            &HeaderMap::new(),
            Some("support.example.com"),
            &ctx(false),
            &public
        ));
        let mut h = HeaderMap::new();
        h.insert(
            header::ORIGIN,
            "https://support.example.com".parse().unwrap(),
        );
        assert!(browser_over_https(&h, &ctx(false), &public));
        assert!(!browser_over_https(&h, &ctx(false), &[]));
        assert!(browser_over_https(&HeaderMap::new(), &ctx(true), &[]));
    }

    #[test]
    fn state_changes_come_from_our_own_pages_only() {
        let check = |headers: &[(&str, &str)]| {
            let mut b = Request::builder()
                .method(Method::POST)
                .uri("/__cobrowse/bind")
                .header(header::HOST, "proxy.example:8080");
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            foreign_page(&b.body(()).unwrap(), &ctx(false), &[])
        };
        assert_eq!(check(&[("origin", "http://proxy.example:8080")]), None);
        assert_eq!(
            check(&[
                ("origin", "http://proxy.example:8080"),
                ("sec-fetch-site", "same-origin")
            ]),
            None
        );
        assert!(check(&[]).is_some(), "no Origin");
        assert!(check(&[("origin", "null")]).is_some());
        assert!(check(&[("origin", "http://evil.example")]).is_some());
        assert!(check(&[("origin", "http://proxy.example:8081")]).is_some());
        for site in ["same-site", "cross-site", "none"] {
            assert!(
                check(&[
                    ("origin", "http://proxy.example:8080"),
                    ("sec-fetch-site", site)
                ])
                .is_some(),
                "{site}"
            );
        }
    }

    #[test]
    fn role_comes_from_the_query() {
        assert_eq!(role_of(Some("role=operator")), Some(Role::Operator));
        assert_eq!(role_of(Some("x=1&role=customer")), Some(Role::Customer));
        assert_eq!(role_of(Some("role=admin")), None);
        assert_eq!(role_of(None), None);
    }
}
