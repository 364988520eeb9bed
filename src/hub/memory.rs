//! The in-memory store, the default: the latest command per key of every
//! session, in one process.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::protocol::Command;
use super::store::{Bounds, Feed, Snapshot, Stamped, Store, StoreError, Subscription};

/// The stored commands of one session: the latest per key, the order keys
/// were last written, and the bytes they take. A key is kept once, shared by
/// both indexes and the command.
#[derive(Debug, Default)]
pub struct Commands {
    by_key: BTreeMap<Arc<str>, Arc<Stamped>>,
    /// Sequence number of each key's latest command, oldest first.
    order: BTreeMap<u64, Arc<str>>,
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
        self.order.insert(seq, key.clone());
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
        let mut frames = Vec::new();
        let mut parts = Vec::new();
        for key in self.order.values() {
            let c = &self.by_key[key];
            if c.frame_url {
                frames.push(c.clone())
            } else {
                parts.push(c.clone())
            }
        }
        // Stable: equal depths keep their write order.
        frames.sort_by_key(|c| c.key.matches('/').count());
        frames.extend(parts);
        Snapshot {
            commands: frames,
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
        let mut sessions = self.sessions.lock().unwrap();
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
        let mut sessions = self.sessions.lock().unwrap();
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
        let sessions = self.sessions.lock().unwrap();
        Ok(sessions
            .get(session)
            .ok_or(StoreError::UnknownSession)?
            .commands
            .snapshot())
    }

    fn follow_now(&self, session: &str) -> Result<(Subscription, Snapshot), StoreError> {
        // One lock for both: nothing is appended between them.
        let sessions = self.sessions.lock().unwrap();
        let entry = sessions.get(session).ok_or(StoreError::UnknownSession)?;
        let snapshot = entry.commands.snapshot();
        Ok((entry.feed.subscribe(snapshot.last_seq), snapshot))
    }

    fn remove_now(&self, session: &str) {
        if let Some(entry) = self.sessions.lock().unwrap().remove(session) {
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

    /// Key and first argument of each command, read back from its wire form.
    fn keys(s: &Snapshot) -> Vec<(String, String)> {
        s.commands
            .iter()
            .map(|c| {
                (
                    c.key.to_string(),
                    first_arg(c).as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn first_arg(c: &Stamped) -> Value {
        serde_json::from_str::<Value>(&c.json).unwrap()["args"][0].clone()
    }

    #[test]
    fn same_key_overwrites_and_moves_to_the_end() {
        let mut c = Commands::default();
        c.append("s", "p1", cmd("top/a", "value", "1"), ROOMY)
            .unwrap();
        c.append("s", "p1", cmd("top/b", "value", "2"), ROOMY)
            .unwrap();
        c.append("s", "p2", cmd("top/a", "value", "3"), ROOMY)
            .unwrap();
        let s = c.snapshot();
        assert_eq!(keys(&s), owned(&[("top/b", "2"), ("top/a", "3")]));
        assert_eq!(s.last_seq, 3);
        assert_eq!(c.len(), 2);
        assert_eq!(
            c.bytes(),
            s.commands.iter().map(|c| c.bytes()).sum::<usize>()
        );
        // Kept once: the wire form at its exact size, the key shared.
        let stored = &s.commands[1];
        assert_eq!(
            stored.bytes(),
            stored.json.len() + "top/a".len() + "p2".len() + crate::hub::store::STAMPED_OVERHEAD
        );
    }

    #[test]
    fn a_frame_url_drops_the_frames_subtree_only() {
        let mut c = Commands::default();
        c.append("s", "p1", cmd("top", "navigate", "/one"), ROOMY)
            .unwrap();
        c.append("s", "p1", cmd("top/pay", "navigate", "/pay"), ROOMY)
            .unwrap();
        c.append(
            "s",
            "p1",
            cmd("top/pay/input[name=n]", "value", "4111"),
            ROOMY,
        )
        .unwrap();
        c.append("s", "p1", cmd("top/form#f", "value", "x"), ROOMY)
            .unwrap();
        c.append("s", "p1", cmd("topmost", "value", "sibling"), ROOMY)
            .unwrap();
        c.append("s", "p1", cmd("top.x", "value", "sibling2"), ROOMY)
            .unwrap();
        c.append("s", "p1", cmd("top/pay", "navigate", "/pay2"), ROOMY)
            .unwrap();
        assert_eq!(
            keys(&c.snapshot()),
            owned(&[
                ("top", "/one"),
                ("top/pay", "/pay2"),
                ("top/form#f", "x"),
                ("topmost", "sibling"),
                ("top.x", "sibling2")
            ])
        );
        c.append("s", "p1", cmd("top", "navigate", "/two"), ROOMY)
            .unwrap();
        assert_eq!(
            keys(&c.snapshot()),
            owned(&[
                ("top", "/two"),
                ("topmost", "sibling"),
                ("top.x", "sibling2")
            ])
        );
        let before = c.bytes();
        assert_eq!(
            before,
            c.snapshot()
                .commands
                .iter()
                .map(|c| c.bytes())
                .sum::<usize>()
        );
    }

    #[test]
    fn replay_puts_frame_urls_shallow_to_deep_then_parts_in_write_order() {
        let mut c = Commands::default();
        c.append("s", "p1", cmd("top/a", "value", "a"), ROOMY)
            .unwrap();
        c.append("s", "p1", cmd("top/f1/f2", "navigate", "/deep"), ROOMY)
            .unwrap();
        c.append("s", "p1", cmd("top/b", "value", "b"), ROOMY)
            .unwrap();
        c.append("s", "p1", cmd("top/f1", "navigate", "/mid"), ROOMY)
            .unwrap();
        c.append("s", "p1", cmd("top/g", "navigate", "/mid2"), ROOMY)
            .unwrap();
        c.append("s", "p1", cmd("top", "scroll", "0"), ROOMY)
            .unwrap();
        let s = c.snapshot();
        // `top/f1` navigating after `top/f1/f2` dropped it.
        assert_eq!(
            keys(&s),
            owned(&[
                ("top/f1", "/mid"),
                ("top/g", "/mid2"),
                ("top/a", "a"),
                ("top/b", "b"),
                ("top", "0")
            ])
        );
        let seqs: Vec<u64> = s.commands.iter().map(|c| c.seq).collect();
        assert_eq!(seqs, [4, 5, 1, 3, 6]);
    }

    #[test]
    fn bounds_refuse_without_changing_anything() {
        let tight = Bounds {
            max_keys: 2,
            max_bytes: 1 << 20,
        };
        let mut c = Commands::default();
        c.append("s", "p1", cmd("top/a", "value", "a"), tight)
            .unwrap();
        c.append("s", "p1", cmd("top/b", "value", "b"), tight)
            .unwrap();
        let e = c
            .append("s", "p1", cmd("top/c", "value", "c"), tight)
            .unwrap_err();
        assert!(
            matches!(e, StoreError::Limit(ref m) if m.contains("2 keys")),
            "{e:?}"
        );
        assert_eq!((c.len(), c.last_seq()), (2, 2));
        // Overwriting an existing key needs no new room.
        c.append("s", "p1", cmd("top/a", "value", "A"), tight)
            .unwrap();
        // A frame URL that drops a subtree makes room.
        c.append("s", "p1", cmd("top", "navigate", "/next"), tight)
            .unwrap();
        assert_eq!(keys(&c.snapshot()), owned(&[("top", "/next")]));

        let one = c.snapshot().commands[0].bytes();
        let small = Bounds {
            max_keys: 100,
            max_bytes: one * 2 + 5,
        };
        let mut c = Commands::default();
        c.append("s", "p1", cmd("top/a", "value", "a"), small)
            .unwrap();
        c.append("s", "p1", cmd("top/b", "value", "b"), small)
            .unwrap();
        let e = c
            .append(
                "s",
                "p1",
                cmd("top/c", "value", "a much longer value than before"),
                small,
            )
            .unwrap_err();
        assert!(
            matches!(e, StoreError::Limit(ref m) if m.contains("bytes")),
            "{e:?}"
        );
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn a_resynchronising_replay_leaves_out_the_receivers_own_commands() {
        let mut c = Commands::default();
        c.append("s", "p1", cmd("top/mine", "value", "1"), ROOMY)
            .unwrap();
        c.append("s", "p2", cmd("top/theirs", "value", "2"), ROOMY)
            .unwrap();
        let echoed = Command {
            attribute: Attribute::All,
            ..cmd("top/echoed", "pointer", "3")
        };
        c.append("s", "p1", echoed, ROOMY).unwrap();
        let snapshot = c.snapshot();
        let keys_in = |json: String| -> Vec<String> {
            let v: Value = serde_json::from_str(&json).unwrap();
            v["commands"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["key"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(
            keys_in(snapshot.replay_json("s")),
            ["top/mine", "top/theirs", "top/echoed"]
        );
        assert_eq!(
            keys_in(snapshot.replay_json_for("s", Some("p1"))),
            ["top/theirs", "top/echoed"]
        );
        assert_eq!(
            keys_in(snapshot.replay_json_for("s", Some("p3"))),
            ["top/mine", "top/theirs", "top/echoed"]
        );
    }

    #[tokio::test]
    async fn follow_then_live_has_no_gap_and_no_duplicate() {
        let store = MemoryStore::new(ROOMY, 16);
        store.open("s").await.unwrap();
        store
            .append("s", "p1", cmd("top/a", "value", "1"))
            .await
            .unwrap();
        let (mut live, snap) = store.follow("s").await.unwrap();
        store
            .append("s", "p1", cmd("top/a", "value", "2"))
            .await
            .unwrap();
        assert_eq!(snap.last_seq, 1);
        assert_eq!(keys(&snap), owned(&[("top/a", "1")]));
        assert_eq!(live.recv().await.unwrap().seq, 2);
        assert!(matches!(
            store.append("gone", "p1", cmd("top", "x", "y")).await,
            Err(StoreError::UnknownSession)
        ));
        store.remove("s").await;
        assert!(live.recv().await.is_err());
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_told() {
        let store = MemoryStore::new(ROOMY, 2);
        store.open("s").await.unwrap();
        let (mut live, _) = store.follow("s").await.unwrap();
        for i in 0..5 {
            store
                .append("s", "p1", cmd(&format!("top/{i}"), "value", "v"))
                .await
                .unwrap();
        }
        assert_eq!(live.recv().await.unwrap_err(), FeedError::Lagged(3));
        let replay = store.snapshot("s").await.unwrap().replay_json("s");
        let v: Value = serde_json::from_str(&replay).unwrap();
        assert_eq!(v["type"], "replay");
        assert_eq!(v["commands"].as_array().unwrap().len(), 5);
        assert_eq!(v["last_seq"], 5);
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

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use std::collections::BTreeMap;

        const KEYS: [&str; 8] = [
            "top",
            "top/a",
            "top/f",
            "top/f/x",
            "top/f/g",
            "top/f/g/y",
            "topx",
            "top/b",
        ];

        /// What a terminal holds after applying commands in order.
        fn apply(state: &mut BTreeMap<String, (String, Value)>, c: &Stamped) {
            if c.frame_url {
                let below = format!("{}/", c.key);
                state.retain(|k, _| !k.starts_with(&below));
            }
            let v: Value = serde_json::from_str(&c.json).unwrap();
            state.insert(
                c.key.to_string(),
                (v["fn"].as_str().unwrap().to_string(), v["args"][0].clone()),
            );
        }

        fn commands() -> impl Strategy<Value = Vec<(usize, bool, u16)>> {
            prop::collection::vec(
                (0..KEYS.len(), prop::bool::weighted(0.3), any::<u16>()),
                0..80,
            )
        }

        proptest! {
            #[test]
            fn a_fresh_joiner_ends_where_a_live_participant_does(ops in commands(), max_keys in 1usize..12, tight in any::<bool>()) {
                let bounds = Bounds { max_keys, max_bytes: if tight { 900 } else { 1 << 20 } };
                let mut store = Commands::default();
                let mut live = BTreeMap::new();
                let mut accepted = 0;
                for (k, navigate, v) in ops {
                    let c = cmd(KEYS[k], if navigate { "navigate" } else { "value" }, &v.to_string());
                    if let Ok(stamped) = store.append("s", "p1", c, bounds) {
                        accepted += 1;
                        prop_assert_eq!(stamped.seq, accepted);
                        apply(&mut live, &stamped);
                    }
                    prop_assert!(store.len() <= bounds.max_keys);
                    prop_assert!(store.bytes() <= bounds.max_bytes);
                }
                let snapshot = store.snapshot();
                prop_assert_eq!(snapshot.last_seq, accepted);
                let mut joiner = BTreeMap::new();
                for c in &snapshot.commands {
                    apply(&mut joiner, c);
                }
                prop_assert_eq!(&joiner, &live);
                // Frame URLs shallow to deep, then parts oldest first.
                let frames: Vec<_> = snapshot.commands.iter().take_while(|c| c.frame_url).collect();
                prop_assert!(frames.windows(2).all(|w| w[0].key.matches('/').count() <= w[1].key.matches('/').count()));
                let parts = &snapshot.commands[frames.len()..];
                prop_assert!(parts.iter().all(|c| !c.frame_url));
                prop_assert!(parts.windows(2).all(|w| w[0].seq < w[1].seq));
            }
        }
    }
}
