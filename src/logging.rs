//! The logs: human-readable lines by default, JSON lines with
//! `--log-format json`, on standard error. Every request and every hub
//! connection runs in a span carrying an `id` (see [`new_id`]), so all the
//! lines about one of them share it. Audit events (target `audit`) go to
//! the audit file instead when one is configured ([`crate::audit`]).

use std::io::IsTerminal;

use tracing::Level;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::prelude::*;

use crate::audit::AuditLayer;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line per event for people to read; coloured on a terminal.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields`
    /// (with `message`), and `spans` (each with its name and fields, the
    /// request's or connection's `id` among them).
    Json,
}

/// 64 random bits as 16 hex digits: the id of a request or a hub
/// connection in the logs. Random rather than counted, so ids from several
/// nodes or restarts do not collide.
pub fn new_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Installs the process-wide subscriber. The level comes from `RUST_LOG`
/// (default `info`). With `audit`, audit events go to it and not to the
/// log; otherwise they stay on the log under the target `audit`.
pub fn init(format: LogFormat, audit: Option<AuditLayer>) {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    if audit.is_some() {
        filter = filter.add_directive("audit=off".parse().expect("a valid directive"));
    }
    // Logs go to standard error; standard output carries the lines that say
    // where to go.
    let log = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_current_span(false)
            .with_span_list(true)
            .boxed(),
    };
    // The audit file takes every audit event whatever `RUST_LOG` says: the
    // record must not depend on how verbose the log is.
    let audit = audit.map(|a| a.with_filter(Targets::new().with_target("audit", Level::INFO)));
    tracing_subscriber::registry()
        .with(log.with_filter(filter))
        .with(audit)
        .init();
}

/// True at most once per `period` for one `last`: rate-limits a log line
/// that a client or an outage could otherwise repeat on every request.
pub fn once_per(
    last: &std::sync::Mutex<Option<std::time::Instant>>,
    period: std::time::Duration,
) -> bool {
    let mut last = crate::lock::lock(last);
    let now = std::time::Instant::now();
    if last.is_some_and(|t| now.duration_since(t) < period) {
        return false;
    }
    *last = Some(now);
    true
}
