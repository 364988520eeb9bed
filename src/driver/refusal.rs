//! The driver's one error type: what it refuses, and why. A [`Refusal`]
//! turns itself into the answer, the metric and the log lines in one place
//! ([`Refusal::into_response`]). A follower's response that cannot be
//! masked is the proxy's to refuse ([`crate::proxy::Error::Unmaskable`]);
//! the driver returns why, and the proxy's error answers.

use std::net::SocketAddr;

use http::{HeaderValue, Method, Response, StatusCode, Uri};
use tracing::{info, warn};

use crate::body::Body;
use crate::telemetry;
use crate::web;

/// What a follower's request would do that only the driver's may: change
/// the site's state, or act as the customer through another door. Each is a
/// `reason` label of [`telemetry::FOLLOWER_REFUSALS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// A method that may change state (any but GET, HEAD, OPTIONS).
    Method,
    /// A header (named) asking the site to treat the request as another
    /// method.
    MethodOverride(&'static str),
    /// The site's WebSocket would carry the customer's session both ways.
    WebSocket,
    /// A live stream of the customer's account cannot be served from what
    /// the driver received, nor masked.
    EventStream,
}

impl Rule {
    /// The reason as logged and counted.
    pub fn label(self) -> &'static str {
        match self {
            Rule::Method => "method",
            Rule::MethodOverride(_) => "method-override",
            Rule::WebSocket => "websocket",
            Rule::EventStream => "event-stream",
        }
    }

    /// The request, as the refusal page names it.
    fn what(self, method: &Method) -> String {
        match self {
            Rule::Method => format!("This {method} request"),
            Rule::MethodOverride(name) => {
                format!("This request asking the site (by {name}) to treat it as another method")
            }
            Rule::WebSocket => "The site's WebSocket (or other upgraded connection)".to_string(),
            Rule::EventStream => "The site's event stream".to_string(),
        }
    }
}

/// A request the driver answers itself instead of letting it through.
#[derive(Debug)]
pub enum Refusal {
    /// `bind` with a method other than POST.
    BindMethod,
    /// `bind` with a body not declared JSON (a form another site's page
    /// could send).
    BindNotJson {
        remote: SocketAddr,
        content_type: Option<HeaderValue>,
    },
    /// `bind` with a body over its bound.
    BindTooLarge,
    /// `bind` with a body that is not `{"session":…,"token":…}`.
    BindMalformed,
    /// `bind` with a token no live participant holds (used, expired or
    /// never given).
    BindToken { remote: SocketAddr, session: String },
    /// A follower's request that would act as the customer (rule: one
    /// driver); never sent to the site.
    Follower {
        session: String,
        participant: String,
        method: Method,
        uri: Uri,
        rule: Rule,
    },
}

/// The largest `bind` body read.
pub const BIND_MAX_BYTES: usize = 4096;

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::BindMethod => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::BindNotJson { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Refusal::BindTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::BindMalformed => StatusCode::BAD_REQUEST,
            Refusal::BindToken { .. } | Refusal::Follower { .. } => StatusCode::FORBIDDEN,
        }
    }

    /// Counts and logs the refusal (a follower's in the audit log too).
    fn record(&self) {
        match self {
            Refusal::BindNotJson {
                remote,
                content_type,
            } => {
                metrics::counter!(telemetry::BINDS_REFUSED, "reason" => "content_type")
                    .increment(1);
                warn!(%remote, ?content_type, "bind refused: not JSON");
            }
            Refusal::BindToken { remote, session } => {
                metrics::counter!(telemetry::BINDS_REFUSED, "reason" => "token").increment(1);
                warn!(%remote, %session, "bind refused: no live participant holds that token (used, expired or never given)");
            }
            Refusal::Follower {
                session,
                participant,
                method,
                uri,
                rule,
            } => {
                let reason = rule.label();
                info!(target: "audit", event = "follower_refused", session = %session, participant = %participant, method = %method, path = uri.path(), reason);
                metrics::counter!(telemetry::FOLLOWER_REFUSALS, "reason" => reason).increment(1);
                warn!(%session, %method, %uri, reason, "refused a follower request that would act as the customer");
            }
            // The request's own status says it (`cobrowse_http_requests_total`).
            Refusal::BindMethod | Refusal::BindTooLarge | Refusal::BindMalformed => {}
        }
    }

    /// The one place a refusal becomes an answer: `bind`'s in JSON for the
    /// agent's script, a follower's as a page its browser shows.
    pub fn into_response(self) -> Response<Body> {
        self.record();
        let status = self.status();
        let message = match &self {
            Refusal::BindMethod => r#"{"error":"use POST"}"#,
            Refusal::BindNotJson { .. } => r#"{"error":"send Content-Type: application/json"}"#,
            Refusal::BindTooLarge => {
                return web::json(
                    status,
                    format!(r#"{{"error":"body larger than {BIND_MAX_BYTES} bytes"}}"#),
                );
            }
            Refusal::BindMalformed => {
                r#"{"error":"expected {\"session\":…,\"token\":…} (the bind token from `joined`)"}"#
            }
            Refusal::BindToken { .. } => {
                r#"{"error":"the bind token is not (or no longer) good: it is used once, within a minute of `joined`"}"#
            }
            Refusal::Follower { method, rule, .. } => return one_driver(&rule.what(method)),
        };
        web::json(status, message)
    }
}

/// The answer to a follower's request that would change the site's state,
/// or act as the customer through another door; `what` names the request.
fn one_driver(what: &str) -> Response<Body> {
    let mut page = web::page(
        StatusCode::FORBIDDEN,
        "403 Not performed",
        "Not performed",
        &format!(
            "<p>{what} was not sent to the site. \
             In a shared session only the customer's browser makes requests that change the site's state \
             or act as the customer (rule: one driver); ask the customer, or act with remote control so the customer's browser performs it.</p>"
        ),
    );
    page.headers_mut()
        .insert("x-cobrowse-refused", HeaderValue::from_static("one-driver"));
    page
}
