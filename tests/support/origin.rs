//! Real upstream servers for tests: hyper on a loopback port, answering with
//! whatever the test's handler returns, and counting what it received.

#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

pub type OriginBody = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;
type Handler = dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<OriginBody>> + Send>>
    + Send
    + Sync;

/// An upstream site on a loopback port; stops when dropped.
pub struct Origin {
    pub addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Origin {
    /// Starts an origin whose responses come from `handler`.
    pub async fn start<F, Fut>(handler: F) -> Origin
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<OriginBody>> + Send + 'static,
    {
        Origin::serve(Arc::new(move |req| Box::pin(handler(req))), None).await
    }

    /// Accepts connections (over TLS when `tls` is given) and answers them
    /// with `handler`, counting requests.
    async fn serve(handler: Arc<Handler>, tls: Option<tokio_rustls::TlsAcceptor>) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let handler = handler.clone();
                let counter = counter.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let fut = handler(req);
                        async move { Ok::<_, Infallible>(fut.await) }
                    });
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let _ = match tls {
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(stream).await else {
                                return;
                            };
                            builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                .await
                        }
                        None => {
                            builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                .await
                        }
                    };
                });
            }
        });
        Origin {
            addr,
            requests,
            task,
        }
    }

    /// An origin serving fixed pages: `(path, content type, body)`.
    pub async fn pages(pages: &'static [(&'static str, &'static str, &'static str)]) -> Origin {
        Origin::start(move |req| async move {
            match pages.iter().find(|(p, _, _)| *p == req.uri().path()) {
                Some((_, ct, body)) => Response::builder()
                    .header("content-type", *ct)
                    .body(full(*body))
                    .unwrap(),
                None => Response::builder()
                    .status(404)
                    .body(full("not found"))
                    .unwrap(),
            }
        })
        .await
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many requests reached this origin.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn full(bytes: impl Into<Bytes>) -> OriginBody {
    use http_body_util::BodyExt;
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body the test feeds piece by piece: each `send` is one chunk on the
/// wire (chunked encoding), and the body ends when the sender is dropped.
pub fn channel_body() -> (tokio::sync::mpsc::UnboundedSender<Bytes>, OriginBody) {
    use http_body_util::{BodyExt, StreamBody};
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let stream = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|o| o.map(|b| Ok::<_, Infallible>(hyper::body::Frame::data(b))))
    });
    (
        tx,
        StreamBody::new(stream)
            .map_err(|never| match never {})
            .boxed_unsync(),
    )
}

/// A body sent as the given chunks, each its own write on the wire.
pub fn chunked(chunks: Vec<Bytes>) -> OriginBody {
    let (tx, body) = channel_body();
    for c in chunks {
        let _ = tx.send(c);
    }
    body
}

/// A self-signed certificate for `localhost` and 127.0.0.1: `(cert PEM, key PEM)`.
pub fn self_signed() -> (String, String) {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    (cert.cert.pem(), cert.signing_key.serialize_pem())
}

impl Origin {
    /// Like [`Origin::start`], over TLS with `cert`/`key` (PEM), offering
    /// HTTP/2 and HTTP/1.1 by ALPN. Records the protocol of each request.
    pub async fn start_tls<F, Fut>(cert: &str, key: &str, handler: F) -> Origin
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<OriginBody>> + Send + 'static,
    {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let certs = vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        Origin::serve(Arc::new(move |req| Box::pin(handler(req))), Some(acceptor)).await
    }

    pub fn https_url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }
}
