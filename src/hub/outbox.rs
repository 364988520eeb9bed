//! What the hub queues for one connection's writer: the [`Outbox`], bounded
//! by count and bytes. The state queues into it under its lock; the
//! connection's writer (`connection`) drains it.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;

use crate::lock::lock;

/// What a message that states the whole of something is about: a newer one
/// replaces an older one still waiting in the same [`Outbox`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Latest {
    /// A session's `status`.
    Status(String),
    /// The `queue` a waiting operator sees.
    Queue,
}

/// What the hub queues for a connection's writer.
#[derive(Debug)]
pub enum Outbound {
    /// A message, already serialised.
    Text(String),
    /// A message that supersedes an earlier one of the same kind.
    Latest {
        of: Latest,
        text: String,
    },
    /// Start delivering the session's commands to this participant; with
    /// `replay`, first send what the store holds.
    Follow {
        session: String,
        participant: String,
        replay: bool,
    },
    /// Stop delivering commands (left or ended).
    Unfollow,
    Close {
        code: u16,
        reason: &'static str,
    },
}

impl Outbound {
    /// What it costs while queued.
    fn bytes(&self) -> usize {
        let text = match self {
            Outbound::Text(t) | Outbound::Latest { text: t, .. } => t.len(),
            Outbound::Follow {
                session,
                participant,
                ..
            } => session.len() + participant.len(),
            Outbound::Unfollow | Outbound::Close { .. } => 0,
        };
        text + std::mem::size_of::<Outbound>()
    }
}

/// The hub's messages queued for one connection, bounded by count and by
/// bytes. A connection that lets it fill up does not read: it is closed
/// rather than buffered without bound. A `status` or `queue` message that
/// would queue right behind an older one of the same session or kind
/// replaces it instead: the newer says everything the older did, in the
/// same place in the order.
pub struct Outbox {
    queued: Mutex<Queued>,
    ready: Notify,
    max_messages: usize,
    max_bytes: usize,
}

#[derive(Default)]
struct Queued {
    messages: VecDeque<Outbound>,
    bytes: usize,
    /// Once full, the connection is being closed: the rest is dropped.
    overflowed: bool,
    closed: bool,
}

/// The outbox was full: the connection does not read.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

impl Outbox {
    pub fn new(max_messages: usize, max_bytes: usize) -> Outbox {
        Outbox {
            queued: Mutex::new(Queued::default()),
            ready: Notify::new(),
            max_messages: max_messages.max(1),
            max_bytes,
        }
    }

    fn queued(&self) -> std::sync::MutexGuard<'_, Queued> {
        lock(&self.queued)
    }

    /// Queues `out`. `Full` the first time it does not fit (one message
    /// always fits an empty outbox); after that everything is dropped.
    pub fn push(&self, out: Outbound) -> Result<(), Full> {
        let mut q = self.queued();
        if q.closed || q.overflowed {
            return Ok(());
        }
        if let Outbound::Latest { of, text } = &out
            && let Some(Outbound::Latest {
                of: last_of,
                text: last,
            }) = q.messages.back_mut()
            && last_of == of
        {
            let (old, new) = (last.len(), text.len());
            *last = text.clone();
            q.bytes = q.bytes - old + new;
            return Ok(());
        }
        let bytes = out.bytes();
        if !q.messages.is_empty()
            && (q.messages.len() >= self.max_messages || q.bytes + bytes > self.max_bytes)
        {
            q.overflowed = true;
            q.messages.clear();
            q.bytes = 0;
            return Err(Full);
        }
        q.bytes += bytes;
        q.messages.push_back(out);
        drop(q);
        self.ready.notify_one();
        Ok(())
    }

    /// The next queued message, if any.
    pub fn try_recv(&self) -> Option<Outbound> {
        let mut q = self.queued();
        let out = q.messages.pop_front()?;
        q.bytes -= out.bytes();
        Some(out)
    }

    /// The next queued message, waiting for one; `None` once closed.
    pub async fn recv(&self) -> Option<Outbound> {
        loop {
            if let Some(out) = self.try_recv() {
                return Some(out);
            }
            if self.queued().closed {
                return None;
            }
            // A push since the look above left a permit: no wake-up is lost.
            self.ready.notified().await;
        }
    }

    /// No more messages will be queued: the writer ends once it has sent
    /// what is queued.
    pub fn close(&self) {
        self.queued().closed = true;
        self.ready.notify_one();
    }

    /// Bytes queued (for tests).
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.queued().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(n: usize) -> Outbound {
        Outbound::Text("x".repeat(n))
    }

    fn status(session: &str, text: &str) -> Outbound {
        Outbound::Latest {
            of: Latest::Status(session.into()),
            text: text.into(),
        }
    }

    #[test]
    fn the_outbox_is_bounded_by_bytes_and_then_drops_everything() {
        let outbox = Outbox::new(100, 10_000);
        // One message always fits, however large.
        outbox.push(text(50_000)).unwrap();
        assert_eq!(outbox.push(text(10)), Err(Full));
        // Told once; what follows is dropped while the connection closes.
        outbox.push(text(10)).unwrap();
        assert!(outbox.try_recv().is_none());

        let outbox = Outbox::new(100, 10_000);
        for _ in 0..4 {
            outbox.push(text(2_000)).unwrap();
        }
        assert_eq!(outbox.push(text(2_000)), Err(Full));
        let outbox = Outbox::new(3, usize::MAX);
        for _ in 0..3 {
            outbox.push(text(1)).unwrap();
        }
        assert_eq!(outbox.push(text(1)), Err(Full));
    }

    #[test]
    fn a_newer_status_replaces_one_waiting_right_before_it() {
        let outbox = Outbox::new(100, usize::MAX);
        outbox.push(status("a", "a1")).unwrap();
        outbox.push(status("a", "a2")).unwrap();
        outbox.push(status("b", "b1")).unwrap();
        outbox.push(status("b", "b2")).unwrap();
        outbox.push(text(1)).unwrap();
        // Not across another message: the order of events stays.
        outbox.push(status("b", "b3")).unwrap();
        let texts: Vec<String> = std::iter::from_fn(|| outbox.try_recv())
            .map(|o| match o {
                Outbound::Text(t) | Outbound::Latest { text: t, .. } => t,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(texts, ["a2", "b2", "x", "b3"]);
        assert_eq!(outbox.bytes(), 0);
    }
}
