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

use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio::sync::broadcast;

use super::protocol::{Attribute, Command};

/// A command accepted into a session, with its stamps and its wire form.
#[derive(Debug)]
pub struct Stamped {
    pub seq: u64,
    pub sender: String,
    pub command: Command,
    /// The `command` message exactly as receivers get it.
    pub json: String,
}

impl Stamped {
    /// Whether `participant` receives this command live.
    pub fn is_for(&self, participant: &str) -> bool {
        self.sender != participant || self.command.attribute == Attribute::All
    }

    /// What it costs against the session's byte bound.
    pub fn bytes(&self) -> usize {
        self.json.len()
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
        let commands: Vec<&Arc<Stamped>> = self
            .commands
            .iter()
            .filter(|c| receiver.is_none_or(|r| c.is_for(r)))
            .collect();
        let mut out =
            String::with_capacity(64 + commands.iter().map(|c| c.json.len() + 1).sum::<usize>());
        out.push_str("{\"type\":\"replay\",\"session\":");
        out.push_str(&serde_json::to_string(session).expect("strings serialise"));
        out.push_str(",\"last_seq\":");
        out.push_str(&self.last_seq.to_string());
        out.push_str(",\"commands\":[");
        for (i, c) in commands.iter().enumerate() {
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

/// The bounds a store enforces per session.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub max_keys: usize,
    pub max_bytes: usize,
}

/// A live feed of one session's accepted commands.
pub type Subscription = broadcast::Receiver<Arc<Stamped>>;

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
}
