//! The proxy's one error type: why a request got an answer of ours instead
//! of the site's, and who failed. Each phase returns an [`Error`]; it turns
//! itself into the response, the metric and the log line in one place,
//! [`Error::into_response`], so a status, a page and a counter cannot drift
//! apart between the phases that refuse or fail.
//!
//! Pages never name the upstream (an internal host): what went wrong with
//! it is in the log only.

use std::fmt;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};
use tracing::{debug, warn};

use crate::body::Body;
use crate::telemetry;
use crate::web;

/// Who failed, as in pingora's error sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client's request cannot be served by a reverse proxy (the
    /// downstream side).
    Downstream,
    /// The site behind the proxy did not answer, or answered what the proxy
    /// does not pass on.
    Upstream,
    /// Both sides did their part; a rule of ours refuses (a service worker,
    /// a follower's response that cannot be masked).
    Policy,
}

/// Why a response cannot be served to a follower: nothing in it could be
/// checked for the customer's masked values. Each is a `reason` label of
/// [`telemetry::FOLLOWER_UNMASKABLE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmaskable {
    /// A type with no masking (an image, a PDF), read with the customer's
    /// cookies.
    Type,
    /// Partial content: a part of a document cannot be masked.
    Partial,
    /// A content encoding the proxy cannot decode.
    Encoding,
    /// HTML the mask could not rewrite.
    Html,
    /// Larger than the bound the body is masked within.
    TooLarge,
    /// Declared JSON, but not parsable.
    NotJson,
    /// The upstream's body failed before it ended.
    Upstream,
}

impl Unmaskable {
    /// The reason as logged and counted.
    pub fn label(self) -> &'static str {
        match self {
            Unmaskable::Type => "type",
            Unmaskable::Partial => "partial",
            Unmaskable::Encoding => "encoding",
            Unmaskable::Html => "html",
            Unmaskable::TooLarge => "too-large",
            Unmaskable::NotJson => "not-json",
            Unmaskable::Upstream => "upstream",
        }
    }
}

impl fmt::Display for Unmaskable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Why the proxy answered a request itself.
#[derive(Debug)]
pub enum Error {
    /// `CONNECT`: a tunnel to a host of the client's choosing, which a
    /// reverse proxy does not give.
    Connect,
    /// The target `*` (about the server itself) with a method other than
    /// `OPTIONS`.
    AsteriskTarget(Method),
    /// The `Host` header is not a host name (it is written into pages, URLs
    /// and policies).
    BadHost,
    /// No site is configured for the `Host`.
    NoSite,
    /// The request's path cannot be put in a URI for the upstream.
    BadPath,
    /// A site's service worker would take over the proxy host's pages and
    /// outlive the session.
    ServiceWorker,
    /// The upstream request failed: no connection, or no response.
    Upstream {
        upstream: String,
        error: hyper_util::client::legacy::Error,
    },
    /// The upstream sent no response headers within the response timeout.
    Timeout { upstream: String, timeout: Duration },
    /// More content codings stacked on a body than are accepted.
    StackedEncodings {
        codings: usize,
        max: usize,
        header: Option<HeaderValue>,
    },
    /// A response to a follower that could not be masked: refused, never
    /// passed through.
    Unmaskable {
        session: String,
        target: String,
        reason: Unmaskable,
    },
}

/// The methods the proxy passes on, as `Allow` tells them.
pub const ALLOW: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

impl Error {
    /// Who failed.
    pub fn side(&self) -> Side {
        match self {
            Error::Connect
            | Error::AsteriskTarget(_)
            | Error::BadHost
            | Error::NoSite
            | Error::BadPath => Side::Downstream,
            Error::Upstream { .. } | Error::Timeout { .. } | Error::StackedEncodings { .. } => {
                Side::Upstream
            }
            Error::ServiceWorker | Error::Unmaskable { .. } => Side::Policy,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::Connect => StatusCode::METHOD_NOT_ALLOWED,
            Error::AsteriskTarget(_) | Error::BadHost | Error::BadPath => StatusCode::BAD_REQUEST,
            Error::NoSite => StatusCode::MISDIRECTED_REQUEST,
            Error::ServiceWorker | Error::Unmaskable { .. } => StatusCode::FORBIDDEN,
            Error::Upstream { .. } | Error::StackedEncodings { .. } => StatusCode::BAD_GATEWAY,
            Error::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// What the page tells the browser.
    fn message(&self) -> String {
        match self {
            Error::Connect => "This is not a forward proxy: CONNECT is not available.".into(),
            Error::AsteriskTarget(method) => {
                format!("The request target `*` is only for OPTIONS, not {method}.")
            }
            Error::BadHost => "The Host header is not a host name.".into(),
            Error::NoSite => "No site is configured for this host.".into(),
            Error::BadPath => "The request path is not valid.".into(),
            Error::ServiceWorker => {
                "Service workers are not available through the co-browsing proxy.".into()
            }
            Error::Upstream { error, .. } if error.is_connect() => {
                "The site could not be reached. Try again in a moment.".into()
            }
            Error::Upstream { .. } => "The site failed to answer. Try again in a moment.".into(),
            Error::Timeout { .. } => {
                "The site did not answer in time. Try again in a moment.".into()
            }
            Error::StackedEncodings { codings, max, .. } => format!(
                "The site behind this proxy sent a body with {codings} stacked content encodings; at most {max} are accepted."
            ),
            Error::Unmaskable { .. } => {
                "The site's answer to this request could not be checked for the customer's \
                 masked values (passwords, payment fields), so it is not shown to operators. \
                 The customer sees it in their own browser."
                    .into()
            }
        }
    }

    /// Counts the error in its metric, where it has one.
    fn count(&self) {
        match self {
            Error::Connect | Error::AsteriskTarget(_) => {
                metrics::counter!(telemetry::BAD_TARGETS).increment(1);
            }
            Error::ServiceWorker => {
                metrics::counter!(telemetry::SERVICE_WORKERS_REFUSED).increment(1);
            }
            Error::Upstream { error, .. } => {
                let kind = if error.is_connect() {
                    "connect"
                } else {
                    "request"
                };
                metrics::counter!(telemetry::UPSTREAM_ERRORS, "kind" => kind).increment(1);
            }
            Error::Timeout { .. } => {
                metrics::counter!(telemetry::UPSTREAM_ERRORS, "kind" => "timeout").increment(1);
            }
            Error::StackedEncodings { .. } => {
                metrics::counter!(telemetry::UPSTREAM_ERRORS, "kind" => "stacked_encodings")
                    .increment(1);
            }
            Error::Unmaskable { reason, .. } => {
                metrics::counter!(telemetry::FOLLOWER_UNMASKABLE, "reason" => reason.label())
                    .increment(1);
            }
            // The request's own status says it (`cobrowse_http_requests_total`).
            Error::BadHost | Error::NoSite | Error::BadPath => {}
        }
    }

    /// Logs the error with what the page leaves out (the upstream's address,
    /// the cause). Failures upstream and refused followers are warnings; a
    /// client's bad request is the client's business.
    fn log(&self) {
        let side = self.side();
        match self {
            Error::Upstream { upstream, error } => {
                let cause = std::error::Error::source(error)
                    .map(ToString::to_string)
                    .unwrap_or_default();
                warn!(?side, error = %error, %cause, %upstream, "upstream request failed");
            }
            Error::Timeout { upstream, timeout } => {
                warn!(?side, %upstream, ?timeout, "upstream response timed out");
            }
            Error::StackedEncodings { header, max, .. } => {
                warn!(?side, encoding = ?header, "upstream response refused: more than {max} content codings");
            }
            Error::Unmaskable {
                session,
                target,
                reason,
            } => {
                warn!(?side, %session, %target, reason = reason.label(), "refused a response to a follower that could not be masked");
            }
            _ => debug!(?side, error = %self, "answered by the proxy"),
        }
    }

    /// The one place an error becomes an answer: counted, logged, and a
    /// readable page with its status.
    pub fn into_response(self) -> Response<Body> {
        self.count();
        self.log();
        let status = self.status();
        let mut response = match &self {
            // The page of the driver's rule, with a heading of its own.
            Error::Unmaskable { .. } => web::page(
                status,
                "Not shown",
                "Not shown",
                &format!("<p>{}</p>", web::escape(&self.message())),
            ),
            _ => page(status, &self.message()),
        };
        let headers = response.headers_mut();
        match self {
            Error::Connect => {
                headers.insert(header::ALLOW, HeaderValue::from_static(ALLOW));
            }
            Error::Unmaskable { .. } => {
                headers.insert("x-cobrowse-refused", HeaderValue::from_static("unmaskable"));
            }
            _ => {}
        }
        response
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Upstream { upstream, error } => write!(f, "upstream {upstream}: {error}"),
            Error::Timeout { upstream, timeout } => {
                write!(f, "upstream {upstream}: no response within {timeout:?}")
            }
            Error::Unmaskable { target, reason, .. } => {
                write!(f, "{target}: not maskable for a follower ({reason})")
            }
            _ => f.write_str(&self.message()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Upstream { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// A readable page for a failure on our side of the upstream, titled by its
/// status.
fn page(status: StatusCode, message: &str) -> Response<Body> {
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    let html = format!("<p>{}</p>", web::escape(message));
    web::page(status, &title, &title, &html)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_says_who_failed_and_answers_with_its_status() {
        for (error, side, status) in [
            (
                Error::Connect,
                Side::Downstream,
                StatusCode::METHOD_NOT_ALLOWED,
            ),
            (
                Error::NoSite,
                Side::Downstream,
                StatusCode::MISDIRECTED_REQUEST,
            ),
            (Error::ServiceWorker, Side::Policy, StatusCode::FORBIDDEN),
            (
                Error::Timeout {
                    upstream: "http://internal.test:81".into(),
                    timeout: Duration::from_secs(1),
                },
                Side::Upstream,
                StatusCode::GATEWAY_TIMEOUT,
            ),
            (
                Error::StackedEncodings {
                    codings: 3,
                    max: 2,
                    header: None,
                },
                Side::Upstream,
                StatusCode::BAD_GATEWAY,
            ),
        ] {
            assert_eq!(error.side(), side, "{error}");
            assert_eq!(error.into_response().status(), status);
        }
    }

    #[test]
    fn the_unmaskable_page_is_marked_and_the_connect_page_says_allow() {
        let refused = Error::Unmaskable {
            session: "s".into(),
            target: "/t".into(),
            reason: Unmaskable::NotJson,
        }
        .into_response();
        assert_eq!(refused.headers()["x-cobrowse-refused"], "unmaskable");
        assert_eq!(
            Error::Connect.into_response().headers()[header::ALLOW],
            ALLOW
        );
    }
}
