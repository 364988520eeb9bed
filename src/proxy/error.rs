//! Pages the proxy answers with itself when the upstream fails: readable,
//! with the right status, never a hang.

use http::{Response, StatusCode, header};

use crate::body::{self, Body};

/// A readable page for a failure on our side of the upstream.
pub fn page(status: StatusCode, message: &str) -> Response<Body> {
    let title = status.canonical_reason().unwrap_or("Error");
    let html = format!(
        "<!doctype html><html><head><meta charset=utf-8><title>{code} {title}</title></head>\
         <body style=\"font-family:system-ui,sans-serif;max-width:40em;margin:4em auto\">\
         <h1>{code} {title}</h1><p>{message}</p><p><small>cobrowse proxy</small></p></body></html>",
        code = status.as_u16(),
        message = escape(message),
    );
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(body::full(html))
        .expect("static response parts are valid")
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
