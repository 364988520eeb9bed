//! The rewriting proxy against real upstream servers (see docs/proxy.md):
//! what a browser fetching through the proxy would notice.

mod encoding;
mod fidelity;
mod followers;
mod headers;
mod html;
mod links;
mod runtime;
mod upstreams;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A response as the test sees it.
pub struct Got {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Got {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map_or("", |v| v.to_str().unwrap_or("<binary>"))
    }
}

/// One request through a plain HTTP/1.1 client (no decompression: the test
/// sees the bytes on the wire).
pub async fn fetch(method: &str, url: &str, headers: &[(&str, &str)]) -> Got {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = client
        .request(req.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let (parts, body) = res.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Got {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub async fn get(url: &str) -> Got {
    fetch("GET", url, &[]).await
}
