//! The audit log: who did what to which session. Audit events are tracing
//! events with the target `audit` (`info!(target: "audit", event = "join",
//! session = .., participant = .., ..)`). Without `[audit] path` they stay
//! in the log like any other line; with it, [`AuditLayer`] writes each as
//! one JSON object per line to that file, and only there.
//!
//! A line holds `time` (RFC 3339, UTC), then the event's fields in the order
//! they were given: `event`, `session`, `participant`, `user` for operators,
//! and what else the event says. Events never carry what participants typed:
//! values stay in the store and the browsers.
//!
//! Writing: the thread that logs an event formats its line and hands it to a
//! bounded channel ([`QUEUE`] lines); one writer thread appends the lines to
//! the file and flushes whenever the channel is empty, so a line reaches the
//! file moments after its event. The logging thread never touches the file.
//! When the file falls [`QUEUE`] lines behind (a stalled disk) the logging
//! thread waits for room rather than drop an audit line.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Duration;

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::layer::{Context, Layer};

/// The target audit events are logged under.
pub const TARGET: &str = "audit";

/// Lines queued for the writer before a logging thread waits.
pub const QUEUE: usize = 4096;

enum Message {
    Line(String),
    /// Answered once every line sent before it is in the file.
    Flush(SyncSender<()>),
}

/// The tracing layer that sends audit events to the audit file.
pub struct AuditLayer {
    tx: SyncSender<Message>,
}

/// The audit file's writer, to flush at exit.
#[derive(Clone)]
pub struct AuditFile {
    tx: SyncSender<Message>,
}

/// Opens (appends to, or creates) the audit file and starts its writer.
pub fn open(path: &Path) -> std::io::Result<(AuditLayer, AuditFile)> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let (tx, rx) = sync_channel(QUEUE);
    std::thread::Builder::new()
        .name("audit-writer".into())
        .spawn(move || write_lines(rx, BufWriter::new(file)))?;
    Ok((AuditLayer { tx: tx.clone() }, AuditFile { tx }))
}

impl AuditFile {
    /// Waits (a few seconds at most) until every line logged so far is in
    /// the file.
    pub fn flush(&self) {
        let (ack, done) = sync_channel(1);
        if self.tx.send(Message::Flush(ack)).is_ok() {
            let _ = done.recv_timeout(Duration::from_secs(5));
        }
    }
}

fn write_lines(rx: Receiver<Message>, mut file: BufWriter<File>) {
    let mut failing = false;
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        // Everything queued now goes in one flush.
        while let Some(message) = next {
            match message {
                Message::Line(line) => {
                    if let Err(e) = file.write_all(line.as_bytes()) {
                        metrics::counter!(crate::telemetry::AUDIT_WRITE_ERRORS).increment(1);
                        if !failing {
                            // Not an audit event itself: that would come back here.
                            tracing::error!(error = %e, "cannot write to the audit file");
                        }
                        failing = true;
                    }
                }
                Message::Flush(ack) => {
                    let _ = file.flush();
                    let _ = ack.send(());
                }
            }
            next = rx.try_recv().ok();
        }
        if file.flush().is_ok() {
            failing = false;
        }
    }
}

impl<S: Subscriber> Layer<S> for AuditLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != TARGET {
            return;
        }
        let _ = self.tx.send(Message::Line(line(event)));
    }
}

/// The event as one JSON line, `time` first.
fn line(event: &Event<'_>) -> String {
    let mut time = String::new();
    let _ = SystemTime.format_time(&mut Writer::new(&mut time));
    let mut fields = Fields(vec![("time", Value::String(time))]);
    event.record(&mut fields);
    let mut out = String::from("{");
    for (i, (key, value)) in fields.0.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{}:{}", Value::String((*key).to_string()), value);
    }
    out.push_str("}\n");
    out
}

struct Fields(Vec<(&'static str, Value)>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .push((field.name(), Value::String(value.to_string())));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.push((field.name(), Value::Bool(value)));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.push((field.name(), value.into()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.push((field.name(), value.into()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .push((field.name(), Value::String(format!("{value:?}"))));
    }
}

#[cfg(test)]
mod tests {
    use tracing::info;
    use tracing_subscriber::prelude::*;

    use super::*;

    #[test]
    fn audit_events_become_json_lines_in_the_file_and_nothing_else_does() {
        let dir = std::env::temp_dir().join(format!("cobrowse-audit-{}", crate::logging::new_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let (layer, file) = open(&path).unwrap();
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let sid = "s1".to_string();
            info!(target: "audit", event = "join", session = %sid, participant = "p2", role = "operator", user = "ann \"the\" op", driving = true);
            info!(secret = "not audit", "an ordinary line");
        });
        file.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let v: Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["event"], "join");
        assert_eq!(v["session"], "s1");
        assert_eq!(v["participant"], "p2");
        assert_eq!(v["user"], "ann \"the\" op");
        assert_eq!(v["driving"], true);
        assert!(v["time"].as_str().unwrap().ends_with('Z'), "{v}");
        assert!(
            lines[0].starts_with("{\"time\":"),
            "time comes first: {}",
            lines[0]
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
