//! Forwarding a request to the leader: HTTP/1.1 to the address the leader
//! advertises for the door the request came in on, the request as received
//! (its body streamed, an upgrade spliced like the site's WebSockets in
//! [`crate::proxy::tunnel`]), with the peer headers naming the client.

use std::time::Duration;

use http::{HeaderValue, Request, Response, StatusCode, Uri, Version, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tracing::debug;

use super::peer;
use crate::body::{self, Body};
use crate::proxy::{request, tunnel};
use crate::web::{self, Ctx};

/// Connecting to the leader: it is near, and a client waits.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a request could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("cannot connect to the leader at {to} ({why})")]
    Connect { to: String, why: String },
    #[error("the leader at {to} failed the request ({why})")]
    Exchange { to: String, why: String },
}

/// Sends `req` to the peer at `to` (`host:port`) and returns its answer
/// for the client; an upgrade the leader accepts is joined to the client's
/// connection.
pub async fn forward(
    to: &str,
    mut req: Request<Incoming>,
    ctx: &Ctx,
    secret: &str,
) -> Result<Response<Body>, ForwardError> {
    let upgrade = tunnel::requested(&req);
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
    let host = web::host(&req).map(str::to_owned);
    let (mut parts, body) = req.into_parts();
    // Origin form, as an HTTP/1.1 request line carries it; the host moves
    // to `Host` (an HTTP/2 client's `:authority`).
    parts.uri = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/")
        .parse::<Uri>()
        .unwrap_or_else(|_| Uri::from_static("/"));
    parts.version = Version::HTTP_11;
    request::strip_hop_by_hop(&mut parts.headers);
    if let Some(protocol) = upgrade {
        tunnel::keep(&mut parts.headers, protocol);
    }
    if let Some(host) = host.and_then(|h| HeaderValue::from_str(&h).ok()) {
        parts.headers.insert(header::HOST, host);
    }
    peer::stamp(&mut parts.headers, ctx, secret);

    let connect = |why: String| ForwardError::Connect {
        to: to.to_string(),
        why,
    };
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(to))
        .await
        .map_err(|_| connect(format!("no answer in {CONNECT_TIMEOUT:?}")))?
        .map_err(|e| connect(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| connect(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            debug!(error = %e, "connection to the leader ended with an error");
        }
    });
    let response = sender
        .send_request(Request::from_parts(parts, body))
        .await
        .map_err(|e| ForwardError::Exchange {
            to: to.to_string(),
            why: e.to_string(),
        })?;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client) = client_upgrade
    {
        return Ok(tunnel::splice(response, client));
    }
    let mut response = response.map(body::boxed);
    // Framing and connection handling are this hop's own.
    request::strip_hop_by_hop(response.headers_mut());
    Ok(response)
}
