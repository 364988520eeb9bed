//! Pages the proxy answers with itself when the upstream fails: readable,
//! with the right status, never a hang.

use http::{Response, StatusCode};

use crate::body::Body;
use crate::web;

/// A readable page for a failure on our side of the upstream.
pub fn page(status: StatusCode, message: &str) -> Response<Body> {
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    let html = format!("<p>{}</p>", web::escape(message));
    web::page(status, &title, &title, &html)
}
