//! The in-memory store, the default: the latest command per key of every
//! session, in one process.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::protocol::Command;
use super::store::{Bounds, Feed, Snapshot, Stamped, Store, StoreError, StoreHealth, Subscription};

/// The stored commands of one session: the latest per key, the order keys
/// were last written, and the bytes they take. A key is kept once, shared by
/// both indexes and the command.
#[derive(Debug, Default)]
pub struct Commands {
    by_key: BTreeMap<Arc<str>, Arc<Stamped>>,
    /// Each key's latest command by its sequence number, oldest first: a
    /// snapshot walks this alone, with no lookup by key per command.
    order: BTreeMap<u64, Arc<Stamped>>,
    bytes: usize,
    last_seq: u64,
}

impl Commands {
    /// Stamps `command` with the next sequence number and stores it, or
    /// refuses it, changing nothing, when the result would break `bounds`.
    pub fn append(
        &mut self,
        session: &str,
        sender: &str,
        command: Command,
        bounds: Bounds,
    ) -> Result<Arc<Stamped>, StoreError> {
        let seq = self.last_seq + 1;
        let stamped = Stamped::new(session, sender, seq, command);

        let replaced = self.by_key.get(&stamped.key);
        let mut dropped_keys = usize::from(replaced.is_some());
        let mut dropped_bytes = replaced.map_or(0, |c| c.bytes());
        let subtree = if stamped.frame_url {
            self.subtree(&stamped.key)
        } else {
            Vec::new()
        };
        for key in &subtree {
            dropped_keys += 1;
            dropped_bytes += self.by_key[key].bytes();
        }
        let keys = self.by_key.len() - dropped_keys + 1;
        if keys > bounds.max_keys {
            return Err(StoreError::Limit(format!(
                "the session already holds {} keys, its bound",
                bounds.max_keys
            )));
        }
        let bytes = self.bytes - dropped_bytes + stamped.bytes();
        if bytes > bounds.max_bytes {
            return Err(StoreError::Limit(format!(
                "storing this command would take the session to {bytes} bytes, over its bound of {}",
                bounds.max_bytes
            )));
        }

        for key in subtree {
            self.forget(&key);
        }
        let key = stamped.key.clone();
        self.forget(&key);
        let stamped = Arc::new(stamped);
        self.order.insert(seq, stamped.clone());
        self.bytes += stamped.bytes();
        self.by_key.insert(key, stamped.clone());
        self.last_seq = seq;
        Ok(stamped)
    }

    /// Every stored key below the frame `key` names (`key/…`).
    fn subtree(&self, key: &str) -> Vec<Arc<str>> {
        let prefix: Arc<str> = format!("{key}/").into();
        self.by_key
            .range(prefix.clone()..)
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(&*prefix))
            .cloned()
            .collect()
    }

    fn forget(&mut self, key: &str) {
        if let Some(old) = self.by_key.remove(key) {
            self.order.remove(&old.seq);
            self.bytes -= old.bytes();
        }
    }

    /// Frame URLs shallow to deep (equal depths in write order), then every
    /// other command in the order its key was last written.
    pub fn snapshot(&self) -> Snapshot {
        // One pass: frame URLs are few, and go in front of the rest once
        // sorted; the list is sized up front.
        let mut frames = Vec::new();
        let mut commands = Vec::with_capacity(self.order.len());
        for c in self.order.values() {
            if c.frame_url {
                frames.push(c.clone());
            } else {
                commands.push(c.clone());
            }
        }
        // Stable: equal depths keep their write order.
        frames.sort_by_key(|c| c.key.matches('/').count());
        commands.splice(0..0, frames);
        Snapshot {
            commands,
            last_seq: self.last_seq,
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    #[cfg(test)]
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }
}

struct Entry {
    commands: Commands,
    feed: Arc<Feed>,
}

pub struct MemoryStore {
    sessions: Mutex<HashMap<String, Entry>>,
    bounds: Bounds,
    /// Commands a subscriber may fall behind by before it is resynchronised.
    backlog: usize,
    /// Bytes of commands the live feed keeps per session for receivers that
    /// are behind (see [`Feed`]).
    feed_bytes: usize,
}

impl MemoryStore {
    pub fn new(bounds: Bounds, backlog: usize) -> MemoryStore {
        MemoryStore {
            sessions: Mutex::new(HashMap::new()),
            bounds,
            backlog: backlog.max(1),
            feed_bytes: usize::MAX,
        }
    }

    /// Bounds each session's live feed by bytes as well as by count.
    pub fn with_feed_bytes(mut self, feed_bytes: usize) -> MemoryStore {
        self.feed_bytes = feed_bytes;
        self
    }

    fn open_now(&self, session: &str) {
        let mut sessions = crate::lock::lock(&self.sessions);
        sessions
            .entry(session.to_string())
            .or_insert_with(|| Entry {
                commands: Commands::default(),
                feed: Feed::new(self.backlog, self.feed_bytes),
            });
    }

    fn append_now(
        &self,
        session: &str,
        sender: &str,
        command: Command,
    ) -> Result<Arc<Stamped>, StoreError> {
        let mut sessions = crate::lock::lock(&self.sessions);
        let entry = sessions
            .get_mut(session)
            .ok_or(StoreError::UnknownSession)?;
        let stamped = entry
            .commands
            .append(session, sender, command, self.bounds)?;
        // No subscriber yet is fine: the command is stored for the replay.
        entry.feed.publish(stamped.clone());
        Ok(stamped)
    }

    fn snapshot_now(&self, session: &str) -> Result<Snapshot, StoreError> {
        let sessions = crate::lock::lock(&self.sessions);
        Ok(sessions
            .get(session)
            .ok_or(StoreError::UnknownSession)?
            .commands
            .snapshot())
    }

    fn follow_now(&self, session: &str) -> Result<(Subscription, Snapshot), StoreError> {
        // One lock for both: nothing is appended between them.
        let sessions = crate::lock::lock(&self.sessions);
        let entry = sessions.get(session).ok_or(StoreError::UnknownSession)?;
        let snapshot = entry.commands.snapshot();
        Ok((entry.feed.subscribe(snapshot.last_seq), snapshot))
    }

    fn remove_now(&self, session: &str) {
        if let Some(entry) = crate::lock::lock(&self.sessions).remove(session) {
            entry.feed.close();
        }
    }
}

impl Store for MemoryStore {
    fn open<'a>(&'a self, session: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        self.open_now(session);
        futures_util::future::ready(Ok(())).boxed()
    }

    fn append<'a>(
        &'a self,
        session: &'a str,
        sender: &'a str,
        command: Command,
    ) -> BoxFuture<'a, Result<Arc<Stamped>, StoreError>> {
        futures_util::future::ready(self.append_now(session, sender, command)).boxed()
    }

    fn snapshot<'a>(&'a self, session: &'a str) -> BoxFuture<'a, Result<Snapshot, StoreError>> {
        futures_util::future::ready(self.snapshot_now(session)).boxed()
    }

    fn follow<'a>(
        &'a self,
        session: &'a str,
    ) -> BoxFuture<'a, Result<(Subscription, Snapshot), StoreError>> {
        futures_util::future::ready(self.follow_now(session)).boxed()
    }

    fn remove<'a>(&'a self, session: &'a str) -> BoxFuture<'a, ()> {
        self.remove_now(session);
        futures_util::future::ready(()).boxed()
    }

    /// Memory always answers.
    fn health(&self) -> StoreHealth {
        StoreHealth {
            kind: "memory",
            down: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::protocol::Attribute;
    use crate::hub::store::FeedError;
    use serde_json::Value;

    const ROOMY: Bounds = Bounds {
        max_keys: 1000,
        max_bytes: 1 << 20,
    };

    fn cmd(key: &str, function: &str, arg: &str) -> Command {
        Command {
            key: key.into(),
            attribute: Attribute::Others,
            function: function.into(),
            args: vec![Value::from(arg)],
        }
    }

    // The contract every store keeps is tested against this one and the
    // Redis one from one body (`contract.rs`); what is below is this store's
    // own: its byte count and its live feed.

    #[test]
    fn the_byte_count_is_what_the_stored_commands_cost() {
        let mut c = Commands::default();
        c.append("s", "p1", cmd("top", "navigate", "/one"), ROOMY)
            .unwrap();
        c.append("s", "p1", cmd("top/a", "value", "1"), ROOMY)
            .unwrap();
        c.append("s", "p2", cmd("top/a", "value", "333"), ROOMY)
            .unwrap();
        c.append("s", "p1", cmd("top/f", "navigate", "/f"), ROOMY)
            .unwrap();
        c.append("s", "p1", cmd("top/f/x", "value", "x"), ROOMY)
            .unwrap();
        let sum = |c: &Commands| {
            c.snapshot()
                .commands
                .iter()
                .map(|c| c.bytes())
                .sum::<usize>()
        };
        assert_eq!((c.len(), c.bytes()), (4, sum(&c)));
        c.append("s", "p1", cmd("top", "navigate", "/two"), ROOMY)
            .unwrap();
        assert_eq!((c.len(), c.bytes(), c.last_seq()), (1, sum(&c), 6));
    }

    #[tokio::test]
    async fn the_feed_keeps_bytes_not_commands() {
        let one = Stamped::new("s", "p1", 1, cmd("top/a", "value", &"x".repeat(10_000))).bytes();
        let store = MemoryStore::new(ROOMY, 512).with_feed_bytes(3 * one + 100);
        store.open("s").await.unwrap();
        let (mut live, _) = store.follow("s").await.unwrap();
        for _ in 0..10 {
            store
                .append("s", "p1", cmd("top/a", "value", &"x".repeat(10_000)))
                .await
                .unwrap();
        }
        // Only three of the ten are held for the receiver behind.
        assert_eq!(live.recv().await.unwrap_err(), FeedError::Lagged(7));
        assert_eq!(live.recv().await.unwrap().seq, 8);
        // It resynchronises: what it skipped is in the snapshot.
        live.skip_to(9);
        assert_eq!(live.recv().await.unwrap().seq, 10);
        // One command over the bound is still delivered.
        store
            .append("s", "p1", cmd("top/b", "value", &"x".repeat(100_000)))
            .await
            .unwrap();
        assert_eq!(live.recv().await.unwrap().seq, 11);
    }

    #[tokio::test]
    async fn the_feed_lets_go_of_what_every_receiver_has() {
        let store = MemoryStore::new(ROOMY, 512);
        store.open("s").await.unwrap();
        let feed = |store: &MemoryStore| store.sessions.lock().unwrap()["s"].feed.clone();
        // Nobody follows: nothing is kept beyond the store.
        store
            .append("s", "p1", cmd("top/a", "value", "1"))
            .await
            .unwrap();
        assert!(feed(&store).is_empty());
        let (mut fast, _) = store.follow("s").await.unwrap();
        let (mut slow, _) = store.follow("s").await.unwrap();
        for i in 0..5 {
            store
                .append("s", "p1", cmd("top/a", "value", &i.to_string()))
                .await
                .unwrap();
        }
        for _ in 0..5 {
            fast.recv().await.unwrap();
        }
        // Kept for the one behind.
        assert_eq!(feed(&store).len(), 5);
        slow.recv().await.unwrap();
        slow.recv().await.unwrap();
        assert_eq!(feed(&store).len(), 3);
        // A receiver gone holds nothing back.
        drop(slow);
        assert!(feed(&store).is_empty());
        store
            .append("s", "p1", cmd("top/a", "value", "6"))
            .await
            .unwrap();
        assert_eq!(fast.recv().await.unwrap().seq, 7);
    }
}
