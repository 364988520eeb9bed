//! The bundled demo site, which the default `proxy.toml` fronts. It is an
//! ordinary upstream: the binary starts it on a loopback port and proxies it
//! over real HTTP, exactly as it would a remote site. Its pages live in
//! `examples/demo-site/` and are compiled in.

use std::convert::Infallible;

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::body::{self, Body};

/// The demo site's files: path, content type, contents. Besides the store
/// pages, some are built for the browser tests: every kind of form control
/// and masked fields (`controls.html`), nested frames (`frames.html`), a
/// long page with a scrollable pane (`long.html`), web components with open
/// and closed shadow roots (`component.html`), frames inside shadow roots
/// (`shadow-frames.html`) and a single-page app with
/// history routing (`app.html`, served for every path under `/app/`).
const PAGES: &[(&str, &str, &str)] = &[
    ("/", HTML, include_str!("../examples/demo-site/index.html")),
    (
        "/form.html",
        HTML,
        include_str!("../examples/demo-site/form.html"),
    ),
    (
        "/controls.html",
        HTML,
        include_str!("../examples/demo-site/controls.html"),
    ),
    (
        "/frames.html",
        HTML,
        include_str!("../examples/demo-site/frames.html"),
    ),
    (
        "/frame-pay.html",
        HTML,
        include_str!("../examples/demo-site/frame-pay.html"),
    ),
    (
        "/frame-inner.html",
        HTML,
        include_str!("../examples/demo-site/frame-inner.html"),
    ),
    (
        "/long.html",
        HTML,
        include_str!("../examples/demo-site/long.html"),
    ),
    (
        "/component.html",
        HTML,
        include_str!("../examples/demo-site/component.html"),
    ),
    (
        "/shadow-frames.html",
        HTML,
        include_str!("../examples/demo-site/shadow-frames.html"),
    ),
    (
        "/app/",
        HTML,
        include_str!("../examples/demo-site/app.html"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_str!("../examples/demo-site/style.css"),
    ),
];

const HTML: &str = "text/html; charset=utf-8";

/// The page for `path`: the single-page app owns every path under `/app/`.
fn page(path: &str) -> Option<&'static (&'static str, &'static str, &'static str)> {
    let path = if path.starts_with("/app/") {
        "/app/"
    } else {
        path
    };
    PAGES.iter().find(|(p, _, _)| *p == path)
}

/// Serves the demo site on `listener` until the process ends.
pub async fn serve(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let service = service_fn(|req| async move { Ok::<_, Infallible>(respond(&req)) });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond(req: &Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Response::builder()
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .body(body::full("method not allowed\n"))
            .expect("static response parts are valid");
    }
    match page(req.uri().path()) {
        Some((_, content_type, text)) => Response::builder()
            .header(header::CONTENT_TYPE, *content_type)
            .body(body::full(*text))
            .expect("static response parts are valid"),
        None => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
            .body(body::full(
                "<!doctype html><title>Not found</title><h1>Not found</h1>",
            ))
            .expect("static response parts are valid"),
    }
}
