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
//! 3. **forward** ([`client`]): sent upstream; failures and timeouts are
//!    upstream [`Error`]s (502, 504). Upgrades go through [`tunnel`].
//! 4. **response headers** ([`response`], [`csp`]): URLs, cookies, policies.
//! 5. **body**: HTML ([`html`], [`links`]) and CSS ([`css`]) are decoded
//!    ([`compress`]), rewritten and encoded again as a [`stream`]; every
//!    other body passes through untouched. To a follower in a shared
//!    session, JSON is masked and what cannot be rewritten and masked is
//!    refused instead of passed (see `driver`).
//!
//! Every phase that refuses or fails returns an [`Error`] saying who failed
//! (the client, the upstream, a rule of ours); [`Proxy::handle`] turns it
//! into the page, the metric and the log line in one place
//! ([`Error::into_response`]).
//!
//! # Layout
//!
//! `site` URL mapping · `client` upstream connections · `request`,
//! `response`, `csp` header phases · `html`, `links`, `css` body rewrites ·
//! `compress` codecs · `stage` a body rewrite's interface · `stream` the body pipeline · `tunnel` upgrades ·
//! `error` the proxy's error type and its pages.

pub mod client;
pub mod compress;
pub mod csp;
pub mod css;
pub mod error;
pub mod html;
pub mod links;
pub mod mask;
pub mod policy;
pub mod request;
pub mod response;
pub mod site;
pub mod stage;
pub mod stream;
pub mod tunnel;

#[cfg(test)]
mod properties;

use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tracing::warn;

use self::compress::{Codec, Coding};
use self::policy::{Decision, Follower, Policy};
use self::site::{Mapper, Sites, StreamMapper};
use self::stream::Pipeline;
use crate::body::{self, Body};
use crate::config::Config;
use crate::telemetry;
use crate::web::{self, Ctx, Kind, kind};

pub use self::error::Error;
use self::error::Unmaskable;

pub struct Proxy {
    config: Arc<Config>,
    sites: Arc<Sites>,
    client: client::Upstream,
    /// HTTP/1.1 only, for upgrades.
    client_h1: client::Upstream,
    /// The session rules (one driver, followers served what it
    /// received), when shared sessions are on.
    policy: Option<Arc<dyn Policy>>,
    /// The agent's URL in the tag every document gets.
    agent: String,
}

/// What a request's route phase decided.
enum Routed {
    /// The request is for the site: forward it.
    Site(Route),
    /// The request is about the server itself, answered here.
    Answered(Response<Body>),
}

/// The site a request is for.
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
            agent: format!("{}agent.js", config.prefix),
            config,
            client,
            client_h1,
            policy: None,
        })
    }

    /// Names the agent by its version (`{prefix}agent.js?v=…`), so a
    /// browser keeps it instead of revalidating it on every page load.
    pub fn with_agent(mut self, url: String) -> Proxy {
        self.agent = url;
        self
    }

    /// Applies the one-driver rules of shared sessions to every request.
    pub fn with_policy(mut self, policy: Arc<dyn Policy>) -> Proxy {
        self.policy = Some(policy);
        self
    }

    pub async fn handle(&self, req: Request<Incoming>, ctx: Ctx) -> Response<Body> {
        self.serve(req, ctx)
            .await
            .unwrap_or_else(Error::into_response)
    }

    /// The phases in order; the first that fails or refuses ends the
    /// request with its error.
    async fn serve(&self, mut req: Request<Incoming>, ctx: Ctx) -> Result<Response<Body>, Error> {
        let route = match self.route(&req, &ctx)? {
            Routed::Site(route) => route,
            Routed::Answered(response) => return Ok(response),
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
        let target = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let mut record = None;
        let mut follower = None;
        let unbound = self
            .policy
            .as_ref()
            .is_some_and(|p| p.unbound(&parts.headers));
        if let Some(policy) = &self.policy {
            match policy
                .before_upstream(&mut parts, &self.config.privacy)
                .await
            {
                Decision::Answer(response) => return Ok(response),
                Decision::Forward {
                    record: session,
                    follower: f,
                } => {
                    record = session.map(|s| (s, target.clone()));
                    follower = f;
                }
            }
        }
        request::translate(&mut parts, &route.mapper, route.site, &ctx)?;
        let (upgrade, client) = match upgrade {
            // A follower's upgrade was refused in phase 1b.
            Some((protocol, on)) if follower.is_none() => {
                tunnel::keep(&mut parts.headers, protocol);
                (Some(on), &self.client_h1)
            }
            _ => (None, &self.client),
        };
        let sent = telemetry::count_bytes(
            body::boxed(incoming),
            metrics::counter!(telemetry::UPSTREAM_BYTES, "direction" => "sent"),
        );
        let response = self
            .forward(client, Request::from_parts(parts, sent), &route)
            .await?;
        if let Some(on) = upgrade.filter(|_| response.status() == StatusCode::SWITCHING_PROTOCOLS) {
            return Ok(tunnel::splice(response, on));
        }
        compress::refuse_deep_stacking(response.headers())?;

        let (mut parts, incoming) = response.into_parts();
        let incoming = client::idle_timeout(incoming, self.config.proxy.body_idle_timeout);
        let incoming = telemetry::count_bytes(
            incoming,
            metrics::counter!(telemetry::UPSTREAM_BYTES, "direction" => "received"),
        );
        let nonce = nonce();
        let origin = route.mapper.proxy_origin(route.site).unwrap_or_default();
        let console = self.config.console.origin_beside(&origin);
        let allow = csp::Allowance {
            origin,
            prefix: self.config.prefix.clone(),
            console,
        };
        response::translate(&mut parts.headers, &route.mapper, &allow, &nonce);
        let mut mask = Vec::new();
        // A follower comes from the policy: both are there or neither.
        if let (Some(_), Some(policy)) = (&follower, &self.policy) {
            // The site's cookies are the customer's, or would become the
            // operator's own account at the site: neither is given to a
            // follower's browser.
            parts.headers.remove(header::SET_COOKIE);
            mask = mask::selectors(&self.config.privacy.mask);
            if kind(&parts.headers).0 == Kind::Json && want.method != Method::HEAD {
                let body = policy
                    .mask_json(
                        &mut parts.headers,
                        parts.status,
                        incoming,
                        &self.config.privacy,
                    )
                    .await
                    .map_err(|reason| unmaskable(follower.as_ref(), target, reason))?;
                return Ok(Response::from_parts(parts, body));
            }
        }
        let options = html::Options {
            mapper: route.mapper,
            agent: self.agent.clone(),
            nonce,
            csp: allow,
            memory_limit: self.config.proxy.html_memory_limit,
            declared: None,
            mask,
            follower: follower.is_some(),
            unbound,
        };
        let body = self
            .body(
                &want,
                parts.status,
                &mut parts.headers,
                incoming,
                record,
                follower.as_ref(),
                options,
            )
            .map_err(|reason| unmaskable(follower.as_ref(), target, reason))?;
        Ok(Response::from_parts(parts, body))
    }

    /// Phase 1: the site for the request's `Host`. Requests about the
    /// server itself are answered here; those the proxy must not pass on
    /// are refused.
    fn route(&self, req: &Request<Incoming>, ctx: &Ctx) -> Result<Routed, Error> {
        if let Some(answer) = request::server_wide(req.method(), req.uri())? {
            return Ok(Routed::Answered(answer));
        }
        let host = web::host(req).unwrap_or_default().to_string();
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
        {
            // The host is written into pages, URLs and policies.
            return Err(Error::BadHost);
        }
        let Some(site) = self.sites.for_host(&host) else {
            return Err(Error::NoSite);
        };
        if req
            .headers()
            .get("service-worker")
            .is_some_and(|v| v == "script")
        {
            // A service worker of the site would take over the proxy host's
            // pages and outlive the session; the browser asks for its script
            // with this header, so refusing it here refuses the registration.
            return Err(Error::ServiceWorker);
        }
        Ok(Routed::Site(Route {
            site,
            mapper: self.sites.mapper(
                site,
                &host,
                web::browser_on_https(ctx, web::Named::Host(&host), &self.config.public_origins),
            ),
        }))
    }

    /// Phase 3: the upstream's response headers, or why there are none.
    async fn forward(
        &self,
        client: &client::Upstream,
        req: Request<Body>,
        route: &Route,
    ) -> Result<Response<Incoming>, Error> {
        let upstream = || self.sites.upstreams[route.site].origin.to_string();
        let (parts, body) = req.into_parts();
        let (body, sent) = client::until_sent(body);
        let request = client.request(Request::from_parts(parts, body));
        // Dropped without being sent whole (the request failed): the
        // request's own error wins the race below anyway.
        let deadline = async {
            let _ = sent.await;
            tokio::time::sleep(self.config.proxy.response_timeout).await;
        };
        tokio::select! {
            r = request => r.map_err(|error| Error::Upstream {
                upstream: upstream(),
                error,
            }),
            () = deadline => Err(Error::Timeout {
                upstream: upstream(),
                timeout: self.config.proxy.response_timeout,
            }),
        }
    }

    /// Phase 5: how the body goes to the client. HTML and CSS are rewritten
    /// (decoded and encoded again around the rewrite); every other body,
    /// partial content, and bodies in an unknown encoding pass untouched to
    /// the driver or a browser alone. To a `follower`, what cannot be
    /// rewritten and masked is refused instead (why is returned).
    /// `record` names the session and target whose driver's response is kept
    /// for followers.
    #[allow(
        clippy::too_many_arguments,
        reason = "the phase's inputs, each used once"
    )]
    fn body(
        &self,
        want: &Want,
        status: StatusCode,
        headers: &mut HeaderMap,
        incoming: Body,
        record: Option<(String, String)>,
        follower: Option<&Follower>,
        mut options: html::Options,
    ) -> Result<Body, Unmaskable> {
        let (kind, declared) = kind(headers);
        if kind == Kind::Other || kind == Kind::Json {
            if follower.is_some_and(|f| f.as_driver)
                && kind == Kind::Other
                && want.method != Method::HEAD
            {
                // Read with the customer's cookies, and nothing in it can be
                // masked.
                return Err(Unmaskable::Type);
            }
            // A JSON answer to the driver's script is kept, as it came, for
            // followers reading the same.
            if kind == Kind::Json
                && want.method == Method::GET
                && status == StatusCode::OK
                && let Some(recorder) = self.recorder(record, status, headers, false)
            {
                // Without a length the server reads the body to its end,
                // where the recorder keeps it.
                headers.remove(header::CONTENT_LENGTH);
                let incoming = client::within(incoming, self.config.proxy.document_timeout);
                return Ok(Pipeline::default().then(recorder).apply(incoming));
            }
            return Ok(incoming);
        }
        if want.method == Method::HEAD {
            // What a GET would send differs in length from the upstream's.
            headers.remove(header::CONTENT_LENGTH);
            return Ok(incoming);
        }
        if status == StatusCode::PARTIAL_CONTENT && follower.is_some() {
            return Err(Unmaskable::Partial);
        }
        if status == StatusCode::PARTIAL_CONTENT
            || status == StatusCode::NOT_MODIFIED
            || status == StatusCode::NO_CONTENT
        {
            return Ok(incoming);
        }
        let Some(codings) = compress::parse_content_encoding(headers) else {
            if follower.is_some() {
                return Err(Unmaskable::Encoding);
            }
            warn!(encoding = ?headers.get(header::CONTENT_ENCODING), "unknown content encoding; passed through without rewriting");
            return Ok(incoming);
        };
        // The driver's document is kept as its browser reads it: after the
        // rewrite, before the encoder.
        let recorder = self.recorder(record, status, headers, true);
        let mut pipeline = Pipeline::bounded(self.config.proxy.max_decoded_bytes);
        for coding in codings.iter().rev() {
            pipeline = pipeline.decode(*coding);
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
        Ok(pipeline.apply(client::within(incoming, self.config.proxy.document_timeout)))
    }
}

impl Proxy {
    /// The stage that keeps the driver's response for followers, when
    /// `record` asks for it.
    fn recorder(
        &self,
        record: Option<(String, String)>,
        status: StatusCode,
        headers: &HeaderMap,
        decoded: bool,
    ) -> Option<Box<dyn stage::Stage>> {
        let (policy, (session, target)) = (self.policy.as_ref()?, record?);
        Some(policy.recorder(session, target, status, headers, decoded))
    }
}

/// A follower's response refused because it could not be masked. Only a
/// follower's body is ever refused, and followers come from the policy;
/// without one the refusal names no session.
fn unmaskable(follower: Option<&Follower>, target: String, reason: Unmaskable) -> Error {
    Error::Unmaskable {
        session: follower.map(|f| f.session.clone()).unwrap_or_default(),
        target,
        reason,
    }
}

/// A fresh CSP nonce per response: 128 random bits.
fn nonce() -> String {
    use std::fmt::Write;
    let bytes: [u8; 16] = rand::random();
    let mut hex = String::with_capacity(32);
    for b in bytes {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}
