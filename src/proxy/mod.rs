//! The reverse proxy: every request that is not under the reserved prefix
//! is forwarded to the site its `Host` picks, and HTML and CSS responses are
//! rewritten in a stream (see docs/proxy.md).
//!
//! # Phases
//!
//! [`Proxy::handle`] runs these in order for one request; each is a
//! function of its own so that per-session rules (the driver's stored
//! documents, refusing a follower's state-changing request) slot in between.
//!
//! 1. **route** ([`site`]): the site by `Host`, and the [`site::Mapper`]
//!    from its upstream URLs to the proxy's own.
//! 2. **request headers** ([`request`]): readdressed to the upstream.
//! 3. **forward** ([`client`]): sent upstream; failures and timeouts become
//!    [`error`] pages (502, 504). Upgrades go through [`tunnel`].
//! 4. **response headers** ([`response`], [`csp`]): URLs, cookies, policies.
//! 5. **body**: HTML ([`html`], [`links`]) and CSS ([`css`]) are decoded
//!    ([`compress`]), rewritten and encoded again as a [`stream`]; every
//!    other body passes through untouched.
//!
//! # Layout
//!
//! `site` URL mapping · `client` upstream connections · `request`,
//! `response`, `csp` header phases · `html`, `links`, `css` body rewrites ·
//! `compress` codecs · `stream` the body pipeline · `tunnel` upgrades ·
//! `error` pages.

pub mod client;
pub mod compress;
pub mod csp;
pub mod css;
pub mod error;
pub mod html;
pub mod links;
pub mod request;
pub mod response;
pub mod site;
pub mod stream;
pub mod tunnel;

#[cfg(test)]
mod properties;

use std::sync::Arc;

use encoding_rs::Encoding;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tracing::warn;

use self::compress::{Codec, Coding};
use self::site::{Mapper, Sites, StreamMapper};
use self::stream::Pipeline;
use crate::body::{self, Body};
use crate::config::Config;
use crate::driver::{Decision, Sessions};
use crate::server::Ctx;

pub use self::error::page as error_page;

pub struct Proxy {
    config: Arc<Config>,
    sites: Arc<Sites>,
    client: client::Upstream,
    /// HTTP/1.1 only, for upgrades.
    client_h1: client::Upstream,
    /// Shared sessions: one driver, followers served what it received.
    sessions: Option<Sessions>,
}

/// What a request's route phase decided.
pub struct Route {
    /// Index of the site (and its upstream) in the config.
    pub site: usize,
    pub mapper: Mapper,
}

/// What the body phase needs to know about the request.
struct Want {
    method: Method,
    /// The encoding a rewritten body may be sent in.
    coding: Option<Coding>,
}

impl Proxy {
    pub fn new(config: Arc<Config>) -> anyhow::Result<Proxy> {
        let (client, client_h1) = client::build(&config)?;
        Ok(Proxy {
            sites: Arc::new(Sites::new(&config)),
            config,
            client,
            client_h1,
            sessions: None,
        })
    }

    /// Applies the one-driver rules of shared sessions to every request.
    pub fn with_sessions(mut self, sessions: Sessions) -> Proxy {
        self.sessions = Some(sessions);
        self
    }

    pub async fn handle(&self, mut req: Request<Incoming>, ctx: Ctx) -> Response<Body> {
        let route = match self.route(&req, &ctx) {
            Ok(route) => route,
            Err(refusal) => return refusal,
        };
        let want = Want {
            method: req.method().clone(),
            coding: compress::choose(req.headers()),
        };
        let upgrade =
            tunnel::requested(&req).map(|protocol| (protocol, hyper::upgrade::on(&mut req)));

        let (mut parts, incoming) = req.into_parts();
        // Phase 1b: where the request stands in a shared session. A
        // follower's request may be answered here and never reach upstream.
        let mut record = None;
        let mut mask = Vec::new();
        if let Some(sessions) = &self.sessions {
            let standing = sessions.standing(&mut parts.headers);
            match sessions
                .driver
                .before_upstream(&standing, &mut parts, &self.config.privacy.mask)
            {
                Decision::Answer(response) => return response,
                Decision::Forward {
                    record: session,
                    mask: follower,
                } => {
                    let target = parts
                        .uri
                        .path_and_query()
                        .map_or("/", |p| p.as_str())
                        .to_string();
                    record = session.map(|s| (s, target));
                    if follower {
                        mask = crate::driver::mask::selectors(&self.config.privacy.mask);
                    }
                }
            }
        }
        if request::translate(&mut parts, &route.mapper, route.site, &ctx).is_err() {
            return error::page(StatusCode::BAD_REQUEST, "The request path is not valid.");
        }
        let (upgrade, client) = match upgrade {
            Some((protocol, on)) => {
                tunnel::keep(&mut parts.headers, protocol);
                (Some(on), &self.client_h1)
            }
            None => (None, &self.client),
        };
        let response = match self
            .forward(
                client,
                Request::from_parts(parts, body::boxed(incoming)),
                &route,
            )
            .await
        {
            Ok(response) => response,
            Err(page) => return page,
        };
        if let Some(on) = upgrade.filter(|_| response.status() == StatusCode::SWITCHING_PROTOCOLS) {
            return tunnel::splice(response, on);
        }

        let (mut parts, incoming) = response.into_parts();
        let nonce = nonce();
        let allow = csp::Allowance {
            origin: route.mapper.proxy_origin(route.site).unwrap_or_default(),
            prefix: self.config.prefix.clone(),
        };
        response::translate(&mut parts.headers, &route.mapper, &allow, &nonce);
        // The driver's document is kept as its browser reads it: after the
        // rewrite, before the encoder.
        let recorder = match (&self.sessions, record) {
            (Some(sessions), Some((session, target))) => Some(sessions.driver.recorder(
                session,
                target,
                parts.status,
                &parts.headers,
            )),
            _ => None,
        };
        let body = self.body(
            &want,
            parts.status,
            &mut parts.headers,
            body::boxed(incoming),
            recorder,
            html::Options {
                mapper: route.mapper,
                prefix: self.config.prefix.clone(),
                nonce,
                csp: allow,
                memory_limit: self.config.proxy.html_memory_limit,
                declared: None,
                mask,
            },
        );
        Response::from_parts(parts, body)
    }

    /// Phase 1: the site for the request's `Host`. Requests the proxy must
    /// not pass on are answered here.
    #[allow(
        clippy::result_large_err,
        reason = "the refusal is the response itself, built once per refused request"
    )]
    fn route(&self, req: &Request<Incoming>, ctx: &Ctx) -> Result<Route, Response<Body>> {
        let host = request_host(req).unwrap_or_default();
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
        {
            // The host is written into pages, URLs and policies.
            return Err(error::page(
                StatusCode::BAD_REQUEST,
                "The Host header is not a host name.",
            ));
        }
        let Some(site) = self.sites.for_host(&host) else {
            return Err(error::page(
                StatusCode::MISDIRECTED_REQUEST,
                "No site is configured for this host.",
            ));
        };
        if req
            .headers()
            .get("service-worker")
            .is_some_and(|v| v == "script")
        {
            // A service worker of the site would take over the proxy host's
            // pages and outlive the session; the browser asks for its script
            // with this header, so refusing it here refuses the registration.
            metrics::counter!("cobrowse_proxy_service_workers_refused_total").increment(1);
            return Err(error::page(
                StatusCode::FORBIDDEN,
                "Service workers are not available through the co-browsing proxy.",
            ));
        }
        Ok(Route {
            site,
            mapper: self
                .sites
                .mapper(site, &host, self.browser_on_https(&host, ctx)),
        })
    }

    /// Whether the browser reached us over HTTPS: our own TLS, or a
    /// configured public `https://` origin for this host (a load balancer in
    /// front terminates TLS). Links, cookies and policies follow it, so the
    /// browser gets no mixed content and keeps its `Secure` cookies.
    fn browser_on_https(&self, host: &str, ctx: &Ctx) -> bool {
        let host = host.strip_suffix(":443").unwrap_or(host);
        ctx.tls
            || self.config.public_origins.iter().any(|o| {
                o.strip_prefix("https://")
                    .is_some_and(|h| h.eq_ignore_ascii_case(host))
            })
    }

    /// Phase 3: the upstream's response headers, or the page that says why
    /// there are none.
    #[allow(
        clippy::result_large_err,
        reason = "the error is the response itself, built once per failed request"
    )]
    async fn forward(
        &self,
        client: &client::Upstream,
        req: Request<Body>,
        route: &Route,
    ) -> Result<Response<Incoming>, Response<Body>> {
        let upstream = &self.sites.upstreams[route.site].origin;
        let (parts, body) = req.into_parts();
        let (body, sent) = client::until_sent(body);
        let request = client.request(Request::from_parts(parts, body));
        // Dropped without being sent whole (the request failed): the
        // request's own error wins the race below anyway.
        let deadline = async {
            let _ = sent.await;
            tokio::time::sleep(self.config.proxy.response_timeout).await;
        };
        let answer = tokio::select! {
            r = request => Ok(r),
            () = deadline => Err(()),
        };
        match answer {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => {
                let cause = std::error::Error::source(&e)
                    .map(ToString::to_string)
                    .unwrap_or_default();
                warn!(error = %e, %cause, %upstream, "upstream request failed");
                metrics::counter!("cobrowse_proxy_upstream_errors_total", "kind" => if e.is_connect() { "connect" } else { "request" }).increment(1);
                let message = if e.is_connect() {
                    format!("The site behind this proxy ({upstream}) could not be reached.")
                } else {
                    format!("The site behind this proxy ({upstream}) failed to answer.")
                };
                Err(error::page(StatusCode::BAD_GATEWAY, &message))
            }
            Err(_) => {
                warn!(%upstream, timeout = ?self.config.proxy.response_timeout, "upstream response timed out");
                metrics::counter!("cobrowse_proxy_upstream_errors_total", "kind" => "timeout")
                    .increment(1);
                Err(error::page(
                    StatusCode::GATEWAY_TIMEOUT,
                    &format!("The site behind this proxy ({upstream}) did not answer in time."),
                ))
            }
        }
    }

    /// Phase 5: how the body goes to the client. HTML and CSS are rewritten
    /// (decoded and encoded again around the rewrite); every other body,
    /// partial content, and bodies in an unknown encoding pass untouched.
    fn body(
        &self,
        want: &Want,
        status: StatusCode,
        headers: &mut HeaderMap,
        incoming: Body,
        recorder: Option<crate::driver::documents::Recorder>,
        mut options: html::Options,
    ) -> Body {
        let (kind, declared) = kind(headers);
        if kind == Kind::Other {
            return incoming;
        }
        if want.method == Method::HEAD {
            // What a GET would send differs in length from the upstream's.
            headers.remove(header::CONTENT_LENGTH);
            return incoming;
        }
        if status == StatusCode::PARTIAL_CONTENT
            || status == StatusCode::NOT_MODIFIED
            || status == StatusCode::NO_CONTENT
        {
            return incoming;
        }
        let Some(codings) = compress::parse_content_encoding(headers) else {
            warn!(encoding = ?headers.get(header::CONTENT_ENCODING), "unknown content encoding; passed through without rewriting");
            return incoming;
        };
        let mut pipeline = Pipeline::default();
        for coding in codings.iter().rev() {
            pipeline = pipeline.then(Codec::decoder(*coding));
        }
        pipeline = match kind {
            Kind::Html => {
                options.declared = declared;
                let pipeline = pipeline.then(html::Html::new(options));
                match recorder {
                    Some(recorder) => pipeline.then(recorder),
                    None => pipeline,
                }
            }
            _ => pipeline.then(StreamMapper::new(options.mapper)),
        };
        match want.coding {
            Some(coding) => {
                pipeline = pipeline.then(Codec::encoder(coding));
                headers.insert(
                    header::CONTENT_ENCODING,
                    HeaderValue::from_static(coding.name()),
                );
            }
            None => {
                headers.remove(header::CONTENT_ENCODING);
            }
        }
        headers.remove(header::CONTENT_LENGTH);
        headers.remove(header::ACCEPT_RANGES);
        headers.remove("content-md5");
        headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        if let Some(etag) = headers
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .filter(|e| !e.starts_with("W/"))
        {
            // The bytes differ from the upstream's; the meaning does not.
            if let Ok(weak) = HeaderValue::from_str(&format!("W/{etag}")) {
                headers.insert(header::ETAG, weak);
            }
        }
        pipeline.apply(incoming)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Html,
    Css,
    Other,
}

/// The kind of body and the charset its `Content-Type` declares.
fn kind(headers: &HeaderMap) -> (Kind, Option<&'static Encoding>) {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return (Kind::Other, None);
    };
    let mut parts = ct.split(';');
    let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let charset = parts
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("charset"))
        .and_then(|(_, v)| Encoding::for_label(v.trim().trim_matches('"').as_bytes()));
    let kind = match essence.as_str() {
        "text/html" => Kind::Html,
        "text/css" => Kind::Css,
        _ => Kind::Other,
    };
    (kind, charset)
}

fn request_host<B>(req: &Request<B>) -> Option<String> {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
}

/// A fresh CSP nonce per response: 128 random bits.
fn nonce() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
