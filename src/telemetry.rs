//! The metrics: every name the program records, its kind, help text and the
//! label values known up front, in one list ([`METRICS`]).
//!
//! The rest of the program records through the constants here, never a
//! string of its own. At start [`install`] describes every metric and
//! registers each series at zero, so a fresh process already shows every
//! series on `{prefix}metrics` and rates and alerts have something to start
//! from. Process metrics (resident memory, CPU, open files) come from
//! `metrics-process`, refreshed on every scrape.

use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use metrics::{Counter, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::body::{self, Body, BoxError};

// ---- requests -----------------------------------------------------------

pub const HTTP_REQUESTS: &str = "cobrowse_http_requests_total";
pub const HTTP_REQUEST_DURATION: &str = "cobrowse_http_request_duration_seconds";
pub const HTTP_RESPONSE_BYTES: &str = "cobrowse_http_response_bytes_total";

// ---- the proxy ----------------------------------------------------------

pub const UPSTREAM_ERRORS: &str = "cobrowse_proxy_upstream_errors_total";
pub const UPSTREAM_BYTES: &str = "cobrowse_proxy_upstream_bytes_total";
pub const REWRITE_DURATION: &str = "cobrowse_proxy_rewrite_seconds";
pub const HTML_PASSED_THROUGH: &str = "cobrowse_proxy_html_passed_through_total";
pub const SERVICE_WORKERS_REFUSED: &str = "cobrowse_proxy_service_workers_refused_total";
pub const BAD_TARGETS: &str = "cobrowse_proxy_bad_targets_total";

// ---- client connections -------------------------------------------------

pub const SERVER_CONNECTIONS: &str = "cobrowse_server_connections";
pub const SERVER_CONNECTIONS_REFUSED: &str = "cobrowse_server_connections_refused_total";
pub const SERVER_CONNECTIONS_CLOSED: &str = "cobrowse_server_connections_closed_total";
pub const SERVER_ACCEPT_ERRORS: &str = "cobrowse_server_accept_errors_total";

// ---- the driver ---------------------------------------------------------

pub const FOLLOWER_REFUSALS: &str = "cobrowse_driver_follower_refusals_total";
pub const DOCUMENTS_SERVED: &str = "cobrowse_driver_documents_served_total";
pub const DOCUMENTS_TOO_LARGE: &str = "cobrowse_driver_documents_too_large_total";
pub const FOLLOWER_UNMASKABLE: &str = "cobrowse_driver_follower_unmaskable_total";
pub const BINDS_REFUSED: &str = "cobrowse_driver_binds_refused_total";

// ---- the hub ------------------------------------------------------------

pub const HUB_SESSIONS: &str = "cobrowse_hub_sessions";
pub const HUB_PARTICIPANTS: &str = "cobrowse_hub_participants";
pub const HUB_CONNECTIONS: &str = "cobrowse_hub_connections";
pub const HUB_QUEUED_CALLS: &str = "cobrowse_hub_queued_calls";
pub const HUB_CALLS: &str = "cobrowse_hub_calls_total";
pub const HUB_CALLS_REFUSED: &str = "cobrowse_hub_calls_refused_total";
pub const HUB_COMMANDS: &str = "cobrowse_hub_commands_total";
pub const HUB_RESYNCS: &str = "cobrowse_hub_resyncs_total";
pub const HUB_ERRORS: &str = "cobrowse_hub_errors_total";
pub const HUB_SLOW_CLOSED: &str = "cobrowse_hub_slow_closed_total";
pub const HUB_OFFER_TIMEOUTS: &str = "cobrowse_hub_offer_timeouts_total";
pub const HUB_SESSIONS_ENDED: &str = "cobrowse_hub_sessions_ended_total";
pub const HUB_LOGINS: &str = "cobrowse_hub_logins_total";
pub const HUB_OPERATOR_REFUSALS: &str = "cobrowse_hub_operator_refusals_total";
pub const HUB_SOCKETS_REFUSED: &str = "cobrowse_hub_sockets_refused_total";
pub const HUB_RATE_LIMITED: &str = "cobrowse_hub_rate_limited_total";
pub const HUB_CODE_LOOKUPS: &str = "cobrowse_hub_code_lookups_total";
pub const FOREIGN_REQUESTS_REFUSED: &str = "cobrowse_hub_foreign_requests_refused_total";

// ---- the command store -------------------------------------------------

pub const STORE_UP: &str = "cobrowse_store_up";
pub const CLUSTER_LEADING: &str = "cobrowse_cluster_leading";
pub const CLUSTER_FORWARDED: &str = "cobrowse_cluster_forwarded_total";
pub const CLUSTER_LEADER_CHANGES: &str = "cobrowse_cluster_leader_changes_total";
pub const CLUSTER_UNSERVED: &str = "cobrowse_cluster_unserved_total";
pub const CLUSTER_PEER_REFUSED: &str = "cobrowse_cluster_peer_headers_refused_total";
pub const STORE_FAILURES: &str = "cobrowse_store_failures_total";

/// The `operation` label of [`STORE_FAILURES`]: what the store was doing.
pub mod store_operation {
    pub const OPEN: &str = "open";
    pub const APPEND: &str = "append";
    pub const SNAPSHOT: &str = "snapshot";
    pub const FOLLOW: &str = "follow";
    pub const REMOVE: &str = "remove";
    /// The health check's own PING, when nothing else was heard for a second.
    pub const PING: &str = "ping";
    /// The subscriber connection (live delivery between nodes).
    pub const SUBSCRIBER: &str = "subscriber";
    /// The hub's state written behind, or read back by a node taking over.
    pub const CHECKPOINT: &str = "checkpoint";
    /// The driver's kept documents and credentials written behind to Redis.
    pub const DOCUMENTS: &str = "documents";
    pub const ALL: &[&str] = &[
        OPEN, APPEND, SNAPSHOT, FOLLOW, REMOVE, PING, SUBSCRIBER, CHECKPOINT, DOCUMENTS,
    ];
}

// ---- across the program -------------------------------------------------

pub const LIMITS_HIT: &str = "cobrowse_limits_hit_total";
pub const AUDIT_WRITE_ERRORS: &str = "cobrowse_audit_write_errors_total";
pub const LOCK_POISON_RECOVERED: &str = "cobrowse_lock_poison_recovered_total";
pub const BUILD_INFO: &str = "cobrowse_build_info";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric: its name, kind, help text, and each label with the values it
/// takes (every combination is registered at start).
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    pub labels: &'static [(&'static str, &'static [&'static str])],
}

/// The `route` label of request metrics: which part of the program answered.
pub const ROUTES: &[&str] = &["proxy", "hub", "bind", "assets", "healthz", "metrics"];
/// The `status` label: the response's status class.
pub const STATUS_CLASSES: &[&str] = &["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The limits counted in [`LIMITS_HIT`], one label value each.
pub mod limit {
    /// A connection sent more messages per second, or a client address more
    /// calls, than allowed (`rate_limited`).
    pub const RATE: &str = "rate";
    /// A hub message over `hub.max_message_bytes`.
    pub const MESSAGE_SIZE: &str = "message_size";
    /// The hub holds `hub.max_sessions`, or a session's store is full.
    pub const CAPACITY: &str = "capacity";
    /// A connection let its outbound queue fill and was closed.
    pub const SLOW_READER: &str = "slow_reader";
    /// A driver's document over the driver's bounds, not kept for followers.
    pub const DOCUMENT_SIZE: &str = "document_size";
    /// The HTML rewriter's memory limit: the rest of a document passed through.
    pub const HTML_MEMORY: &str = "html_memory";
    /// Login attempts from one address or for one account.
    pub const LOGIN_RATE: &str = "login_rate";
    /// A document decoded past `proxy.max_decoded_bytes`: its response aborted.
    pub const DECODED_SIZE: &str = "max_decoded_bytes";
    pub const ALL: &[&str] = &[
        RATE,
        MESSAGE_SIZE,
        CAPACITY,
        SLOW_READER,
        DOCUMENT_SIZE,
        HTML_MEMORY,
        LOGIN_RATE,
        DECODED_SIZE,
    ];
}

/// Every metric the program records.
pub const METRICS: &[Metric] = &[
    Metric {
        name: HTTP_REQUESTS,
        kind: Kind::Counter,
        help: "HTTP requests answered, by route and status class (WebSocket handshakes count as 1xx).",
        labels: &[("route", ROUTES), ("status", STATUS_CLASSES)],
    },
    Metric {
        name: HTTP_REQUEST_DURATION,
        kind: Kind::Histogram,
        help: "Seconds from a request's arrival to its response headers, by route (body streaming not included).",
        labels: &[("route", ROUTES)],
    },
    Metric {
        name: HTTP_RESPONSE_BYTES,
        kind: Kind::Counter,
        help: "Response body bytes sent to clients, by route.",
        labels: &[("route", ROUTES)],
    },
    Metric {
        name: UPSTREAM_ERRORS,
        kind: Kind::Counter,
        help: "Upstream requests that failed: could not connect, failed, or timed out waiting for headers.",
        labels: &[(
            "kind",
            &[
                "connect",
                "request",
                "timeout",
                "body_idle",
                "stacked_encodings",
            ],
        )],
    },
    Metric {
        name: UPSTREAM_BYTES,
        kind: Kind::Counter,
        help: "Body bytes exchanged with upstreams: request bodies sent, response bodies received (as encoded on the wire).",
        labels: &[("direction", &["sent", "received"])],
    },
    Metric {
        name: REWRITE_DURATION,
        kind: Kind::Histogram,
        help: "Seconds spent rewriting one response body (decode, rewrite, encode), summed over its chunks.",
        labels: &[],
    },
    Metric {
        name: HTML_PASSED_THROUGH,
        kind: Kind::Counter,
        help: "HTML documents (or their rest) passed through without rewriting, by reason.",
        labels: &[(
            "reason",
            &["charset", "memory", "ambiguity", "handler", "unfinished"],
        )],
    },
    Metric {
        name: SERVICE_WORKERS_REFUSED,
        kind: Kind::Counter,
        help: "Service worker scripts refused.",
        labels: &[],
    },
    Metric {
        name: FOLLOWER_REFUSALS,
        kind: Kind::Counter,
        help: "Follower requests refused because they would change the site's state or act as the customer, by reason.",
        labels: &[(
            "reason",
            &["method", "method-override", "websocket", "event-stream"],
        )],
    },
    Metric {
        name: DOCUMENTS_SERVED,
        kind: Kind::Counter,
        help: "Documents served to followers from the driver's kept copies.",
        labels: &[],
    },
    Metric {
        name: DOCUMENTS_TOO_LARGE,
        kind: Kind::Counter,
        help: "Driver documents not kept for followers because they were over the driver's bounds.",
        labels: &[],
    },
    Metric {
        name: HUB_SESSIONS,
        kind: Kind::Gauge,
        help: "Sessions the hub holds.",
        labels: &[],
    },
    Metric {
        name: HUB_PARTICIPANTS,
        kind: Kind::Gauge,
        help: "Participants in sessions, connected or not.",
        labels: &[],
    },
    Metric {
        name: HUB_CONNECTIONS,
        kind: Kind::Gauge,
        help: "Open hub WebSocket connections.",
        labels: &[],
    },
    Metric {
        name: HUB_QUEUED_CALLS,
        kind: Kind::Gauge,
        help: "Calls waiting for an operator.",
        labels: &[],
    },
    Metric {
        name: HUB_CALLS,
        kind: Kind::Counter,
        help: "Calls that started a session.",
        labels: &[],
    },
    Metric {
        name: HUB_CALLS_REFUSED,
        kind: Kind::Counter,
        help: "Calls refused before a session started, by reason.",
        labels: &[("reason", &["max_sessions"])],
    },
    Metric {
        name: HUB_CODE_LOOKUPS,
        kind: Kind::Counter,
        help: "Operators' join-code lookups, by result.",
        labels: &[("result", &["joined", "unknown", "rate_limited"])],
    },
    Metric {
        name: HUB_COMMANDS,
        kind: Kind::Counter,
        help: "Difference commands accepted into the store.",
        labels: &[],
    },
    Metric {
        name: HUB_RESYNCS,
        kind: Kind::Counter,
        help: "Participants resynchronised from the store after falling behind the live feed.",
        labels: &[],
    },
    Metric {
        name: HUB_ERRORS,
        kind: Kind::Counter,
        help: "Hub messages refused, by error code (docs/protocol.md).",
        labels: &[(
            "code",
            &[
                "bad_json",
                "bad_message",
                "too_large",
                "rate_limited",
                "not_in_session",
                "in_session",
                "no_control",
                "unknown_session",
                "not_offered",
                "limit",
                "forbidden",
                "unavailable",
                "unknown_code",
            ],
        )],
    },
    Metric {
        name: STORE_UP,
        kind: Kind::Gauge,
        help: "1 while the command store answers, 0 while it does not (a shared store unreachable); read at each scrape.",
        labels: &[],
    },
    Metric {
        name: STORE_FAILURES,
        kind: Kind::Counter,
        help: "Store requests (commands, and the driver's kept documents) that failed because the store did not answer, by operation.",
        labels: &[("operation", store_operation::ALL)],
    },
    Metric {
        name: CLUSTER_LEADING,
        kind: Kind::Gauge,
        help: "1 while this node leads the cluster (serves the shared sessions), else 0 (always 0 without a cluster).",
        labels: &[],
    },
    Metric {
        name: CLUSTER_FORWARDED,
        kind: Kind::Counter,
        help: "Requests this node forwarded to the cluster's leader, by route.",
        labels: &[("route", &["hub", "bind", "proxy"])],
    },
    Metric {
        name: CLUSTER_LEADER_CHANGES,
        kind: Kind::Counter,
        help: "Times the leader this node knows of changed (to or from none included).",
        labels: &[],
    },
    Metric {
        name: CLUSTER_UNSERVED,
        kind: Kind::Counter,
        help: "Requests for shared sessions answered 503 because no leader could serve them, by reason.",
        labels: &[(
            "reason",
            &["no_leader", "taking_over", "unreachable", "not_leader"],
        )],
    },
    Metric {
        name: CLUSTER_PEER_REFUSED,
        kind: Kind::Counter,
        help: "Requests carrying peer headers that were not believed (wrong or no secret, no client address); they were removed and the request served as the connection's own.",
        labels: &[("reason", &["secret", "client"])],
    },
    Metric {
        name: HUB_SLOW_CLOSED,
        kind: Kind::Counter,
        help: "Connections closed because they did not read their messages.",
        labels: &[],
    },
    Metric {
        name: HUB_OFFER_TIMEOUTS,
        kind: Kind::Counter,
        help: "Offers to operators that timed out.",
        labels: &[],
    },
    Metric {
        name: HUB_SESSIONS_ENDED,
        kind: Kind::Counter,
        help: "Sessions ended, by reason.",
        labels: &[(
            "reason",
            &["customer_hangup", "operator_left", "expired", "shutdown"],
        )],
    },
    Metric {
        name: HUB_LOGINS,
        kind: Kind::Counter,
        help: "Operator login attempts, by outcome.",
        labels: &[("outcome", &["ok", "bad_credentials", "rate_limited"])],
    },
    Metric {
        name: BAD_TARGETS,
        kind: Kind::Counter,
        help: "Requests whose target (`*`, CONNECT, an unusable path) was answered locally, never sent upstream.",
        labels: &[],
    },
    Metric {
        name: SERVER_CONNECTIONS,
        kind: Kind::Gauge,
        help: "Client connections open, WebSockets included.",
        labels: &[],
    },
    Metric {
        name: SERVER_CONNECTIONS_REFUSED,
        kind: Kind::Counter,
        help: "Client connections refused at accept, by the cap that refused them.",
        labels: &[(
            "reason",
            &["max_connections", "max_connections_per_address"],
        )],
    },
    Metric {
        name: SERVER_CONNECTIONS_CLOSED,
        kind: Kind::Counter,
        help: "Client connections closed by a timeout or by shutdown, by reason.",
        labels: &[(
            "reason",
            &[
                "idle_timeout",
                "header_read_timeout",
                "tls_handshake_timeout",
                "shutdown",
            ],
        )],
    },
    Metric {
        name: SERVER_ACCEPT_ERRORS,
        kind: Kind::Counter,
        help: "Failed accepts (out of file descriptors and the like), each followed by a back-off.",
        labels: &[],
    },
    Metric {
        name: FOLLOWER_UNMASKABLE,
        kind: Kind::Counter,
        help: "Responses refused to a follower because they could not be masked, by reason.",
        labels: &[(
            "reason",
            &[
                "html",
                "type",
                "partial",
                "upstream",
                "encoding",
                "too-large",
                "not-json",
            ],
        )],
    },
    Metric {
        name: BINDS_REFUSED,
        kind: Kind::Counter,
        help: "Requests to bind a browser to a participant refused, by reason.",
        labels: &[("reason", &["content_type", "token"])],
    },
    Metric {
        name: HUB_OPERATOR_REFUSALS,
        kind: Kind::Counter,
        help: "Operator routes (login, logout, operator WebSockets) refused because they did not come from the console's own origin, or came in on the wrong door.",
        labels: &[("reason", &["origin", "door"])],
    },
    Metric {
        name: HUB_SOCKETS_REFUSED,
        kind: Kind::Counter,
        help: "Hub WebSocket handshakes refused by a socket cap.",
        labels: &[("reason", &["per_address"])],
    },
    Metric {
        name: HUB_RATE_LIMITED,
        kind: Kind::Counter,
        help: "Hub frames dropped because their connection was over hub.messages_per_second.",
        labels: &[],
    },
    Metric {
        name: FOREIGN_REQUESTS_REFUSED,
        kind: Kind::Counter,
        help: "State-changing requests under the prefix refused because they did not come from the proxy's own pages.",
        labels: &[("route", &["bind", "login", "logout", "other"])],
    },
    Metric {
        name: LIMITS_HIT,
        kind: Kind::Counter,
        help: "Times a configured or built-in bound refused or cut something, by limit.",
        labels: &[("limit", limit::ALL)],
    },
    Metric {
        name: AUDIT_WRITE_ERRORS,
        kind: Kind::Counter,
        help: "Audit lines that could not be written to the audit file.",
        labels: &[],
    },
    Metric {
        name: LOCK_POISON_RECOVERED,
        kind: Kind::Counter,
        help: "Locks found poisoned by a panic (a bug) and recovered to keep serving; each is also logged.",
        labels: &[],
    },
    Metric {
        name: BUILD_INFO,
        kind: Kind::Gauge,
        help: "Always 1; the labels say which build runs (revision: COBROWSE_REVISION at build time, else `unknown`).",
        labels: &[],
    },
];

/// Bucket bounds of the latency histograms, in seconds.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The recorder and the process collector, installed once per process.
pub struct Telemetry {
    handle: PrometheusHandle,
    process: metrics_process::Collector,
}

impl Telemetry {
    /// The Prometheus text of every series, process metrics refreshed.
    pub fn render(&self) -> String {
        self.process.collect();
        self.handle.render()
    }
}

/// Installs the process-wide recorder, describes every metric and registers
/// every series at zero. Returns the same [`Telemetry`] on every call; `None`
/// when another recorder was installed first (a test process).
pub fn install() -> Option<&'static Telemetry> {
    static TELEMETRY: OnceLock<Option<Telemetry>> = OnceLock::new();
    TELEMETRY
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .expect("the bucket list is not empty")
                .install_recorder()
                .ok()?;
            register_all();
            let process = metrics_process::Collector::default();
            process.describe();
            process.collect();
            Some(Telemetry { handle, process })
        })
        .as_ref()
}

fn register_all() {
    for m in METRICS {
        let unit = if m.name.ends_with("_seconds") {
            Some(Unit::Seconds)
        } else if m.name.ends_with("_bytes_total") {
            Some(Unit::Bytes)
        } else {
            None
        };
        for labels in label_sets(m.labels) {
            match m.kind {
                Kind::Counter => {
                    metrics::describe_counter!(m.name, unit.unwrap_or(Unit::Count), m.help);
                    // Registering is enough: the series shows 0.
                    let _ = metrics::counter!(m.name, &labels);
                }
                Kind::Gauge => {
                    metrics::describe_gauge!(m.name, m.help);
                    if m.name != BUILD_INFO {
                        metrics::gauge!(m.name, &labels).set(0.0);
                    }
                }
                Kind::Histogram => {
                    metrics::describe_histogram!(m.name, unit.unwrap_or(Unit::Count), m.help);
                    let _ = metrics::histogram!(m.name, &labels);
                }
            }
        }
    }
    let revision = option_env!("COBROWSE_REVISION").unwrap_or("unknown");
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"), "revision" => revision)
        .set(1.0);
}

/// Every combination of the label values.
fn label_sets(
    labels: &[(&'static str, &'static [&'static str])],
) -> Vec<Vec<(&'static str, &'static str)>> {
    let mut sets: Vec<Vec<(&'static str, &'static str)>> = vec![Vec::new()];
    for (key, values) in labels {
        sets = sets
            .into_iter()
            .flat_map(|set| {
                values.iter().map(move |v| {
                    let mut s = set.clone();
                    s.push((*key, *v));
                    s
                })
            })
            .collect();
    }
    sets
}

/// Counts a bound that refused or cut something (see [`limit`]).
pub fn limit_hit(limit: &'static str) {
    metrics::counter!(LIMITS_HIT, "limit" => limit).increment(1);
}

/// The `status` label of a response.
pub fn status_class(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Records one answered request (its headers are ready).
pub fn request_done(route: &'static str, status: http::StatusCode, elapsed: Duration) {
    metrics::counter!(HTTP_REQUESTS, "route" => route, "status" => status_class(status))
        .increment(1);
    metrics::histogram!(HTTP_REQUEST_DURATION, "route" => route).record(elapsed.as_secs_f64());
}

/// `inner`, with the bytes of its data frames added to `counter` as they
/// pass.
pub fn count_bytes(inner: Body, counter: Counter) -> Body {
    body::boxed(Counted { inner, counter })
}

struct Counted {
    inner: Body,
    counter: Counter,
}

impl HttpBody for Counted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.counter.increment(data.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_listed_once_and_prometheus_shaped() {
        let mut seen = std::collections::HashSet::new();
        for m in METRICS {
            assert!(seen.insert(m.name), "{} listed twice", m.name);
            assert!(m.name.starts_with("cobrowse_"), "{}", m.name);
            assert!(
                m.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{}",
                m.name
            );
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}: counters and only counters end in _total",
                m.name
            );
            assert!(!m.help.is_empty());
        }
    }

    #[test]
    fn every_combination_of_label_values_is_a_series() {
        let sets = label_sets(&[("route", &["a", "b"]), ("status", &["1", "2", "3"])]);
        assert_eq!(sets.len(), 6);
        assert_eq!(label_sets(&[]).len(), 1);
    }

    #[test]
    fn refusal_codes_are_all_registered() {
        use crate::hub::protocol::ErrorCode::*;
        let codes = METRICS
            .iter()
            .find(|m| m.name == HUB_ERRORS)
            .unwrap()
            .labels[0]
            .1;
        for c in [
            BadJson,
            BadMessage,
            TooLarge,
            RateLimited,
            NotInSession,
            InSession,
            NoControl,
            UnknownSession,
            NotOffered,
            Limit,
            Forbidden,
            Unavailable,
        ] {
            assert!(codes.contains(&c.as_str()), "{}", c.as_str());
        }
    }
}
