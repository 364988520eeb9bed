//! The hub's shared state behind one lock, and what releasing the lock
//! does.
//!
//! One std `Mutex` guards connections, participants and sessions together
//! (the registry), and is never held across an `.await`: an operation that
//! needs the store does its store step before or after its locked step.
//! Messages to a connection are queued under the lock, so every connection
//! sees events in the order they happened.
//!
//! Operations change the state and say nothing about the queue: releasing
//! a lock that was taken to change something ([`Locked`]'s `Drop`) offers
//! waiting calls to free operators, tells participants and operators what
//! moved (coalesced, see `queue`), sets the gauges, and then, after the
//! lock itself is gone, arms the new offers' timeouts and announces the
//! sessions that ended ([`Shared::on_session_end`]), so a callback may ask
//! the hub anything without deadlocking.
//!
//! The operations themselves live by responsibility: `offers` (operators
//! waiting, declining, inviting), `membership` (call, respond, join, resume,
//! hang-up, expiry), `gate` (commands and control), `talk` (join codes,
//! chat, requests for control).
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

use std::collections::HashSet;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::ops::{Deref, DerefMut};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::auth::{Account, Logins};
use super::checkpoint::{Checkpoint, Item};
use super::conversation::Conversation;
use super::outbox::{Outbound, Outbox};
use super::protocol::{ErrorCode, Refusal, Role};
use super::registry::{Conn, OUTBOUND_CAPACITY, SocketCount, State};
use super::session::ConnId;
use super::store::{Store, StoreError};
use crate::config::Config;
use crate::lock::lock;
use crate::telemetry;

/// Called with the id of every session that ends.
type EndHook = Arc<dyn Fn(&str) + Send + Sync>;

pub struct Shared {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub logins: Logins,
    /// Calls per client address, so nobody floods the operators' queue.
    pub(super) calls: DefaultKeyedRateLimiter<IpAddr>,
    /// Open WebSockets per client address, against
    /// `hub.max_sockets_per_address`.
    pub sockets: Arc<SocketCount>,
    state: Mutex<State>,
    end_hooks: Mutex<Vec<EndHook>>,
    /// Join codes, chat and requests for control (see its module).
    pub conversation: Arc<Conversation>,
    /// The state written behind to Redis when the store is Redis (see its
    /// module).
    pub checkpoint: Checkpoint,
    /// Whether this hub answers its routes: not after it handed its
    /// sessions over to another node, until it takes them over again.
    pub(super) serving: AtomicBool,
    /// Itself, for the offer timeouts armed when the lock is released: a
    /// timeout that fires after the hub is gone does nothing.
    me: Weak<Shared>,
}

/// The state, locked. Releasing it after a change settles the queue (see
/// the module) and then announces the sessions that ended while it was
/// held, after the lock itself is gone.
pub struct Locked<'a> {
    guard: Option<MutexGuard<'a, State>>,
    shared: &'a Shared,
    /// Whether the state was borrowed mutably: only then is there anything
    /// to settle.
    changed: bool,
}

impl Deref for Locked<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        self.guard.as_ref().expect("held until dropped")
    }
}

impl DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut State {
        self.changed = true;
        self.guard.as_mut().expect("held until dropped")
    }
}

impl Locked<'_> {
    /// The state to change in a way that moves nothing in the queue and
    /// nobody's `status` (a new connection that is nothing yet): releasing
    /// the lock settles nothing for it.
    pub(super) fn unsettled(&mut self) -> &mut State {
        self.guard.as_mut().expect("held until dropped")
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let Some(mut guard) = self.guard.take() else {
            return;
        };
        // Unwinding from a panic under the lock: the state may be half
        // changed; leave it as it is (`crate::lock` recovers it) rather than
        // risk a second panic here.
        if !self.changed || std::thread::panicking() {
            return;
        }
        let offer_timeout = self.shared.config.hub.offer_timeout;
        // What changed is written behind to the checkpoint: the sessions
        // whose participants or control changed, those that ended, and the
        // queue when its calls did.
        let checkpoint = &self.shared.checkpoint;
        let calls = guard.told_calls.0;
        for sid in guard.touched.iter().chain(guard.ended.iter()) {
            checkpoint.session(sid);
        }
        for sid in &guard.ended {
            checkpoint.chat(sid);
        }
        guard.allocate(offer_timeout.as_secs().max(1));
        guard.refresh();
        if guard.told_calls.0 != calls {
            checkpoint.mark(Item::Queue);
        }
        guard.gauges();
        let armed = std::mem::take(&mut guard.armed);
        let ended = std::mem::take(&mut guard.ended);
        drop(guard);
        if !armed.is_empty()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            for (sid, token) in armed {
                let me = self.shared.me.clone();
                rt.spawn(async move {
                    tokio::time::sleep(offer_timeout).await;
                    if let Some(shared) = me.upgrade() {
                        shared.lock().offer_lapsed(&sid, token);
                    }
                });
            }
        }
        if ended.is_empty() {
            return;
        }
        let hooks: Vec<EndHook> = lock(&self.shared.end_hooks).clone();
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

/// The store's failure as the refusal its client gets.
pub(super) fn store_refusal(e: StoreError) -> Refusal {
    match e {
        StoreError::Limit(m) => Refusal::new(ErrorCode::Limit, m),
        StoreError::UnknownSession => {
            Refusal::new(ErrorCode::NotInSession, "the session has ended")
        }
        StoreError::Unavailable(m) => Refusal::new(ErrorCode::Unavailable, m),
    }
}

impl Shared {
    pub fn new(config: Arc<Config>, store: Arc<dyn Store>) -> Arc<Shared> {
        let limits = &config.hub;
        let every = Duration::from_secs(60) / limits.calls_per_minute_per_address.max(1);
        let quota = Quota::with_period(every.max(Duration::from_nanos(1)))
            .expect("a non-zero period")
            .allow_burst(NonZeroU32::new(limits.call_burst_per_address).unwrap_or(NonZeroU32::MIN));
        Arc::new_cyclic(|me| Shared {
            conversation: Arc::new(Conversation::new(&config.hub)),
            checkpoint: Checkpoint::new(&config),
            serving: AtomicBool::new(true),
            config,
            store,
            logins: Logins::new(),
            calls: RateLimiter::keyed(quota),
            sockets: Arc::new(SocketCount::default()),
            state: Mutex::new(State::default()),
            end_hooks: Mutex::new(Vec::new()),
            me: me.clone(),
        })
    }

    /// Calls `hook` with the id of every session that ends from now on,
    /// however it ends, after the state lock is released.
    pub fn on_session_end(&self, hook: impl Fn(&str) + Send + Sync + 'static) {
        lock(&self.end_hooks).push(Arc::new(hook));
    }

    /// Forgets rate-limit entries of addresses gone quiet, and join codes
    /// past their expiry.
    pub fn tidy(&self) {
        self.calls.retain_recent();
        self.logins.tidy();
        self.conversation.tidy();
    }

    pub fn lock(&self) -> Locked<'_> {
        Locked {
            guard: Some(lock(&self.state)),
            shared: self,
            changed: false,
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
        // Nobody's place or view changes with a connection that is nothing
        // yet: no settling on release.
        let st = st.unsettled();
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
                told_queue: None,
            },
        );
        st.gauges();
        (id, outbox, cancel)
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
}
