//! The store of difference commands, behind an interface so a shared store
//! (Redis: a hash per session for the latest command per key, a sorted set
//! for the write order, publish/subscribe for fan-out) can replace the
//! in-memory one without touching the rest of the hub.
//!
//! The contract every implementation keeps:
//! - `append` assigns the session's next sequence number, applies the
//!   command to the stored state and publishes it to every subscription, as
//!   one step: subscribers see commands in sequence order.
//! - `follow` returns a subscription and a snapshot such that every command
//!   with a sequence number above the snapshot's `last_seq` arrives on the
//!   subscription. Receivers skip anything at or below it, so there is no gap
//!   and no duplicate between the replay and live delivery. (A store with a
//!   remote publisher subscribes first, then reads the snapshot.)
//! - A subscription that falls behind reports `Lagged`; the receiver asks
//!   for a fresh snapshot and resynchronises from it.
//!
//! Memory: a command is kept once, as the text receivers get (the parsed
//! form is dropped once it is stamped), shared by the store, the live feed
//! and every snapshot. The live feed keeps the latest commands up to a
//! bound by count and by bytes per session ([`Feed`]); a receiver further
//! behind costs nothing more, it is resynchronised instead.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::protocol::{Attribute, Command, StampedOut};

/// A command accepted into a session: its stamps, what routing it needs,
/// and its wire form.
#[derive(Debug)]
pub struct Stamped {
    pub seq: u64,
    pub sender: String,
    /// Shared with the store's indexes: a key is kept once.
    pub key: Arc<str>,
    pub attribute: Attribute,
    /// Whether it is the URL key of the frame its key names.
    pub frame_url: bool,
    /// The `command` message exactly as receivers get it, at its exact size,
    /// in the form a WebSocket frame takes: every receiver's frame shares
    /// these bytes instead of copying them.
    pub json: Utf8Bytes,
}

/// A command's wire form at its exact size: serialising grows the buffer by
/// doubling, keep only what is used (and a buffer exactly full is taken
/// over by the frame's bytes without a copy).
pub fn wire(json: String) -> Utf8Bytes {
    Utf8Bytes::from(String::from(json.into_boxed_str()))
}

/// What keeping one command costs beyond its text, its key and its sender:
/// the stamps, the store's two index entries and the allocator's headers.
pub const STAMPED_OVERHEAD: usize = 192;

impl Stamped {
    /// Stamps `command` as command `seq` of `session` from `sender`, keeping
    /// its wire form only.
    pub fn new(session: &str, sender: &str, seq: u64, command: Command) -> Stamped {
        let json = serde_json::to_string(&StampedOut {
            kind: "command",
            session,
            sender,
            seq,
            command: &command,
        })
        .expect("commands always serialise");
        Stamped {
            seq,
            sender: sender.to_string(),
            frame_url: command.is_frame_url(),
            attribute: command.attribute,
            key: command.key.into(),
            json: wire(json),
        }
    }

    /// The wire form of `command` around its sequence number, for a store
    /// that assigns the number elsewhere (Redis, in a script): `head` ends
    /// with `"seq":`, `tail` follows the number. With the number between
    /// them they are exactly [`Stamped::new`]'s `json`.
    pub fn wire_parts(session: &str, sender: &str, command: &Command) -> (String, String) {
        let json = serde_json::to_string(&StampedOut {
            kind: "command",
            session,
            sender,
            seq: 0,
            command,
        })
        .expect("commands always serialise");
        // `type`, `session` and `sender` come first; the strings are escaped,
        // so the first `"seq":0` is the field.
        const FIELD: &str = "\"seq\":";
        let at = json.find("\"seq\":0").expect("the seq field is serialised") + FIELD.len();
        (json[..at].to_string(), json[at + 1..].to_string())
    }

    /// Whether `participant` receives this command live.
    pub fn is_for(&self, participant: &str) -> bool {
        self.sender != participant || self.attribute == Attribute::All
    }

    /// What it costs against the session's byte bounds: its memory.
    pub fn bytes(&self) -> usize {
        self.json.len() + self.key.len() + self.sender.len() + STAMPED_OVERHEAD
    }
}

/// The stored state of one session, in replay order: frame URLs shallow to
/// deep, then every other command in the order its key was last written.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub commands: Vec<Arc<Stamped>>,
    /// The sequence number of the last command accepted before the snapshot
    /// was taken (0 when none was).
    pub last_seq: u64,
}

impl Snapshot {
    /// The `replay` message for this snapshot: everything, for a joiner.
    pub fn replay_json(&self, session: &str) -> String {
        self.replay_json_for(session, None)
    }

    /// The `replay` message; with `receiver`, only what that participant
    /// would have received live (a resynchronisation must not hand a sender
    /// back its own `others` commands, which could undo newer local input).
    pub fn replay_json_for(&self, session: &str, receiver: Option<&str>) -> String {
        let wanted = |c: &&Arc<Stamped>| receiver.is_none_or(|r| c.is_for(r));
        let session = serde_json::to_string(session).expect("strings serialise");
        let last_seq = self.last_seq.to_string();
        const HEAD: [&str; 3] = [
            "{\"type\":\"replay\",\"session\":",
            ",\"last_seq\":",
            ",\"commands\":[",
        ];
        // Each command is already in its wire form: the message is one
        // concatenation into a buffer of its exact size (an upper bound when
        // some are left out), never grown and copied on the way.
        let size = HEAD.iter().map(|h| h.len()).sum::<usize>()
            + session.len()
            + last_seq.len()
            + self.commands.iter().map(|c| c.json.len()).sum::<usize>()
            + self.commands.len().saturating_sub(1)
            + "]}".len();
        let mut out = String::with_capacity(size);
        out.push_str(HEAD[0]);
        out.push_str(&session);
        out.push_str(HEAD[1]);
        out.push_str(&last_seq);
        out.push_str(HEAD[2]);
        for (i, c) in self.commands.iter().filter(wanted).enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&c.json);
        }
        out.push_str("]}");
        out
    }
}

/// Why the store refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A bound was hit; nothing was changed.
    #[error("{0}")]
    Limit(String),
    /// The session is not (or no longer) in the store.
    #[error("no such session in the store")]
    UnknownSession,
    /// The store itself failed (a shared store unreachable).
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// Whether the store answers, as `{prefix}healthz` and the
/// `cobrowse_store_up` gauge report it. Reading it costs nothing: a store
/// keeps it up to date on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreHealth {
    /// The store's kind, as `[store] kind` names it.
    pub kind: &'static str,
    /// `None` while it answers; otherwise why not, in words fit for an
    /// operator of the system (no addresses, no credentials).
    pub down: Option<String>,
}

/// The bounds a store enforces per session.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub max_keys: usize,
    pub max_bytes: usize,
}

/// Why a subscription yields no command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedError {
    /// The receiver fell this many commands behind what the feed keeps:
    /// resynchronise from a snapshot.
    Lagged(u64),
    /// The session is gone from the store.
    Closed,
}

/// The live feed of one session's accepted commands, kept for receivers
/// that have not had them yet: once every subscriber has a command, the feed
/// lets go of it. At most `max_commands` of them and `max_bytes` of their
/// cost are kept (always the newest one); a receiver further behind is told
/// `Lagged`. Commands that are still the latest of their key are shared with
/// the store and cost nothing more here; superseded ones are what the bound
/// holds back.
pub struct Feed {
    ring: Mutex<Ring>,
    /// The last sequence number published; wakes subscribers.
    published: watch::Sender<u64>,
}

struct Ring {
    commands: VecDeque<Arc<Stamped>>,
    bytes: usize,
    max_commands: usize,
    max_bytes: usize,
    /// The next sequence number of each subscriber.
    cursors: HashMap<u64, u64>,
    next_subscriber: u64,
    closed: bool,
    /// Commands up to this one may never arrive (a shared store's link was
    /// lost): a subscriber still waiting for one resynchronises.
    lost_up_to: u64,
}

impl Ring {
    fn pop(&mut self) {
        if let Some(old) = self.commands.pop_front() {
            self.bytes -= old.bytes();
        }
    }

    /// Lets go of what every subscriber has had, then of the oldest past
    /// the bounds.
    fn trim(&mut self) {
        let wanted = self.cursors.values().min().copied().unwrap_or(u64::MAX);
        while self.commands.front().is_some_and(|c| c.seq < wanted) {
            self.pop();
        }
        while self.commands.len() > 1
            && (self.commands.len() > self.max_commands || self.bytes > self.max_bytes)
        {
            self.pop();
        }
    }
}

impl Feed {
    pub fn new(max_commands: usize, max_bytes: usize) -> Arc<Feed> {
        let ring = Ring {
            commands: VecDeque::new(),
            bytes: 0,
            max_commands: max_commands.max(1),
            max_bytes,
            cursors: HashMap::new(),
            next_subscriber: 0,
            closed: false,
            lost_up_to: 0,
        };
        Arc::new(Feed {
            ring: Mutex::new(ring),
            published: watch::Sender::new(0),
        })
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        crate::lock::lock(&self.ring)
    }

    /// Publishes the next command. Sequence numbers follow each other; a
    /// shared store delivering from elsewhere may repeat one (ignored) or
    /// skip some (the ring restarts at the new one, so a receiver waiting
    /// for a skipped one is told `Lagged` and resynchronises).
    pub fn publish(&self, command: Arc<Stamped>) {
        let seq = command.seq;
        {
            let mut r = self.ring();
            if r.closed || seq <= r.lost_up_to {
                return;
            }
            match r.commands.back().map(|c| c.seq) {
                Some(last) if seq <= last => return,
                Some(last) if seq > last + 1 => {
                    r.commands.clear();
                    r.bytes = 0;
                }
                _ => {}
            }
            r.bytes += command.bytes();
            r.commands.push_back(command);
            r.trim();
        }
        self.published.send_replace(seq);
    }

    /// A subscription to every command after `last_seq`.
    pub fn subscribe(self: &Arc<Self>, last_seq: u64) -> Subscription {
        let id = {
            let mut r = self.ring();
            let id = r.next_subscriber;
            r.next_subscriber += 1;
            r.cursors.insert(id, last_seq + 1);
            r.trim();
            id
        };
        Subscription {
            feed: self.clone(),
            id,
            next: last_seq + 1,
            woken: self.published.subscribe(),
        }
    }

    /// Commands up to `seq` may never arrive (a shared store's link was lost
    /// and is back): every subscriber waiting for one is told `Lagged` and
    /// resynchronises from a snapshot, which has them.
    pub fn lost(&self, seq: u64) {
        {
            let mut r = self.ring();
            r.lost_up_to = r.lost_up_to.max(seq);
            while r.commands.front().is_some_and(|c| c.seq <= seq) {
                r.pop();
            }
        }
        self.published.send_modify(|_| {});
    }

    /// The session is gone: subscribers get `Closed`, and the commands kept
    /// for them are released.
    pub fn close(&self) {
        {
            let mut r = self.ring();
            r.closed = true;
            r.commands.clear();
            r.bytes = 0;
        }
        self.published.send_modify(|_| {});
    }

    /// Commands kept for subscribers (for tests).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.ring().commands.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A receiver's place in a session's live feed.
pub struct Subscription {
    feed: Arc<Feed>,
    id: u64,
    /// The sequence number of the next command this receiver gets.
    next: u64,
    woken: watch::Receiver<u64>,
}

impl Subscription {
    /// The next command, waiting for it; `Lagged` when the feed no longer
    /// holds it.
    pub async fn recv(&mut self) -> Result<Arc<Stamped>, FeedError> {
        loop {
            // Marked seen before looking, so a command published after the
            // look wakes the wait below.
            self.woken.borrow_and_update();
            {
                let mut r = self.feed.ring();
                if r.closed {
                    return Err(FeedError::Closed);
                }
                if self.next <= r.lost_up_to {
                    let missed = r.lost_up_to + 1 - self.next;
                    self.next = r.lost_up_to + 1;
                    r.cursors.insert(self.id, self.next);
                    r.trim();
                    return Err(FeedError::Lagged(missed));
                }
                if let Some(first) = r.commands.front() {
                    if first.seq > self.next {
                        let missed = first.seq - self.next;
                        self.next = first.seq;
                        r.cursors.insert(self.id, self.next);
                        return Err(FeedError::Lagged(missed));
                    }
                    if let Some(c) = r.commands.get((self.next - first.seq) as usize).cloned() {
                        self.next += 1;
                        r.cursors.insert(self.id, self.next);
                        r.trim();
                        return Ok(c);
                    }
                }
            }
            if self.woken.changed().await.is_err() {
                return Err(FeedError::Closed);
            }
        }
    }

    /// Skips to the commands after `last_seq` (after a resynchronisation).
    pub fn skip_to(&mut self, last_seq: u64) {
        self.next = self.next.max(last_seq + 1);
        let mut r = self.feed.ring();
        r.cursors.insert(self.id, self.next);
        r.trim();
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut r = self.feed.ring();
        r.cursors.remove(&self.id);
        r.trim();
    }
}

pub trait Store: Send + Sync + 'static {
    /// Makes room for a new session (idempotent).
    fn open<'a>(&'a self, session: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Stamps, stores and publishes one command.
    fn append<'a>(
        &'a self,
        session: &'a str,
        sender: &'a str,
        command: Command,
    ) -> BoxFuture<'a, Result<Arc<Stamped>, StoreError>>;

    /// The current state without subscribing (resynchronisation).
    fn snapshot<'a>(&'a self, session: &'a str) -> BoxFuture<'a, Result<Snapshot, StoreError>>;

    /// A subscription and a snapshot that fit together (see the module
    /// documentation).
    fn follow<'a>(
        &'a self,
        session: &'a str,
    ) -> BoxFuture<'a, Result<(Subscription, Snapshot), StoreError>>;

    /// Forgets everything kept for the session; its subscriptions close.
    fn remove<'a>(&'a self, session: &'a str) -> BoxFuture<'a, ()>;

    /// Whether the store answers, as last seen (never waits for it).
    fn health(&self) -> StoreHealth;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn stamped(seq: u64) -> Arc<Stamped> {
        let command = Command {
            key: format!("top/{seq}"),
            attribute: Attribute::Others,
            function: "value".into(),
            args: vec![Value::from("v")],
        };
        Arc::new(Stamped::new("s", "p1", seq, command))
    }

    /// A shared store delivers from elsewhere: a repeated command is not
    /// delivered twice, and a skipped one makes the receiver resynchronise
    /// rather than wait for it.
    #[tokio::test]
    async fn a_feed_drops_repeats_and_reports_gaps() {
        let feed = Feed::new(16, usize::MAX);
        let mut live = feed.subscribe(0);
        // Holds every command in the feed: nothing is let go of early.
        let _idle = feed.subscribe(0);
        for seq in [1, 2, 2, 3] {
            feed.publish(stamped(seq));
        }
        for seq in [1, 2, 3] {
            assert_eq!(live.recv().await.unwrap().seq, seq);
        }
        feed.publish(stamped(3));
        feed.publish(stamped(6));
        assert_eq!(live.recv().await.unwrap_err(), FeedError::Lagged(2));
        assert_eq!(live.recv().await.unwrap().seq, 6);
    }

    /// A replay is the stored wire forms joined as they are, in a buffer
    /// sized once; a receiver's replay leaves out only its own `others`
    /// commands, never lets in one it would not have received live.
    #[test]
    fn a_replay_is_the_wire_forms_joined_for_its_receiver() {
        let command = |key: &str, attribute| Command {
            key: key.into(),
            attribute,
            function: "value".into(),
            args: vec![Value::from("v")],
        };
        let theirs = Stamped::new("s\"1", "p2", 2, command("top/2", Attribute::Others));
        let echoed = Stamped::new("s\"1", "p2", 3, command("top/3", Attribute::All));
        let snapshot = Snapshot {
            commands: vec![stamped(1), Arc::new(theirs), Arc::new(echoed)],
            last_seq: 3,
        };
        let all = snapshot.replay_json("s\"1");
        assert_eq!(all.capacity(), all.len(), "grown on the way");
        let parsed: Value = serde_json::from_str(&all).unwrap();
        assert_eq!(parsed["session"], "s\"1");
        assert_eq!(parsed["last_seq"], 3);
        let wire: Vec<&str> = snapshot.commands.iter().map(|c| &*c.json).collect();
        assert!(all.ends_with(&format!(",\"commands\":[{}]}}", wire.join(","))));
        let seqs = |json: &str| -> Vec<u64> {
            let v: Value = serde_json::from_str(json).unwrap();
            let commands = v["commands"].as_array().unwrap();
            commands
                .iter()
                .map(|c| c["seq"].as_u64().unwrap())
                .collect()
        };
        assert_eq!(seqs(&all), [1, 2, 3]);
        // p2 sent 2 to the others and 3 to all: 2 is not handed back.
        assert_eq!(seqs(&snapshot.replay_json_for("s\"1", Some("p2"))), [1, 3]);
        assert_eq!(seqs(&snapshot.replay_json_for("s\"1", Some("p1"))), [2, 3]);
        assert_eq!(
            seqs(&snapshot.replay_json_for("s\"1", Some("p3"))),
            [1, 2, 3]
        );
    }

    /// What was published while a shared store's link was down never
    /// arrives: receivers waiting for it are told, the others are not.
    #[tokio::test]
    async fn lost_commands_make_waiting_receivers_resynchronise() {
        let feed = Feed::new(16, usize::MAX);
        let mut behind = feed.subscribe(0);
        let mut current = feed.subscribe(3);
        feed.lost(3);
        assert_eq!(behind.recv().await.unwrap_err(), FeedError::Lagged(3));
        // Anything at or below what was lost that turns up late is dropped.
        feed.publish(stamped(3));
        feed.publish(stamped(4));
        assert_eq!(behind.recv().await.unwrap().seq, 4);
        assert_eq!(current.recv().await.unwrap().seq, 4);
    }
}
