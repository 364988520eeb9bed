//! Forwarding a request to the leader: HTTP/1.1 to the address the leader
//! advertises for the door the request came in on, the request as received
//! (its body streamed, an upgrade spliced like the site's WebSockets in
//! [`crate::proxy::tunnel`]), with the peer headers naming the client.
//! Connections to the leader are kept and reused (a page's assets, its
//! reads), as the upstream client's are.

use std::time::Duration;

use http::{HeaderValue, Request, Response, StatusCode, Uri, Version, header};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

use super::peer;
use crate::body::{self, Body};
use crate::proxy::{client, request, tunnel};
use crate::web::{self, Ctx};

/// Connecting to the leader: it is near, and a client waits.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long an idle connection to the leader is kept for reuse.
const POOL_IDLE: Duration = Duration::from_secs(30);

/// Why a request could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("the leader at {to} could not be reached or failed the request ({why})")]
    Exchange { to: String, why: String },
    #[error("the leader at {to} did not answer within {waited:?}")]
    Timeout { to: String, waited: Duration },
}

/// This node's client for its peers.
#[derive(Clone)]
pub struct Forwarder {
    client: Client<HttpConnector, Body>,
    /// The longest the leader may take to answer: what it may itself wait
    /// for (the site, the driver's document) and a margin.
    answer_timeout: Duration,
}

impl Forwarder {
    pub fn new(answer_timeout: Duration) -> Forwarder {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        Forwarder {
            client: client::builder(POOL_IDLE).build(http),
            answer_timeout,
        }
    }

    /// Sends `req` to the peer at `to` (`host:port`) and returns its answer
    /// for the client; an upgrade the leader accepts is joined to the
    /// client's connection.
    pub async fn forward(
        &self,
        to: &str,
        mut req: Request<Incoming>,
        ctx: &Ctx,
        secret: &str,
    ) -> Result<Response<Body>, ForwardError> {
        let upgrade = tunnel::requested(&req);
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
        let host = web::host(&req).map(str::to_owned);
        let (mut parts, incoming) = req.into_parts();
        let target = format!(
            "http://{to}{}",
            parts
                .uri
                .path_and_query()
                .map(|pq| pq.as_str())
                .unwrap_or("/")
        );
        parts.uri = target.parse::<Uri>().map_err(|e| ForwardError::Exchange {
            to: to.to_string(),
            why: format!("not a usable address ({e})"),
        })?;
        parts.version = Version::HTTP_11;
        request::strip_hop_by_hop(&mut parts.headers);
        if let Some(protocol) = upgrade {
            tunnel::keep(&mut parts.headers, protocol);
        }
        // The host the client asked for (an HTTP/2 client's `:authority`):
        // the leader's Origin checks and links are about it, not about the
        // leader's own address.
        if let Some(host) = host.and_then(|h| HeaderValue::from_str(&h).ok()) {
            parts.headers.insert(header::HOST, host);
        }
        peer::stamp(&mut parts.headers, ctx, secret);
        let sent = self
            .client
            .request(Request::from_parts(parts, body::boxed(incoming)));
        let response = match tokio::time::timeout(self.answer_timeout, sent).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                return Err(ForwardError::Exchange {
                    to: to.to_string(),
                    why: error_chain(&e),
                });
            }
            Err(_) => {
                return Err(ForwardError::Timeout {
                    to: to.to_string(),
                    waited: self.answer_timeout,
                });
            }
        };
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
}

/// An error with its causes, for the log (the connection refused under a
/// client error).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
