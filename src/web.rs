//! What every layer knows about HTTP, written once: the connection a request
//! came on ([`Ctx`], [`Door`]), the request's host and origin rules, header
//! tokens and cookies, the kind and charset of a body, and the responses we
//! answer with ourselves (plain text, JSON, a readable page).
//!
//! A leaf: it imports nothing of the project's but [`crate::body`], so the
//! proxy, the hub, the driver and the server all use it without importing
//! each other.

use bytes::Bytes;
use encoding_rs::Encoding;
use http::header::{self, AsHeaderName, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use std::net::SocketAddr;

use crate::body::{self, Body};

/// Which listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// The proxied site's origin: pages, the agent, the customer's hub link.
    Site,
    /// The operator console's own origin: the console, login, operators'
    /// hub links.
    Console,
}

/// What a handler knows about the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    pub remote: SocketAddr,
    /// The client reached us over TLS (so our own origin is https).
    pub tls: bool,
    pub door: Door,
}

impl Ctx {
    pub fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }
}

/// The host the client asked for: its `Host` header, or the authority of
/// the request line (HTTP/2's `:authority`).
pub fn host<B>(req: &Request<B>) -> Option<&str> {
    req.headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or(req.uri().authority().map(|a| a.as_str()))
}

/// What the browser told us of the origin it used.
#[derive(Clone, Copy)]
pub enum Named<'a> {
    /// The request's host (page requests: browsers send no `Origin` with a
    /// navigation).
    Host(&'a str),
    /// The request's headers, whose `Origin` counts (state-changing
    /// requests and WebSocket handshakes, which browsers send it with).
    Origin(&'a HeaderMap),
}

/// Whether the browser reached us over HTTPS. The one rule: our own TLS,
/// or, when TLS ended in front of us (a load balancer), what the browser
/// `named` is one of the configured `public` `https://` origins. Nothing
/// else the client says makes it HTTPS. Links, cookies (`Secure`) and
/// policies follow the answer, so the browser gets no mixed content and
/// keeps its `Secure` cookies.
pub fn browser_on_https(ctx: &Ctx, named: Named<'_>, public: &[String]) -> bool {
    if ctx.tls {
        return true;
    }
    match named {
        Named::Host(host) => {
            let host = host.strip_suffix(":443").unwrap_or(host);
            public.iter().any(|o| {
                o.strip_prefix("https://")
                    .is_some_and(|h| h.eq_ignore_ascii_case(host))
            })
        }
        Named::Origin(headers) => headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .and_then(|o| url::Url::parse(o.trim()).ok())
            .is_some_and(|u| {
                u.scheme() == "https" && public.contains(&u.origin().ascii_serialization())
            }),
    }
}

/// Whether the request comes from a page of our own origin. With `public`
/// origins configured (a load balancer in front terminates TLS, so the
/// request's own scheme is not the one the browser used) the `Origin` must
/// be one of them; otherwise it must be the scheme we were reached with and
/// the `Host` the client asked for.
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

/// Why a request does not come from a page of our own origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Foreign {
    NoOrigin,
    OtherOrigin,
    /// `Sec-Fetch-Site` is not `same-origin`.
    OtherSite,
}

impl std::fmt::Display for Foreign {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Foreign::NoOrigin => "the request carries no Origin",
            Foreign::OtherOrigin => "the Origin is not this proxy's own",
            Foreign::OtherSite => {
                "the browser says the request comes from another site (Sec-Fetch-Site)"
            }
        })
    }
}

/// Why a request that may change state (under the prefix: `bind`, `login`,
/// `logout`, any method but GET, HEAD and OPTIONS) does not come from a page
/// of our own origin, or `None` when it does. Browsers send `Origin` with
/// every such request, forms and scripts alike, so a missing one is refused
/// as a foreign one is (a page on another site posting a form, an
/// `enctype=text/plain` form carrying JSON included). Where the browser also
/// says `Sec-Fetch-Site`, it must be `same-origin`.
pub fn foreign_page<B>(req: &Request<B>, ctx: &Ctx, public: &[String]) -> Option<Foreign> {
    let headers = req.headers();
    if !headers.contains_key(header::ORIGIN) {
        return Some(Foreign::NoOrigin);
    }
    if !same_origin(headers, host(req), ctx, public) {
        return Some(Foreign::OtherOrigin);
    }
    match headers.get("sec-fetch-site").map(|v| v.as_bytes()) {
        None | Some(b"same-origin") => None,
        Some(_) => Some(Foreign::OtherSite),
    }
}

/// The items of a comma-separated header (all its lines), trimmed, empty
/// ones left out.
pub fn tokens(headers: &HeaderMap, name: impl AsHeaderName) -> impl Iterator<Item = &str> {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Whether the comma-separated header `name` lists `token` (ASCII case
/// ignored).
pub fn has_token(headers: &HeaderMap, name: impl AsHeaderName, token: &str) -> bool {
    tokens(headers, name).any(|t| t.eq_ignore_ascii_case(token))
}

/// The value of cookie `name` in the request's `Cookie` headers, quotes
/// removed.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// Removes cookie `name` from `headers` (a cookie of ours, not the site's)
/// and returns its value.
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

/// What a body is, as far as rewriting and masking go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Html,
    Css,
    /// `application/json`, `text/json` and `+json` types: masked for
    /// followers, otherwise untouched.
    Json,
    Other,
}

/// The media type of the `Content-Type` (its essence, lowercase) and the
/// charset it declares.
pub fn media_type(headers: &HeaderMap) -> Option<(String, Option<&'static Encoding>)> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())?;
    let mut parts = ct.split(';');
    let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let charset = parts
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("charset"))
        .and_then(|(_, v)| Encoding::for_label(v.trim().trim_matches('"').as_bytes()));
    Some((essence, charset))
}

/// The kind of body and the charset its `Content-Type` declares.
pub fn kind(headers: &HeaderMap) -> (Kind, Option<&'static Encoding>) {
    let Some((essence, charset)) = media_type(headers) else {
        return (Kind::Other, None);
    };
    let kind = match essence.as_str() {
        "text/html" => Kind::Html,
        "text/css" => Kind::Css,
        "application/json" | "text/json" => Kind::Json,
        e if e.ends_with("+json") => Kind::Json,
        _ => Kind::Other,
    };
    (kind, charset)
}

/// A plain-text answer of our own.
pub fn text(status: StatusCode, text: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(body::full(text))
        .expect("static response parts are valid")
}

/// A JSON answer of our own; never cached (it speaks of one browser).
pub fn json(status: StatusCode, json: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(body::full(json))
        .expect("static response parts are valid")
}

/// `{"error": message}`.
pub fn json_error(status: StatusCode, message: &str) -> Response<Body> {
    json(status, serde_json::json!({ "error": message }).to_string())
}

/// A readable HTML page of our own (a failure, a refusal), never cached.
/// `html` is markup we wrote; text from elsewhere goes through [`escape`].
pub fn page(status: StatusCode, title: &str, heading: &str, html: &str) -> Response<Body> {
    let page = format!(
        "<!doctype html><html><head><meta charset=utf-8><title>{title}</title></head>\
         <body style=\"font-family:system-ui,sans-serif;max-width:40em;margin:4em auto\">\
         <h1>{heading}</h1>{html}<p><small>cobrowse proxy</small></p></body></html>"
    );
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(body::full(page))
        .expect("static response parts are valid")
}

/// `text` safe to put between tags.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

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
        assert!(browser_on_https(&ctx(false), Named::Origin(&h), &public));
        assert!(!browser_on_https(&ctx(false), Named::Origin(&h), &[]));
        assert!(browser_on_https(
            &ctx(true),
            Named::Origin(&HeaderMap::new()),
            &[]
        ));
        // By the host a page was asked for: the same public origins.
        assert!(browser_on_https(
            &ctx(false),
            Named::Host("support.example.com:443"),
            &public
        ));
        assert!(browser_on_https(
            &ctx(false),
            Named::Host("Support.Example.com"),
            &public
        ));
        assert!(!browser_on_https(
            &ctx(false),
            Named::Host("b.test:8080"),
            &public
        ));
        assert!(!browser_on_https(
            &ctx(false),
            Named::Host("evil.example"),
            &public
        ));
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
        assert_eq!(check(&[]), Some(Foreign::NoOrigin));
        assert_eq!(check(&[("origin", "null")]), Some(Foreign::OtherOrigin));
        assert_eq!(
            check(&[("origin", "http://evil.example")]),
            Some(Foreign::OtherOrigin)
        );
        assert_eq!(
            check(&[("origin", "http://proxy.example:8081")]),
            Some(Foreign::OtherOrigin)
        );
        for site in ["same-site", "cross-site", "none"] {
            assert_eq!(
                check(&[
                    ("origin", "http://proxy.example:8080"),
                    ("sec-fetch-site", site)
                ]),
                Some(Foreign::OtherSite),
                "{site}"
            );
        }
    }

    #[test]
    fn cookie_finds_its_value_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            "a=1; cobrowse_operator=abc; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&h, "cobrowse_operator"), Some("abc"));
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "a=1".parse().unwrap());
        h.append(header::COOKIE, "cobrowse_operator=xyz".parse().unwrap());
        assert_eq!(cookie(&h, "cobrowse_operator"), Some("xyz"));
        assert_eq!(cookie(&HeaderMap::new(), "cobrowse_operator"), None);
    }
}
