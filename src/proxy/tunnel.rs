//! Upgraded connections (the site's WebSockets): the upgrade request goes
//! upstream over HTTP/1.1, and once both sides have switched protocols the
//! proxy copies bytes both ways until either side closes. Nothing is
//! buffered beyond the copy buffers.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tracing::debug;

use crate::body::{self, Body};
use crate::web;

/// The protocol asked for when `req` is an HTTP/1.1 upgrade request.
pub fn requested<B>(req: &Request<B>) -> Option<HeaderValue> {
    if web::has_token(req.headers(), header::CONNECTION, "upgrade") {
        req.headers().get(header::UPGRADE).cloned()
    } else {
        None
    }
}

/// Puts the upgrade back after the hop-by-hop headers were stripped: for
/// this one hop it is what the request is about.
pub fn keep(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
}

/// Joins the client's connection to the upstream's once the upstream has
/// switched protocols; returns the 101 for the client.
pub fn splice(mut response: Response<Incoming>, client: OnUpgrade) -> Response<Body> {
    let upstream = hyper::upgrade::on(&mut response);
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(both) => both,
            Err(e) => return debug!(error = %e, "upgrade did not complete"),
        };
        let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
        match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            Ok((up, down)) => debug!(up, down, "upgraded connection closed"),
            Err(e) => debug!(error = %e, "upgraded connection ended with an error"),
        }
    });
    let (parts, _) = response.into_parts();
    Response::from_parts(parts, body::empty())
}
