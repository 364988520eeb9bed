//! The upstream client: HTTPS with the webpki roots, the system's roots and
//! the optional extra CA (`upstream_ca`); HTTP/1.1 and HTTP/2 (by ALPN).
//! Upgrades (WebSocket) need HTTP/1.1, so they get a client of their own.

use anyhow::Context;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tracing::{debug, warn};

use crate::body::Body;
use crate::config::Config;

pub type Upstream = Client<HttpsConnector<HttpConnector>, Body>;

/// How long an idle upstream connection is kept for reuse.
const POOL_IDLE: std::time::Duration = std::time::Duration::from_secs(90);

/// A client builder whose pool closes idle connections after `idle`. The
/// timer is what makes the timeout run: without one the pool drops an
/// expired connection only when next asked for one, so after a burst the
/// sockets (ours and the upstream's) stay open for as long as no request
/// comes.
pub fn builder(idle: std::time::Duration) -> hyper_util::client::legacy::Builder {
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(idle);
    builder
}

/// `(any protocol, HTTP/1.1 only)`.
pub fn build(config: &Config) -> anyhow::Result<(Upstream, Upstream)> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        debug!(error = %e, "a system root certificate could not be loaded");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    debug!(added, ignored, "system root certificates");
    if let Some(path) = &config.upstream_ca {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .with_context(|| format!("reading upstream_ca {}", path.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("parsing upstream_ca {}", path.display()))?;
        anyhow::ensure!(
            !certs.is_empty(),
            "upstream_ca {}: no certificate in the file",
            path.display()
        );
        for cert in certs {
            roots.add(cert).with_context(|| {
                format!(
                    "upstream_ca {}: a certificate rustls cannot use",
                    path.display()
                )
            })?;
        }
    }
    if roots.is_empty() {
        warn!("no root certificates: HTTPS upstreams will fail");
    }
    let tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();

    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(config.proxy.connect_timeout));
    http.set_nodelay(true);
    let any = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls.clone())
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http.clone());
    let h1 = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok((builder(POOL_IDLE).build(any), builder(POOL_IDLE).build(h1)))
}

/// Wraps a request body so the caller learns when it has been sent whole
/// (or dropped): the response timeout starts then, so a long upload is not
/// cut short by a timer meant for a silent upstream.
pub fn until_sent(body: Body) -> (Body, tokio::sync::oneshot::Receiver<()>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut tx = Some(tx);
    if http_body::Body::is_end_stream(&body) {
        let _ = tx.take().map(|tx| tx.send(()));
    }
    (crate::body::boxed(Sent { inner: body, tx }), rx)
}

struct Sent {
    inner: Body,
    tx: Option<tokio::sync::oneshot::Sender<()>>,
}

impl http_body::Body for Sent {
    type Data = bytes::Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(
            polled,
            std::task::Poll::Ready(None) | std::task::Poll::Ready(Some(Err(_)))
        ) {
            let _ = self.tx.take().map(|tx| tx.send(()));
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The upstream's response body, abandoned with an error when no frame
/// arrives for `idle`: a trickling or stalled upstream does not hold the
/// client and the proxy forever, and the error aborts the client's response
/// (it never looks complete).
pub fn idle_timeout(body: hyper::body::Incoming, idle: std::time::Duration) -> Body {
    crate::body::boxed(Idle {
        inner: body,
        idle,
        timer: Box::pin(tokio::time::sleep(idle)),
        since: None,
    })
}

struct Idle {
    inner: hyper::body::Incoming,
    idle: std::time::Duration,
    /// Armed for the deadline of this wait or of an earlier one (never
    /// later): moving it on every frame costs more than the frame on a fast
    /// download, so it is moved only when it fires early.
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// When the proxy started waiting for the next frame: the timeout runs
    /// from then, not from the last frame, so a client slow to read is not
    /// taken for a stalled upstream.
    since: Option<tokio::time::Instant>,
}

impl http_body::Body for Idle {
    type Data = bytes::Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use std::task::Poll;
        let since = *self.since.get_or_insert_with(tokio::time::Instant::now);
        match std::pin::Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                self.since = None;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let deadline = since + self.idle;
                loop {
                    if self.timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    if self.timer.deadline() >= deadline {
                        break;
                    }
                    // It fired for an earlier wait: this one's deadline.
                    self.timer.as_mut().reset(deadline);
                }
                warn!(idle = ?self.idle, "upstream body idle too long; response aborted");
                metrics::counter!(crate::telemetry::UPSTREAM_ERRORS, "kind" => "body_idle")
                    .increment(1);
                Poll::Ready(Some(Err(format!(
                    "the upstream sent nothing for {:?} (proxy.body_idle_timeout_secs)",
                    self.idle
                )
                .into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A rewritten document's body, abandoned with an error when it has not
/// arrived whole `limit` after its headers. The idle timeout does not catch
/// an upstream that trickles (a byte a second is never idle); documents are
/// read whole by the rewriter and kept for followers, so they get a deadline
/// of their own. Downloads and streams, which pass through, do not.
pub fn within(body: Body, limit: std::time::Duration) -> Body {
    crate::body::boxed(Within {
        inner: body,
        limit,
        deadline: Box::pin(tokio::time::sleep(limit)),
    })
}

struct Within {
    inner: Body,
    limit: std::time::Duration,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for Within {
    type Data = bytes::Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use std::task::Poll;
        if self.deadline.as_mut().poll(cx).is_ready() {
            warn!(limit = ?self.limit, "upstream document not whole in time; response aborted");
            metrics::counter!(crate::telemetry::UPSTREAM_ERRORS, "kind" => "document_timeout")
                .increment(1);
            return Poll::Ready(Some(Err(format!(
                "the upstream's document did not arrive whole within {:?} (proxy.document_timeout_secs)",
                self.limit
            )
            .into())));
        }
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn an_idle_upstream_connection_is_closed_without_further_requests() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = vec![0; 4096];
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "a request");
            conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await
                .unwrap();
            // The connection is idle in the client's pool from here: it
            // must be closed (end of stream) within the idle timeout.
            tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf)).await
        });
        let client = builder(Duration::from_millis(200)).build::<_, Body>(HttpConnector::new());
        let response = client
            .get(format!("http://{addr}/").parse().unwrap())
            .await
            .unwrap();
        http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap();
        let closed = upstream.await.unwrap();
        assert!(
            matches!(closed, Ok(Ok(0))),
            "the idle connection was still open after 5 s: {closed:?}"
        );
        drop(client);
    }
}
