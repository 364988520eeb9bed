//! The reverse proxy: every request that is not under the reserved prefix is
//! forwarded to the configured upstream, and HTML responses are rewritten in
//! a stream to carry the sharing agent.
//!
//! Phases, in the order they run for one request:
//! 1. [`Proxy::handle`] picks the site by `Host` and builds the upstream URI;
//! 2. request headers are translated for the upstream;
//! 3. the upstream's response headers are translated for the client;
//! 4. an HTML body is rewritten by [`rewrite`] as it streams through.

pub mod rewrite;

use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tracing::warn;

use crate::body::{self, Body};
use crate::config::Config;
use crate::server::Ctx;

pub struct Proxy {
    config: Arc<Config>,
    client: Client<HttpsConnector<HttpConnector>, Body>,
}

/// Headers that belong to one connection, never forwarded (RFC 9110 7.6.1).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

impl Proxy {
    pub fn new(config: Arc<Config>) -> anyhow::Result<Proxy> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(config.proxy.connect_timeout));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(https);
        Ok(Proxy { config, client })
    }

    pub async fn handle(&self, req: Request<Incoming>, _ctx: Ctx) -> Response<Body> {
        let host = request_host(&req).unwrap_or_default();
        let Some(site) = self.config.site_for_host(&host) else {
            return error_page(StatusCode::MISDIRECTED_REQUEST, "No site is configured for this host.");
        };
        let upstream = &site.upstream;
        let authority = upstream_authority(upstream);
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let uri: Uri = match format!("{}://{authority}{path}", upstream.scheme()).parse() {
            Ok(u) => u,
            Err(_) => return error_page(StatusCode::BAD_REQUEST, "The request path is not valid."),
        };

        let (mut parts, incoming) = req.into_parts();
        parts.uri = uri;
        parts.version = http::Version::HTTP_11;
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.insert(header::HOST, HeaderValue::from_str(&authority).expect("a URL authority is a valid header"));
        // The rewrite needs a body it can read; compressed upstream bodies are
        // decoded in a stream by the rewriting phase.
        parts.headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        let upstream_req = Request::from_parts(parts, body::boxed(incoming));

        let response = match tokio::time::timeout(self.config.proxy.response_timeout, self.client.request(upstream_req)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                warn!(error = %e, %upstream, "upstream request failed");
                return error_page(StatusCode::BAD_GATEWAY, "The site behind this proxy could not be reached.");
            }
            Err(_) => {
                warn!(%upstream, "upstream response timed out");
                return error_page(StatusCode::GATEWAY_TIMEOUT, "The site behind this proxy did not answer in time.");
            }
        };

        let (mut parts, incoming) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        if is_html(&parts.headers) {
            parts.headers.remove(header::CONTENT_LENGTH);
            let rewritten = rewrite::inject_agent(body::boxed(incoming), &self.config.prefix, self.config.proxy.html_memory_limit);
            return Response::from_parts(parts, rewritten);
        }
        Response::from_parts(parts, body::boxed(incoming))
    }
}

fn request_host<B>(req: &Request<B>) -> Option<String> {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
}

fn upstream_authority(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named by Connection are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

fn is_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/html"))
}

/// A readable page for a failure on our side of the upstream.
pub fn error_page(status: StatusCode, message: &str) -> Response<Body> {
    let title = status.canonical_reason().unwrap_or("Error");
    let html = format!(
        "<!doctype html><html><head><meta charset=utf-8><title>{code} {title}</title></head>\
         <body style=\"font-family:system-ui,sans-serif;max-width:40em;margin:4em auto\">\
         <h1>{code} {title}</h1><p>{message}</p><p><small>cobrowse proxy</small></p></body></html>",
        code = status.as_u16(),
    );
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(body::full(html))
        .expect("static response parts are valid")
}
