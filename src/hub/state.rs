//! The hub's shared state and every operation on it: the call, the queue and
//! its offers, joining, control, hanging up, reconnecting.
//!
//! One std `Mutex` guards connections, participants and sessions together,
//! and is never held across an `.await`: an operation that needs the store
//! does its store step before or after its locked step. Messages to a
//! connection are queued under the lock, so every connection sees events in
//! the order they happened. Sessions ended under the lock are announced to
//! the rest of the program ([`Shared::on_session_end`]) once it is released,
//! so a callback may ask the hub anything without deadlocking.
//!
//! The life of a session (see also `docs/protocol.md`):
//!
//! ```text
//!  call ──▶ queued ──offer──▶ offered ──respond──▶ connected ──invite──▶ connected + offered
//!             ▲  ◀─decline/timeout─┘                  │  ◀────respond/decline/timeout─┘
//!             │                                       ├─ operator hangup, others remain: connected
//!  (call again)◀── ended: customer hangup, last operator left, idle expiry
//!                  (and, for every session, the hub shutting down)
//! ```
//!
//! A call while `hub.max_sessions` sessions exist starts nothing (`limit`).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::ops::{Deref, DerefMut};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::auth::{Account, Logins};
use super::conversation::Conversation;
use super::outbox::{Latest, Outbound, Outbox};
use super::protocol::{
    ALWAYS_ALLOWED, CallEntry, Command, ErrorCode, ParticipantEntry, Refusal, Role, ServerMessage,
};
use super::session::{self, ConnId, Offer, Participant, Session};
use super::store::{Store, StoreError};
use crate::config::Config;
use crate::secret::{new_secret, same_secret};
use crate::telemetry;

/// Messages queued to one connection before it counts as not reading and is
/// closed (bytes are bounded by `hub.max_outbound_bytes`). Commands do not
/// count: they come from the store's feed, which resynchronises a slow
/// reader instead.
pub const OUTBOUND_CAPACITY: usize = 256;

/// Why an operator no longer holds an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Release {
    /// Declined: not offered that call again until the operator is `ready` again.
    Declined,
    /// Timed out: others get it first.
    Lapsed,
    /// Gone away, resumed into a session, or disconnected.
    Withdrawn,
}

/// One WebSocket connection, participant or not.
pub struct Conn {
    outbox: Arc<Outbox>,
    cancel: CancellationToken,
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
    ended: Vec<String>,
}

/// Called with the id of every session that ends.
type EndHook = Arc<dyn Fn(&str) + Send + Sync>;

pub struct Shared {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub logins: Logins,
    /// Calls per client address, so nobody floods the operators' queue.
    calls: DefaultKeyedRateLimiter<IpAddr>,
    /// Open WebSockets per client address, against
    /// `hub.max_sockets_per_address`.
    pub sockets: Arc<SocketCount>,
    state: Mutex<State>,
    end_hooks: Mutex<Vec<EndHook>>,
    /// Join codes, chat and requests for control (see its module).
    pub conversation: Arc<Conversation>,
}

/// The state, locked. Releasing it announces the sessions that ended while
/// it was held, after the lock itself is gone.
pub struct Locked<'a> {
    guard: Option<MutexGuard<'a, State>>,
    hooks: &'a Mutex<Vec<EndHook>>,
}

impl Deref for Locked<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        self.guard.as_ref().expect("held until dropped")
    }
}

impl DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut State {
        self.guard.as_mut().expect("held until dropped")
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let Some(mut guard) = self.guard.take() else {
            return;
        };
        let ended = std::mem::take(&mut guard.ended);
        drop(guard);
        if ended.is_empty() {
            return;
        }
        let hooks: Vec<EndHook> = self.hooks.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for sid in &ended {
            for hook in &hooks {
                // A failing callback must not take the hub's caller with it.
                if catch_unwind(AssertUnwindSafe(|| hook(sid))).is_err() {
                    warn!(session = %sid, "a session end callback panicked");
                }
            }
        }
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
        let mut map = self.per_address.lock().unwrap_or_else(|p| p.into_inner());
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
        let mut map = self
            .count
            .per_address
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.address);
            }
        }
    }
}

/// How long a participant whose connection dropped stays in its session
/// waiting for a `resume`: the configured grace, or the idle expiry if
/// shorter (a session nobody is connected to is gone by then anyway).
pub fn reconnect_grace(config: &Config) -> Duration {
    config.hub.idle_session.min(config.hub.reconnect_grace)
}

pub(super) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn refuse(code: ErrorCode, message: impl Into<String>) -> Refusal {
    Refusal::new(code, message)
}

fn store_refusal(e: StoreError) -> Refusal {
    match e {
        StoreError::Limit(m) => refuse(ErrorCode::Limit, m),
        StoreError::UnknownSession => refuse(ErrorCode::NotInSession, "the session has ended"),
        StoreError::Unavailable(m) => refuse(ErrorCode::Unavailable, m),
    }
}

impl State {
    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    /// Queues `out` for `conn`. A connection that lets its queue fill up is
    /// not reading: it is closed rather than buffered without bound.
    fn send(&self, conn: ConnId, out: Outbound) {
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

    fn has_operator(&self, s: &Session) -> bool {
        s.participants.iter().any(|p| {
            self.participants
                .get(p)
                .is_some_and(|p| p.role == Role::Operator)
        })
    }

    /// 1-based place among the calls that have no operator yet.
    fn position(&self, sid: &str) -> Option<usize> {
        let mut n = 0;
        for q in &self.queue {
            let Some(s) = self.sessions.get(q) else {
                continue;
            };
            if self.has_operator(s) {
                continue;
            }
            n += 1;
            if q == sid {
                return Some(n);
            }
        }
        None
    }

    /// Tells every connected participant of `sid` where the session stands.
    pub(super) fn status_to(&mut self, sid: &str) {
        let Some(s) = self.sessions.get(sid) else {
            return;
        };
        let position = if self.has_operator(s) {
            None
        } else {
            self.position(sid)
        };
        self.status_at(sid, position);
    }

    /// [`Self::status_to`] with the session's place in the queue known.
    fn status_at(&mut self, sid: &str, position: Option<usize>) {
        let Some(s) = self.sessions.get(sid) else {
            return;
        };
        let participants: Vec<ParticipantEntry> = s
            .participants
            .iter()
            .filter_map(|p| self.participants.get(p))
            .map(session::entry)
            .collect();
        let state = session::state_of(self.has_operator(s), s.offer.is_some());
        let json = ServerMessage::Status {
            session: sid,
            state,
            position,
            participants: &participants,
            control: s.control,
        }
        .to_json();
        for conn in self.connected(sid) {
            self.send(
                conn,
                Outbound::Latest {
                    of: Latest::Status(sid.to_string()),
                    text: json.clone(),
                },
            );
        }
        if let Some(s) = self.sessions.get_mut(sid) {
            s.told = Some((state, position));
        }
    }

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

    fn waiting_operator(c: &Conn) -> bool {
        c.role == Role::Operator && c.ready.is_some() && c.participant.is_none()
    }

    /// Sends `status` to every queued session whose place or state moved
    /// (in one pass over the queue: a change costs messages only where it
    /// changes something) and `queue` to every waiting operator.
    pub(super) fn refresh(&mut self) {
        let mut moved = Vec::new();
        let mut place = 0;
        for sid in &self.queue {
            let Some(s) = self.sessions.get(sid) else {
                continue;
            };
            let has_operator = self.has_operator(s);
            let position = if has_operator {
                None
            } else {
                place += 1;
                Some(place)
            };
            if s.told != Some((session::state_of(has_operator, s.offer.is_some()), position)) {
                moved.push((sid.clone(), position));
            }
        }
        for (sid, position) in moved {
            self.status_at(&sid, position);
        }
        let calls: Vec<CallEntry> = self
            .queue
            .iter()
            .filter_map(|q| self.sessions.get(q))
            .map(|s| CallEntry {
                session: s.id.clone(),
                since: s.since,
                invite: self.has_operator(s),
            })
            .collect();
        for (id, c) in &self.conns {
            if Self::waiting_operator(c) {
                let text = ServerMessage::Queue {
                    calls: &calls,
                    offer: c.offer.as_deref(),
                }
                .to_json();
                self.send(
                    *id,
                    Outbound::Latest {
                        of: Latest::Queue,
                        text,
                    },
                );
            }
        }
    }

    /// Takes back the offer `conn` holds, remembering why so the call goes
    /// to someone else next.
    fn release_offer(&mut self, conn: ConnId, why: Release) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(sid) = c.offer.take() else { return };
        if why == Release::Declined {
            c.declined.insert(sid.clone());
        }
        if let Some(s) = self.sessions.get_mut(&sid)
            && s.offer.is_some_and(|o| o.conn == conn)
        {
            s.offer = None;
            if why == Release::Lapsed {
                s.lapsed.insert(conn);
            }
        }
    }

    pub(super) fn gauges(&self) {
        metrics::gauge!(telemetry::HUB_SESSIONS).set(self.sessions.len() as f64);
        metrics::gauge!(telemetry::HUB_PARTICIPANTS).set(self.participants.len() as f64);
        metrics::gauge!(telemetry::HUB_CONNECTIONS).set(self.conns.len() as f64);
        metrics::gauge!(telemetry::HUB_QUEUED_CALLS).set(self.queue.len() as f64);
    }
}

/// How long a bind token given in `joined` may be used: the agent binds
/// right after it arrives.
pub const BIND_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// What the connection needs to know about the participant it became, with
/// a fresh bind token: the proof, for `POST {prefix}bind`, that the browser
/// asking is the one holding this participant's connection.
fn joined(p: &mut Participant) -> String {
    let token = new_secret();
    let json = ServerMessage::Joined {
        session: &p.session,
        participant: &p.id,
        resume: &p.resume,
        role: p.role,
        bind: &token,
    }
    .to_json();
    p.bind = Some((token, Instant::now()));
    json
}

impl Shared {
    pub fn new(config: Arc<Config>, store: Arc<dyn Store>) -> Shared {
        let limits = &config.hub;
        let every = Duration::from_secs(60) / limits.calls_per_minute_per_address.max(1);
        let quota = Quota::with_period(every.max(Duration::from_nanos(1)))
            .expect("a non-zero period")
            .allow_burst(NonZeroU32::new(limits.call_burst_per_address).unwrap_or(NonZeroU32::MIN));
        Shared {
            conversation: Arc::new(Conversation::new(&config.hub)),
            config,
            store,
            logins: Logins::new(),
            calls: RateLimiter::keyed(quota),
            sockets: Arc::new(SocketCount::default()),
            state: Mutex::new(State::default()),
            end_hooks: Mutex::new(Vec::new()),
        }
    }

    /// Calls `hook` with the id of every session that ends from now on,
    /// however it ends, after the state lock is released.
    pub fn on_session_end(&self, hook: impl Fn(&str) + Send + Sync + 'static) {
        self.end_hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::new(hook));
    }

    /// Forgets rate-limit entries of addresses gone quiet.
    pub fn tidy(&self) {
        self.calls.retain_recent();
        self.logins.tidy();
        self.conversation.tidy();
    }

    pub fn lock(&self) -> Locked<'_> {
        let guard = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Locked {
            guard: Some(guard),
            hooks: &self.end_hooks,
        }
    }

    /// Registers a new connection; its messages arrive on the receiver.
    pub fn connect(
        &self,
        remote: IpAddr,
        role: Role,
        account: Option<Account>,
    ) -> (ConnId, Arc<Outbox>, CancellationToken) {
        let outbox = Arc::new(Outbox::new(
            OUTBOUND_CAPACITY,
            self.config.hub.max_outbound_bytes,
        ));
        let cancel = CancellationToken::new();
        let mut st = self.lock();
        let id = st.next();
        st.conns.insert(
            id,
            Conn {
                outbox: outbox.clone(),
                cancel: cancel.clone(),
                remote,
                role,
                account,
                participant: None,
                ready: None,
                offer: None,
                declined: HashSet::new(),
            },
        );
        st.gauges();
        (id, outbox, cancel)
    }

    /// The connection is gone. Its participant stays in the session,
    /// detached, so a reload or blip can `resume` it.
    pub fn disconnect(self: &Arc<Self>, conn: ConnId) {
        let mut st = self.lock();
        st.release_offer(conn, Release::Withdrawn);
        let Some(c) = st.conns.remove(&conn) else {
            return;
        };
        if let Some(pid) = c.participant.clone()
            && let Some(p) = st.participants.get_mut(&pid)
            && p.conn == Some(conn)
        {
            p.conn = None;
            p.detached_since = Some(Instant::now());
            let sid = p.session.clone();
            if st.connected(&sid).is_empty()
                && let Some(s) = st.sessions.get_mut(&sid)
            {
                s.idle_since = Some(Instant::now());
            }
            st.status_to(&sid);
        }
        self.allocate(&mut st);
        st.refresh();
        st.gauges();
    }

    /// Queues a refusal for the connection that caused it.
    pub fn refuse(&self, conn: ConnId, refusal: &Refusal) {
        metrics::counter!(telemetry::HUB_ERRORS, "code" => refusal.code.as_str()).increment(1);
        if let Some(limit) = refusal.code.limit() {
            telemetry::limit_hit(limit);
        }
        self.lock().send_text(conn, refusal.to_json());
    }

    pub fn close_all(&self, code: u16, reason: &'static str) {
        let st = self.lock();
        for id in st.conns.keys() {
            st.send(*id, Outbound::Close { code, reason });
        }
    }

    /// Offers every call that has no open offer to the free operator who
    /// has waited longest, among those who have not let it lapse this round;
    /// when all have, a new round starts, so a call is never left unoffered
    /// while an operator is free.
    pub(super) fn allocate(self: &Arc<Self>, st: &mut State) {
        for sid in st.queue.clone() {
            let Some(s) = st.sessions.get(&sid) else {
                continue;
            };
            if s.offer.is_some() {
                continue;
            }
            let member_users: HashSet<&str> = s
                .participants
                .iter()
                .filter_map(|p| st.participants.get(p)?.user.as_deref())
                .collect();
            let mut free: Vec<(ConnId, u64)> = st
                .conns
                .iter()
                .filter(|(_, c)| {
                    State::waiting_operator(c) && c.offer.is_none() && !c.declined.contains(&sid)
                })
                .filter(|(_, c)| {
                    c.account
                        .as_ref()
                        .is_none_or(|a| !member_users.contains(a.user.as_str()))
                })
                .map(|(id, c)| (*id, c.ready.unwrap_or(u64::MAX)))
                .collect();
            free.sort_by_key(|(_, ready)| *ready);
            let fresh = free
                .iter()
                .find(|(id, _)| !s.lapsed.contains(id))
                .map(|(id, _)| *id);
            let op = match (fresh, free.first()) {
                (Some(op), _) => op,
                (None, Some((op, _))) => {
                    st.sessions
                        .get_mut(&sid)
                        .expect("checked above")
                        .lapsed
                        .clear();
                    *op
                }
                (None, None) => continue,
            };
            let token = st.next();
            st.sessions.get_mut(&sid).expect("checked above").offer =
                Some(Offer { conn: op, token });
            st.conns.get_mut(&op).expect("found above").offer = Some(sid.clone());
            let timeout = self.config.hub.offer_timeout;
            st.send_text(
                op,
                ServerMessage::Offer {
                    session: &sid,
                    expires_in: timeout.as_secs().max(1),
                }
                .to_json(),
            );
            let user = st.conns[&op]
                .account
                .as_ref()
                .map_or("", |a| a.user.as_str());
            info!(target: "audit", event = "offer", session = %sid, user);
            let shared = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(timeout).await;
                shared.offer_expired(&sid, token);
            });
        }
    }

    fn offer_expired(self: &Arc<Self>, sid: &str, token: u64) {
        let mut st = self.lock();
        let Some(offer) = st.sessions.get(sid).and_then(|s| s.offer) else {
            return;
        };
        if offer.token != token {
            return;
        }
        info!(
            session = sid,
            conn = offer.conn,
            "offer timed out; offering to the next operator"
        );
        let user = st
            .conns
            .get(&offer.conn)
            .and_then(|c| c.account.as_ref())
            .map_or("", |a| a.user.as_str());
        info!(target: "audit", event = "offer_lapsed", session = %sid, user);
        metrics::counter!(telemetry::HUB_OFFER_TIMEOUTS).increment(1);
        st.release_offer(offer.conn, Release::Lapsed);
        self.allocate(&mut st);
        st.refresh();
    }

    pub(super) fn participant_of(
        st: &State,
        conn: ConnId,
    ) -> Result<(&Conn, Option<&Participant>), Refusal> {
        let c = st
            .conns
            .get(&conn)
            .ok_or_else(|| refuse(ErrorCode::Forbidden, "connection closed"))?;
        Ok((
            c,
            c.participant.as_ref().and_then(|p| st.participants.get(p)),
        ))
    }

    /// A customer calls: a new session, queued and offered.
    pub async fn call(self: &Arc<Self>, conn: ConnId) -> Result<(), Refusal> {
        {
            let st = self.lock();
            let (c, p) = Self::participant_of(&st, conn)?;
            if c.role != Role::Customer {
                return Err(refuse(ErrorCode::Forbidden, "only customers call"));
            }
            if let Some(p) = p {
                return Err(refuse(
                    ErrorCode::InSession,
                    format!("already in session {}", p.session),
                ));
            }
            if self.calls.check_key(&address_of(c.remote)).is_err() {
                return Err(refuse(
                    ErrorCode::RateLimited,
                    "too many calls from this address; try again in a moment",
                ));
            }
            self.room_for_a_session(&st)?;
        }
        let sid = new_secret();
        // The store holds the page's state from the moment of the call.
        self.store.open(&sid).await.map_err(store_refusal)?;
        let taken = self
            .lock()
            .conns
            .get(&conn)
            .is_none_or(|c| c.participant.is_some());
        if taken {
            self.store.remove(&sid).await;
            return Err(refuse(ErrorCode::InSession, "already in a session"));
        }
        let mut st = self.lock();
        // Other calls may have taken the last room while the store opened.
        if let Err(refusal) = self.room_for_a_session(&st) {
            let store = self.store.clone();
            tokio::spawn(async move { store.remove(&sid).await });
            return Err(refusal);
        }
        let pid = format!("p{}", st.next());
        let mut p = Participant {
            id: pid.clone(),
            session: sid.clone(),
            role: Role::Customer,
            name: "Customer".into(),
            user: None,
            resume: new_secret(),
            conn: Some(conn),
            detached_since: None,
            bind: None,
        };
        let mut s = Session::new(sid.clone(), now_secs());
        s.participants.push(pid.clone());
        st.send_text(conn, joined(&mut p));
        st.send(
            conn,
            Outbound::Follow {
                session: sid.clone(),
                participant: pid.clone(),
                replay: false,
            },
        );
        st.participants.insert(pid.clone(), p);
        st.sessions.insert(sid.clone(), s);
        st.conns.get_mut(&conn).expect("checked above").participant = Some(pid.clone());
        st.queue.push(sid.clone());
        info!(target: "audit", event = "call", session = %sid, participant = %pid, role = "customer");
        metrics::counter!(telemetry::HUB_CALLS).increment(1);
        self.allocate(&mut st);
        st.refresh();
        st.gauges();
        Ok(())
    }

    /// Refuses a new session when the hub holds `hub.max_sessions`: each
    /// costs memory and operators' attention, and a flood of calls from many
    /// addresses must not take the process down.
    fn room_for_a_session(&self, st: &State) -> Result<(), Refusal> {
        let max = self.config.hub.max_sessions;
        if st.sessions.len() < max {
            return Ok(());
        }
        warn!(
            sessions = st.sessions.len(),
            max, "call refused: the hub holds its maximum of sessions"
        );
        metrics::counter!(telemetry::HUB_CALLS_REFUSED, "reason" => "max_sessions").increment(1);
        Err(refuse(
            ErrorCode::Limit,
            format!(
                "the hub holds its maximum of {max} sessions (hub.max_sessions); try again later"
            ),
        ))
    }

    /// An operator starts waiting for calls.
    pub fn ready(self: &Arc<Self>, conn: ConnId) -> Result<(), Refusal> {
        let mut st = self.lock();
        let order = st.next();
        let c = st
            .conns
            .get_mut(&conn)
            .ok_or_else(|| refuse(ErrorCode::Forbidden, "connection closed"))?;
        if c.role != Role::Operator {
            return Err(refuse(
                ErrorCode::Forbidden,
                "only operators wait for calls",
            ));
        }
        c.ready.get_or_insert(order);
        c.declined.clear();
        self.allocate(&mut st);
        st.refresh();
        Ok(())
    }

    /// An operator stops waiting; an offer it holds moves on.
    pub fn away(self: &Arc<Self>, conn: ConnId) -> Result<(), Refusal> {
        let mut st = self.lock();
        let c = st
            .conns
            .get_mut(&conn)
            .ok_or_else(|| refuse(ErrorCode::Forbidden, "connection closed"))?;
        if c.role != Role::Operator {
            return Err(refuse(
                ErrorCode::Forbidden,
                "only operators wait for calls",
            ));
        }
        c.ready = None;
        st.release_offer(conn, Release::Withdrawn);
        self.allocate(&mut st);
        st.refresh();
        Ok(())
    }

    pub fn respond(self: &Arc<Self>, conn: ConnId, sid: &str) -> Result<(), Refusal> {
        let mut st = self.lock();
        let c = st
            .conns
            .get(&conn)
            .ok_or_else(|| refuse(ErrorCode::Forbidden, "connection closed"))?;
        if c.offer.as_deref() != Some(sid) || !st.sessions.contains_key(sid) {
            return Err(refuse(
                ErrorCode::NotOffered,
                "that call is not offered to you (any more)",
            ));
        }
        let account = c
            .account
            .clone()
            .ok_or_else(|| refuse(ErrorCode::Forbidden, "only operators respond"))?;
        self.admit_operator(&mut st, conn, sid, &account, None);
        Ok(())
    }

    /// An operator enters a session as a new participant, by whichever way
    /// it was let in (`respond`, a join code): `joined`, the replay and
    /// `status` to everyone; the session no longer waits for an operator,
    /// and offers of it, or held by this operator, are withdrawn. The caller
    /// checked that the session exists.
    pub(super) fn admit_operator(
        self: &Arc<Self>,
        st: &mut State,
        conn: ConnId,
        sid: &str,
        account: &Account,
        via: Option<&str>,
    ) {
        let pid = format!("p{}", st.next());
        let mut p = Participant {
            id: pid.clone(),
            session: sid.to_string(),
            role: Role::Operator,
            name: account.name.clone(),
            user: Some(account.user.clone()),
            resume: new_secret(),
            conn: Some(conn),
            detached_since: None,
            bind: None,
        };
        st.send_text(conn, joined(&mut p));
        st.send(
            conn,
            Outbound::Follow {
                session: sid.to_string(),
                participant: pid.clone(),
                replay: true,
            },
        );
        st.participants.insert(pid.clone(), p);
        st.release_offer(conn, Release::Withdrawn);
        if let Some(other) = st.sessions.get_mut(sid).and_then(|s| s.offer.take())
            && let Some(c) = st.conns.get_mut(&other.conn)
        {
            c.offer = None;
        }
        st.conns
            .get_mut(&conn)
            .expect("checked by the caller")
            .participant = Some(pid.clone());
        let s = st.sessions.get_mut(sid).expect("checked by the caller");
        s.participants.push(pid.clone());
        s.wants_operator = false;
        s.idle_since = None;
        st.queue.retain(|q| q != sid);
        match via {
            None => {
                info!(target: "audit", event = "join", session = %sid, participant = %pid, role = "operator", user = %account.user)
            }
            Some(via) => {
                info!(target: "audit", event = "join", session = %sid, participant = %pid, role = "operator", user = %account.user, via)
            }
        }
        st.status_to(sid);
        self.allocate(st);
        st.refresh();
        st.gauges();
    }

    pub fn decline(self: &Arc<Self>, conn: ConnId, sid: &str) -> Result<(), Refusal> {
        let mut st = self.lock();
        if st.conns.get(&conn).and_then(|c| c.offer.as_deref()) != Some(sid) {
            return Err(refuse(
                ErrorCode::NotOffered,
                "that call is not offered to you (any more)",
            ));
        }
        let user = st
            .conns
            .get(&conn)
            .and_then(|c| c.account.as_ref())
            .map_or("", |a| a.user.as_str());
        info!(target: "audit", event = "offer_declined", session = %sid, user);
        st.release_offer(conn, Release::Declined);
        self.allocate(&mut st);
        st.refresh();
        Ok(())
    }

    /// An operator in a session asks for another operator.
    pub fn invite(self: &Arc<Self>, conn: ConnId) -> Result<(), Refusal> {
        let mut st = self.lock();
        let (c, p) = Self::participant_of(&st, conn)?;
        if c.role != Role::Operator {
            return Err(refuse(ErrorCode::Forbidden, "only operators invite"));
        }
        let p = p.ok_or_else(|| refuse(ErrorCode::NotInSession, "not in a session"))?;
        let sid = p.session.clone();
        info!(target: "audit", event = "invite", session = %sid, participant = %p.id, user = p.user.as_deref().unwrap_or(""));
        let s = st
            .sessions
            .get_mut(&sid)
            .ok_or_else(|| refuse(ErrorCode::NotInSession, "the session has ended"))?;
        s.wants_operator = true;
        if !st.queue.contains(&sid) {
            st.queue.push(sid.clone());
        }
        self.allocate(&mut st);
        st.refresh();
        Ok(())
    }

    /// A participant's connection comes back after a reload or a blip.
    pub fn resume(self: &Arc<Self>, conn: ConnId, sid: &str, secret: &str) -> Result<(), Refusal> {
        let mut st = self.lock();
        let (c, current) = Self::participant_of(&st, conn)?;
        let role = c.role;
        let user = c.account.as_ref().map(|a| a.user.clone());
        let pid = st
            .sessions
            .get(sid)
            .and_then(|s| {
                s.participants.iter().find(|p| {
                    st.participants
                        .get(*p)
                        .is_some_and(|p| same_secret(&p.resume, secret))
                })
            })
            .cloned()
            .ok_or_else(|| {
                refuse(
                    ErrorCode::UnknownSession,
                    "no such session, or it has ended",
                )
            })?;
        if current.is_some_and(|p| p.id != pid) {
            return Err(refuse(
                ErrorCode::InSession,
                "this connection is in another session",
            ));
        }
        let p = &st.participants[&pid];
        if p.role != role || p.user != user {
            return Err(refuse(
                ErrorCode::Forbidden,
                "that participant is not yours to resume",
            ));
        }
        if let Some(old) = p.conn
            && old != conn
        {
            // The same participant on two connections would see everything
            // twice: the newer connection wins.
            st.send(
                old,
                Outbound::Close {
                    code: 4001,
                    reason: "resumed on another connection",
                },
            );
            if let Some(o) = st.conns.get_mut(&old) {
                o.participant = None;
            }
        }
        st.release_offer(conn, Release::Withdrawn);
        let p = st.participants.get_mut(&pid).expect("found above");
        p.conn = Some(conn);
        p.detached_since = None;
        let json = joined(p);
        st.send_text(conn, json);
        st.send(
            conn,
            Outbound::Follow {
                session: sid.to_string(),
                participant: pid.clone(),
                replay: true,
            },
        );
        st.conns.get_mut(&conn).expect("checked above").participant = Some(pid.clone());
        st.sessions.get_mut(sid).expect("found above").idle_since = None;
        info!(target: "audit", event = "resume", session = %sid, participant = %pid, role = role.as_str(), user = user.as_deref().unwrap_or(""));
        st.status_to(sid);
        st.refresh();
        st.gauges();
        Ok(())
    }

    /// Another connection of a participant's side joins its session as a
    /// participant of its own: a customer's second tab, or an operator
    /// console's second frame. It proves itself with the resume secret of a
    /// participant of the same role (and, for operators, the same account).
    pub fn join(self: &Arc<Self>, conn: ConnId, sid: &str, secret: &str) -> Result<(), Refusal> {
        let mut st = self.lock();
        let (c, current) = Self::participant_of(&st, conn)?;
        if current.is_some() {
            return Err(refuse(
                ErrorCode::InSession,
                "this connection is in a session already",
            ));
        }
        let (role, account) = (c.role, c.account.clone());
        let user = account.as_ref().map(|a| a.user.clone());
        let voucher = st.sessions.get(sid).and_then(|s| {
            s.participants
                .iter()
                .filter_map(|p| st.participants.get(p))
                .find(|p| same_secret(&p.resume, secret))
        });
        let Some(voucher) = voucher else {
            return Err(refuse(
                ErrorCode::UnknownSession,
                "no such session, or it has ended",
            ));
        };
        if voucher.role != role || voucher.user != user {
            return Err(refuse(
                ErrorCode::Forbidden,
                "that secret belongs to another kind of participant",
            ));
        }
        let name = voucher.name.clone();
        let pid = format!("p{}", st.next());
        let mut p = Participant {
            id: pid.clone(),
            session: sid.to_string(),
            role,
            name,
            user: user.clone(),
            resume: new_secret(),
            conn: Some(conn),
            detached_since: None,
            bind: None,
        };
        st.release_offer(conn, Release::Withdrawn);
        st.send_text(conn, joined(&mut p));
        st.send(
            conn,
            Outbound::Follow {
                session: sid.to_string(),
                participant: pid.clone(),
                replay: true,
            },
        );
        st.participants.insert(pid.clone(), p);
        st.conns.get_mut(&conn).expect("checked above").participant = Some(pid.clone());
        let s = st.sessions.get_mut(sid).expect("found above");
        s.participants.push(pid.clone());
        s.idle_since = None;
        info!(target: "audit", event = "join", session = %sid, participant = %pid, role = role.as_str(), user = user.as_deref().unwrap_or(""), via = "join");
        st.status_to(sid);
        st.refresh();
        st.gauges();
        Ok(())
    }

    /// A difference command: checked under the lock, stored and fanned out
    /// by the store.
    pub async fn command(&self, conn: ConnId, command: Command) -> Result<(), Refusal> {
        let (sid, pid) = {
            let st = self.lock();
            let (_, p) = Self::participant_of(&st, conn)?;
            let p = p.ok_or_else(|| {
                refuse(
                    ErrorCode::NotInSession,
                    "join a session before sending commands",
                )
            })?;
            let s = st
                .sessions
                .get(&p.session)
                .ok_or_else(|| refuse(ErrorCode::NotInSession, "the session has ended"))?;
            if p.role == Role::Operator
                && !s.control
                && !ALWAYS_ALLOWED.contains(&command.function.as_str())
            {
                return Err(refuse(
                    ErrorCode::NoControl,
                    format!(
                        "the customer has not granted control; `{}` is not applied",
                        command.function
                    ),
                ));
            }
            (p.session.clone(), p.id.clone())
        };
        self.store
            .append(&sid, &pid, command)
            .await
            .map_err(store_refusal)?;
        metrics::counter!(telemetry::HUB_COMMANDS).increment(1);
        Ok(())
    }

    /// The customer grants or revokes remote control.
    pub fn control(&self, conn: ConnId, granted: bool) -> Result<(), Refusal> {
        let mut st = self.lock();
        let (c, p) = Self::participant_of(&st, conn)?;
        if c.role != Role::Customer {
            return Err(refuse(
                ErrorCode::Forbidden,
                "only the customer grants control",
            ));
        }
        let p = p.ok_or_else(|| refuse(ErrorCode::NotInSession, "not in a session"))?;
        let (sid, pid) = (p.session.clone(), p.id.clone());
        let s = st
            .sessions
            .get_mut(&sid)
            .ok_or_else(|| refuse(ErrorCode::NotInSession, "the session has ended"))?;
        if s.control != granted {
            s.control = granted;
            let event = if granted {
                "control_granted"
            } else {
                "control_revoked"
            };
            info!(target: "audit", event, session = %sid, participant = %pid);
        }
        st.status_to(&sid);
        Ok(())
    }

    /// The customer ends the session; an operator leaves it.
    pub fn hangup(self: &Arc<Self>, conn: ConnId) -> Result<(), Refusal> {
        let mut st = self.lock();
        let (c, p) = Self::participant_of(&st, conn)?;
        let p = p.ok_or_else(|| refuse(ErrorCode::NotInSession, "not in a session"))?;
        let (sid, pid, role, user) = (
            p.session.clone(),
            p.id.clone(),
            c.role,
            p.user.clone().unwrap_or_default(),
        );
        if role == Role::Customer {
            info!(target: "audit", event = "hangup", session = %sid, participant = %pid, role = "customer");
            self.end(&mut st, &sid, "customer_hangup");
        } else {
            info!(target: "audit", event = "hangup", session = %sid, participant = %pid, role = "operator", user);
            st.conns.get_mut(&conn).expect("checked above").participant = None;
            st.send_text(conn, ServerMessage::Left { session: &sid }.to_json());
            st.send(conn, Outbound::Unfollow);
            self.leave(&mut st, &sid, &pid);
            self.allocate(&mut st);
            st.refresh();
        }
        st.gauges();
        Ok(())
    }

    /// Takes a participant out of its session. When no operator remains the
    /// customer is alone again: the session is over and the customer may
    /// call anew.
    fn leave(self: &Arc<Self>, st: &mut State, sid: &str, pid: &str) {
        st.participants.remove(pid);
        let Some(s) = st.sessions.get_mut(sid) else {
            return;
        };
        s.participants.retain(|p| p != pid);
        let operators_remain = s.participants.iter().any(|p| {
            st.participants
                .get(p)
                .is_some_and(|p| p.role == Role::Operator)
        });
        if operators_remain {
            st.status_to(sid);
        } else {
            self.end(st, sid, "operator_left");
        }
    }

    /// Takes out participants whose connection has been gone longer than
    /// the reconnect grace, so the others are not left waiting for them:
    /// operators, and customer tabs other than the session's last one (the
    /// session itself ends by hang-up or idle expiry).
    pub fn drop_detached(self: &Arc<Self>, now: Instant) -> usize {
        let grace = reconnect_grace(&self.config);
        let mut st = self.lock();
        let mut gone: Vec<(String, String, Role, String)> = st
            .participants
            .values()
            .filter(|p| {
                p.conn.is_none()
                    && p.detached_since
                        .is_some_and(|t| now.saturating_duration_since(t) >= grace)
            })
            .map(|p| {
                (
                    p.id.clone(),
                    p.session.clone(),
                    p.role,
                    p.user.clone().unwrap_or_default(),
                )
            })
            .collect();
        // Tabs before operators: an operator leaving may end the session.
        gone.sort_by(|a, b| (a.2 == Role::Operator, &a.0).cmp(&(b.2 == Role::Operator, &b.0)));
        let mut dropped = 0;
        for (pid, sid, role, user) in gone {
            let Some(s) = st.sessions.get(&sid) else {
                continue;
            };
            match role {
                Role::Operator => {
                    info!(target: "audit", event = "left", session = %sid, participant = %pid, role = "operator", user, reason = "connection lost");
                    self.leave(&mut st, &sid, &pid);
                }
                Role::Customer => {
                    let customers = s
                        .participants
                        .iter()
                        .filter(|p| {
                            st.participants
                                .get(*p)
                                .is_some_and(|p| p.role == Role::Customer)
                        })
                        .count();
                    if customers < 2 {
                        continue;
                    }
                    info!(target: "audit", event = "left", session = %sid, participant = %pid, role = "customer", reason = "connection lost");
                    st.participants.remove(&pid);
                    st.sessions
                        .get_mut(&sid)
                        .expect("found above")
                        .participants
                        .retain(|p| *p != pid);
                    st.status_to(&sid);
                }
            }
            dropped += 1;
        }
        if dropped > 0 {
            self.allocate(&mut st);
            st.refresh();
            st.gauges();
        }
        dropped
    }

    /// Ends a session for everyone in it and forgets everything kept for it.
    fn end(self: &Arc<Self>, st: &mut State, sid: &str, reason: &str) {
        let Some(s) = st.sessions.remove(sid) else {
            return;
        };
        let ended = ServerMessage::Ended {
            session: sid,
            reason,
        }
        .to_json();
        for pid in &s.participants {
            let Some(p) = st.participants.remove(pid) else {
                continue;
            };
            if let Some(conn) = p.conn {
                st.send_text(conn, ended.clone());
                st.send(conn, Outbound::Unfollow);
                if let Some(c) = st.conns.get_mut(&conn) {
                    c.participant = None;
                }
            }
        }
        if let Some(offer) = s.offer
            && let Some(c) = st.conns.get_mut(&offer.conn)
        {
            c.offer = None;
        }
        for c in st.conns.values_mut() {
            c.declined.remove(sid);
        }
        st.queue.retain(|q| q != sid);
        st.ended.push(sid.to_string());
        info!(target: "audit", event = "ended", session = %sid, reason);
        metrics::counter!(telemetry::HUB_SESSIONS_ENDED, "reason" => reason.to_string())
            .increment(1);
        let store = self.store.clone();
        let sid = sid.to_string();
        tokio::spawn(async move { store.remove(&sid).await });
        self.allocate(st);
        st.refresh();
        st.gauges();
    }

    /// The process stops serving: every session it holds ends with it (its
    /// connections are told `1001` by [`Self::close_all`] first).
    pub fn end_all(self: &Arc<Self>, reason: &str) -> usize {
        let mut st = self.lock();
        let all: Vec<String> = st.sessions.keys().cloned().collect();
        for sid in &all {
            self.end(&mut st, sid, reason);
        }
        all.len()
    }

    /// Ends every session nobody has been connected to for the configured
    /// idle time.
    pub fn expire_idle(self: &Arc<Self>, now: Instant) -> usize {
        let idle = self.config.hub.idle_session;
        let mut st = self.lock();
        let expired: Vec<String> = st
            .sessions
            .values()
            .filter(|s| {
                s.idle_since
                    .is_some_and(|t| now.saturating_duration_since(t) >= idle)
            })
            .map(|s| s.id.clone())
            .collect();
        for sid in &expired {
            self.end(&mut st, sid, "expired");
        }
        expired.len()
    }
}
