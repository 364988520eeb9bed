//! The request-header phase: runs once the site is known, before the
//! request goes upstream. The upstream sees itself addressed (Host, Origin,
//! Referer), only encodings the proxy can decode are offered, and headers
//! that belong to the client's connection stay behind. Requests about the
//! server itself (`*`) are answered before this phase ([`server_wide`]).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::uri::{Authority, PathAndQuery};
use http::{Method, Response, StatusCode, Uri, Version};

use super::compress;
use super::error::{ALLOW, Error};
use super::site::Mapper;
use crate::body::{self, Body};
use crate::web::{self, Ctx};

/// The answer to a request that is not for a resource of the site, so it is
/// answered here and never goes upstream. A target of `*` (RFC 9112 3.2.4)
/// asks about this server: `OPTIONS *` gets `200` with `Allow`; any other
/// method with `*` is not a valid request (`400`). `CONNECT` (authority
/// form) asks for a tunnel to a host of the client's choosing, which a
/// reverse proxy does not give (`405`).
pub fn server_wide(method: &Method, uri: &Uri) -> Result<Option<Response<Body>>, Error> {
    if method == Method::CONNECT {
        return Err(Error::Connect);
    }
    if uri.authority().is_some() || uri.path() != "*" {
        return Ok(None);
    }
    if method == Method::OPTIONS {
        let response = Response::builder()
            .status(StatusCode::OK)
            .header(header::ALLOW, ALLOW)
            .body(body::empty());
        return Ok(Some(response.expect("static response parts are valid")));
    }
    Err(Error::AsteriskTarget(method.clone()))
}

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
    let named: Vec<HeaderName> = web::tokens(headers, header::CONNECTION)
        .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// Readdresses `parts` to upstream `current`. The upstream URI is built
/// from parsed parts: the configured upstream's scheme and authority, and
/// the request's path, which must be a path (origin form, RFC 9112 3.2.1).
/// Pasted together as text, a target that is no path (`*`) would end up in
/// the authority and pick another host or port.
pub fn translate(
    parts: &mut Parts,
    mapper: &Mapper,
    current: usize,
    ctx: &Ctx,
) -> Result<(), Error> {
    let upstream = &mapper.upstreams()[current];
    let path = match parts.uri.path_and_query() {
        Some(p) if p.as_str().starts_with('/') => p.clone(),
        Some(_) => return Err(Error::BadPath),
        None => PathAndQuery::from_static("/"),
    };
    let authority = upstream
        .authority
        .parse::<Authority>()
        .map_err(|_| Error::BadPath)?;
    parts.uri = Uri::builder()
        .scheme(upstream.origin.scheme())
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|_| Error::BadPath)?;
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
