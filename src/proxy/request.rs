//! The request-header phase: runs once the site is known, before the
//! request goes upstream. The upstream sees itself addressed (Host, Origin,
//! Referer), only encodings the proxy can decode are offered, and headers
//! that belong to the client's connection stay behind.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Uri, Version};

use super::compress;
use super::site::Mapper;
use crate::server::Ctx;

/// Headers that belong to one connection, never forwarded (RFC 9110 7.6.1).
pub const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
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

/// The request path cannot be put in a URI for the upstream.
#[derive(Debug)]
pub struct BadPath;

/// Readdresses `parts` to upstream `current`.
pub fn translate(
    parts: &mut Parts,
    mapper: &Mapper,
    current: usize,
    ctx: &Ctx,
) -> Result<(), BadPath> {
    let upstream = &mapper.upstreams()[current];
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = format!(
        "{}://{}{path}",
        upstream.origin.scheme(),
        upstream.authority
    )
    .parse::<Uri>()
    .map_err(|_| BadPath)?;
    // The upstream client picks HTTP/1.1 or HTTP/2 per connection by ALPN.
    parts.version = Version::HTTP_11;
    let client_host = parts.headers.get(header::HOST).cloned();
    strip_hop_by_hop(&mut parts.headers);
    let headers = &mut parts.headers;
    headers.insert(
        header::HOST,
        HeaderValue::from_str(&upstream.authority).expect("a URL authority is a valid header"),
    );
    for name in [header::ORIGIN, header::REFERER] {
        let mapped = headers
            .get(&name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| mapper.to_upstream(current, v));
        if let Some(mapped) = mapped.and_then(|m| HeaderValue::from_str(&m).ok()) {
            headers.insert(name, mapped);
        }
    }
    let accept = compress::upstream_accept(headers);
    headers.insert(header::ACCEPT_ENCODING, accept);
    let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(before) => format!("{before}, {}", ctx.remote.ip()),
        None => ctx.remote.ip().to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&forwarded_for) {
        headers.insert("x-forwarded-for", v);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static(ctx.scheme()));
    if let Some(host) = client_host {
        headers.insert("x-forwarded-host", host);
    }
    Ok(())
}
