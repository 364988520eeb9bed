//! The registry: who is connected to the hub, which participants and
//! sessions exist, and how a message reaches a connection.
//!
//! This is the state every node of a hub would have to share (sessions,
//! participants, the queue) next to what stays with the node that holds a
//! socket (its connection and outbox). The rest of the hub builds on it: the
//! queue and its offers (`queue`), the lock and what releasing it does
//! (`state`), and the operations on top (`offers`, `membership`, `gate`).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::auth::Account;
use super::outbox::{Outbound, Outbox};
use super::protocol::{CallEntry, ErrorCode, Refusal, Role};
use super::session::{ConnId, Participant, Session};
use crate::lock::lock;
use crate::telemetry;

/// Messages queued to one connection before it counts as not reading and is
/// closed (bytes are bounded by `hub.max_outbound_bytes`). Commands do not
/// count: they come from the store's feed, which resynchronises a slow
/// reader instead.
pub const OUTBOUND_CAPACITY: usize = 256;

/// One WebSocket connection, participant or not.
pub struct Conn {
    pub(super) outbox: Arc<Outbox>,
    pub(super) cancel: CancellationToken,
    /// The client's address, for the per-address call limit.
    pub remote: IpAddr,
    pub role: Role,
    pub account: Option<Account>,
    /// The participant this connection is, once it joined a session.
    pub participant: Option<String>,
    /// For operators waiting for calls: when they started waiting (smaller
    /// waited longer).
    pub ready: Option<u64>,
    /// The session offered to this operator, if any.
    pub offer: Option<String>,
    /// Sessions this operator declined since its last `ready`: not offered
    /// to it again.
    pub declined: HashSet<String>,
    /// The `queue` this waiting operator was last told: the version of the
    /// list of calls and its own offer. `None` while it is not waiting.
    pub(super) told_queue: Option<(u64, Option<String>)>,
}

impl Drop for Conn {
    /// Gone from the hub: its writer ends once it has sent what is queued.
    fn drop(&mut self) {
        self.outbox.close();
    }
}

#[derive(Default)]
pub struct State {
    pub conns: HashMap<ConnId, Conn>,
    pub participants: HashMap<String, Participant>,
    pub sessions: HashMap<String, Session>,
    /// Sessions waiting for an operator, first come first served.
    pub queue: Vec<String>,
    counter: u64,
    /// Sessions ended while the lock is held, announced when it is released.
    pub(super) ended: Vec<String>,
    /// Sessions whose participants are told `status` when the lock is
    /// released, once each however often they changed.
    pub(super) touched: Vec<String>,
    /// Offers made while the lock is held, whose timeouts start when it is
    /// released: the session and the offer's token.
    pub(super) armed: Vec<(String, u64)>,
    /// The list of calls waiting operators were last told, and its version.
    pub(super) told_calls: (u64, Vec<CallEntry>),
}

impl State {
    /// A fresh number: connection ids, participant ids, offer tokens, the
    /// order operators started waiting in.
    pub(super) fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    /// Takes the counter past `n`: ids taken over from another node are
    /// not given again.
    pub(super) fn reserve(&mut self, n: u64) {
        self.counter = self.counter.max(n);
    }

    /// Forgets every connection, participant and session, announcing
    /// nothing: the hub hands them over to another node. Dropping the
    /// connections closes their outboxes (their writers send what is
    /// queued, then end).
    pub(super) fn forget_all(&mut self) {
        self.conns.clear();
        self.participants.clear();
        self.sessions.clear();
        self.queue.clear();
        self.ended.clear();
        self.touched.clear();
        self.armed.clear();
        self.told_calls = Default::default();
    }

    /// Queues `out` for `conn`. A connection that lets its queue fill up is
    /// not reading: it is closed rather than buffered without bound.
    pub(super) fn send(&self, conn: ConnId, out: Outbound) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if c.outbox.push(out).is_err() {
            warn!(conn, "connection does not read its messages; closing it");
            metrics::counter!(telemetry::HUB_SLOW_CLOSED).increment(1);
            telemetry::limit_hit(telemetry::limit::SLOW_READER);
            c.cancel.cancel();
        }
    }

    pub(super) fn send_text(&self, conn: ConnId, text: String) {
        self.send(conn, Outbound::Text(text));
    }

    /// The connections of `sid`'s participants that are connected now.
    pub(super) fn connected(&self, sid: &str) -> Vec<ConnId> {
        self.sessions
            .get(sid)
            .map(|s| {
                s.participants
                    .iter()
                    .filter_map(|p| self.participants.get(p)?.conn)
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(super) fn has_operator(&self, s: &Session) -> bool {
        s.participants.iter().any(|p| {
            self.participants
                .get(p)
                .is_some_and(|p| p.role == Role::Operator)
        })
    }

    /// The connection `conn` and the participant it is, if any; refused
    /// when the connection is gone.
    pub(super) fn participant_of(
        &self,
        conn: ConnId,
    ) -> Result<(&Conn, Option<&Participant>), Refusal> {
        let c = self
            .conns
            .get(&conn)
            .ok_or_else(|| Refusal::new(ErrorCode::Forbidden, "connection closed"))?;
        Ok((
            c,
            c.participant
                .as_ref()
                .and_then(|p| self.participants.get(p)),
        ))
    }

    pub(super) fn gauges(&self) {
        metrics::gauge!(telemetry::HUB_SESSIONS).set(self.sessions.len() as f64);
        metrics::gauge!(telemetry::HUB_PARTICIPANTS).set(self.participants.len() as f64);
        metrics::gauge!(telemetry::HUB_CONNECTIONS).set(self.conns.len() as f64);
        metrics::gauge!(telemetry::HUB_QUEUED_CALLS).set(self.queue.len() as f64);
    }
}

/// The address a client is counted under for the per-address bounds: an
/// IPv6 client under its /64, which one host or home network usually holds
/// whole (an IPv4 address mapped into IPv6 is that IPv4 address).
pub fn address_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// Open hub WebSockets per client address.
#[derive(Default)]
pub struct SocketCount {
    per_address: Mutex<HashMap<IpAddr, usize>>,
}

/// One open WebSocket counted against its address until dropped.
pub struct SocketSlot {
    count: Arc<SocketCount>,
    address: IpAddr,
}

impl SocketCount {
    /// Counts one more socket from `remote`, or `None` when its address
    /// already holds `max`.
    pub fn take(self: &Arc<Self>, remote: IpAddr, max: usize) -> Option<SocketSlot> {
        let address = address_of(remote);
        let mut map = lock(&self.per_address);
        let n = map.entry(address).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(SocketSlot {
            count: self.clone(),
            address,
        })
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut map = lock(&self.count.per_address);
        if let Some(n) = map.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.address);
            }
        }
    }
}
