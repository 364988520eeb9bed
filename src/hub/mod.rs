//! The sharing hub: WebSocket participants, sessions, difference commands and
//! their store, the call and operator allocation, operator login.
//!
//! The protocol is written down in `docs/protocol.md`.
//!
//! # Layout
//!
//! - [`protocol`]: the messages clients send and the hub answers, and the
//!   error codes.
//! - [`store`]: the interface of the command store; [`memory`]: the
//!   in-memory store, the default; [`redis`]: the store in Redis, shared
//!   by nodes with the same `[store]`.
//! - [`session`]: sessions and participants.
//! - [`conversation`]: what the hub keeps of what people say beside the
//!   page: [`code`] (join codes), [`chat`], [`control`] (requests for
//!   control). It imports nothing of the shared state below; the state
//!   holds it.
//! - The shared state and the operations on it, from the bottom up (a file
//!   imports only those above it in this list):
//!   - [`registry`]: connections, participants, sessions; sending to a
//!     connection; sockets per address.
//!   - [`queue`]: the queue of calls, offers and allocation, and telling
//!     participants and waiting operators what moved (coalesced).
//!   - [`checkpoint`]: the shared state written behind to Redis when the
//!     store is Redis (marks, one writer, the records), and read back.
//!   - [`state`]: `Shared`, the one lock, and what releasing it does
//!     (allocate, tell, gauges, checkpoint marks, offer timeouts, end
//!     hooks).
//!   - [`offers`]: operators waiting, stepping away, declining, inviting.
//!   - [`membership`]: the call, respond, join, resume (one admission
//!     path), hang-up, leaving, expiry, the end of a session.
//!   - [`gate`]: which commands a participant may send; control.
//!   - [`talk`]: the conversation's operations: a join code and joining by
//!     it (through `membership`'s admission), chat, requests for control
//!     (answered through `gate`'s grant).
//!   - [`handover`]: taking over the shared sessions from the checkpoint,
//!     and handing them over to another node (1012, nothing ended).
//! - [`connection`]: one participant's WebSocket, against a generic
//!   `Sink`/`Stream`.
//! - [`ws`]: the handshake (Origin, role, operator cookie).
//! - [`auth`]: operator login, logout and `me`.

pub mod auth;
pub mod chat;
pub mod checkpoint;
pub mod code;
pub mod connection;
pub mod control;
pub mod conversation;
pub mod gate;
pub mod handover;
pub mod membership;
pub mod memory;
pub mod offers;
pub mod outbox;
pub mod protocol;
pub mod queue;
pub mod redis;
pub mod registry;
pub mod session;
pub mod state;
pub mod store;
pub mod talk;
pub mod ws;

#[cfg(test)]
pub(crate) mod contract;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;

use crate::body::Body;
use crate::config::Config;
use crate::web::Ctx;

pub use protocol::Role;
use state::Shared;
use store::{Bounds, Store, StoreError};

/// Commands a participant's connection may fall behind the live feed by
/// before it is resynchronised from the store.
const FEED_BACKLOG: usize = 512;

/// The routes under the prefix the hub answers ([`Hub::handle`]).
pub const ROUTES: &[&str] = &["ws", "login", "logout", "me"];

/// The hub: a cloneable handle on the shared state.
#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

/// A session as the rest of the program may ask about it (the proxy, to
/// tell a follower's request from the driver's).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionView {
    pub id: String,
    pub control: bool,
    /// In the order they joined; the customer who called comes first.
    pub participants: Vec<ParticipantView>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParticipantView {
    pub id: String,
    pub role: Role,
    pub name: String,
    /// The operator account, for operators.
    pub user: Option<String>,
    pub connected: bool,
}

impl SessionView {
    /// The participant whose browser performs requests that change state:
    /// the first connected customer tab, else the first customer.
    pub fn driver(&self) -> Option<&ParticipantView> {
        let customers = || {
            self.participants
                .iter()
                .filter(|p| p.role == Role::Customer)
        };
        customers()
            .find(|p| p.connected)
            .or_else(|| customers().next())
    }

    /// Whether `participant` follows the driver rather than driving.
    pub fn is_follower(&self, participant: &str) -> bool {
        self.driver().is_some_and(|d| d.id != participant)
            && self.participants.iter().any(|p| p.id == participant)
    }
}

impl Hub {
    /// A hub over the store `[store]` names. A Redis store connects lazily
    /// (a node starts while Redis is down, and reports it per request), so
    /// this fails only outside a runtime or on a URL the client refuses.
    pub fn new(config: Arc<Config>) -> Result<Hub, StoreError> {
        let bounds = Bounds {
            max_keys: config.hub.max_keys_per_session,
            max_bytes: config.hub.max_bytes_per_session,
        };
        let feed_bytes = config.hub.max_feed_bytes_per_session;
        let store: Arc<dyn Store> = match &config.store {
            crate::config::Store::Memory => {
                Arc::new(memory::MemoryStore::new(bounds, FEED_BACKLOG).with_feed_bytes(feed_bytes))
            }
            crate::config::Store::Redis(r) => Arc::new(
                redis::RedisStore::new(&r.url, &r.prefix, bounds, FEED_BACKLOG, r.expire)?
                    .with_feed_bytes(feed_bytes),
            ),
        };
        Ok(Self::with_store(config, store))
    }

    /// A hub over any store (the in-memory one, or a shared one).
    pub fn with_store(config: Arc<Config>, store: Arc<dyn Store>) -> Hub {
        let hub = Hub {
            shared: Shared::new(config, store),
        };
        handover::start(&hub.shared);
        let conversation = hub.shared.conversation.clone();
        hub.shared
            .on_session_end(move |sid| conversation.forget(sid));
        // Without a runtime (a unit test building a hub) nothing expires.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let weak = Arc::downgrade(&hub.shared);
            // Often enough that neither the idle expiry nor the reconnect
            // grace is overrun by more than a quarter of itself.
            let soonest = membership::reconnect_grace(&hub.shared.config);
            let every = (soonest / 4).clamp(Duration::from_millis(250), Duration::from_secs(30));
            rt.spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    let Some(shared) = weak.upgrade() else { break };
                    shared.drop_detached(Instant::now());
                    shared.expire_idle(Instant::now());
                    shared.tidy();
                }
            });
        }
        hub
    }

    /// Handles the hub's routes under the prefix (`ws`, `login`, `logout`,
    /// `me`); `None` for any other route. Which door the request came in on
    /// decides who may use them (operators: the console's only).
    pub async fn handle(
        &self,
        route: &str,
        req: Request<Incoming>,
        ctx: Ctx,
    ) -> Option<Response<Body>> {
        let shared = &self.shared;
        if !ROUTES.contains(&route) {
            return None;
        }
        if let Some(refused) = self.handed_over() {
            return Some(refused);
        }
        Some(match route {
            "ws" => ws::upgrade(shared, req, ctx),
            "login" => auth::login(&shared.config, &shared.logins, req, ctx).await,
            "logout" => auth::logout(&shared.config, &shared.logins, &req, ctx),
            "me" => auth::me(&shared.config, &shared.logins, &req, ctx),
            _ => return None,
        })
    }

    /// The answer to every hub route while this node has handed its
    /// sessions over (until it takes them over again): the sessions are
    /// served elsewhere now, and a session, login or connection this node
    /// made would not be seen there.
    fn handed_over(&self) -> Option<Response<Body>> {
        if self
            .shared
            .serving
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return None;
        }
        let mut r = crate::web::text(
            http::StatusCode::SERVICE_UNAVAILABLE,
            "this node has handed its sessions over to another; try again in a moment\n",
        );
        r.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("1"),
        );
        Some(r)
    }

    /// Tells every participant the server is going away. With the store in
    /// memory the sessions end with the process. With the store in Redis
    /// (a cluster) they do not: the hub hands them over ([`Hub::hand_over`];
    /// participants are told 1012 and resume on the node that takes over),
    /// and what was not yet checkpointed is written before it goes. The
    /// returned future completes once it is (bounded): await it before the
    /// process exits or gives up its lease.
    pub fn shutdown(&self) -> impl Future<Output = ()> + Send + 'static {
        let last = if self.shared.checkpoint.enabled() {
            self.shared.hand_over(true)
        } else {
            self.shared.close_all(1001, "server shutting down");
            self.shared.end_all("shutdown");
            None
        };
        let shared = self.shared.clone();
        async move { shared.write_last(last).await }
    }

    /// Loads the shared sessions from the checkpoint in Redis: this node
    /// serves them from now on (it became the leader). Participants come
    /// back detached and resume with their secrets; the queue keeps its
    /// order; logins and join codes work as they did. Sessions this hub
    /// holds already are kept. Returns how many sessions were taken over;
    /// with the store in memory, 0.
    pub async fn take_over(&self) -> Result<usize, StoreError> {
        self.shared.take_over().await
    }

    /// Another node serves the shared sessions from now on: every hub
    /// connection is closed with 1012 (reconnect and resume) and the state
    /// is forgotten without ending any session (nothing is deleted from
    /// Redis, no end hook runs) and without writing anything more to the
    /// checkpoint. Until [`Hub::take_over`], the hub's routes answer 503.
    pub fn hand_over(&self) {
        self.shared.hand_over(false);
    }

    /// From now on the checkpoint is written only while the Redis key
    /// `lease` holds `holder` (the cluster's lease and this node's id in
    /// it): a leader that lost its lease without knowing it yet (cut off
    /// from Redis while another node took over) never overwrites what the
    /// new leader wrote; its first refused write stops its checkpoint.
    pub fn fence_checkpoint(&self, lease: &str, holder: &str) {
        self.shared
            .checkpoint
            .fence(lease.to_string(), holder.to_string());
    }

    /// Whether the hub's state is checkpointed to Redis (the store is
    /// Redis): a node of a cluster.
    pub fn checkpointed(&self) -> bool {
        self.shared.checkpoint.enabled()
    }

    /// What the checkpoint's writer did (for measurements).
    pub fn checkpoint_stats(&self) -> &checkpoint::Stats {
        self.shared.checkpoint.stats()
    }

    /// Calls `hook` with a session's id whenever one ends: the customer
    /// hangs up, the last operator leaves or is gone past the reconnect
    /// grace, the session expires, or the hub shuts down. The hook runs once
    /// per session, after the hub's state lock is released (it may query the
    /// hub), on the thread that ended the session: keep it short and do not
    /// block in it.
    pub fn on_session_end(&self, hook: impl Fn(&str) + Send + Sync + 'static) {
        self.shared.on_session_end(hook);
    }

    /// Whether the command store answers, as last seen (for `healthz` and
    /// the `cobrowse_store_up` gauge; costs no request to the store).
    pub fn store_health(&self) -> store::StoreHealth {
        self.shared.store.health()
    }

    pub fn session(&self, id: &str) -> Option<SessionView> {
        let st = self.shared.lock();
        view(&st, id)
    }

    /// The session and participant a `resume` secret belongs to.
    pub fn participant(
        &self,
        session: &str,
        resume: &str,
    ) -> Option<(SessionView, ParticipantView)> {
        let st = self.shared.lock();
        let s = st.sessions.get(session)?;
        let pid = s.participants.iter().find(|p| {
            st.participants
                .get(*p)
                .is_some_and(|p| crate::secret::same_secret(&p.resume, resume))
        })?;
        let v = view(&st, session)?;
        let p = v.participants.iter().find(|p| &p.id == pid)?.clone();
        Some((v, p))
    }

    /// Redeems a bind token: the session and participant it was given to,
    /// and that participant's resume secret, if `token` is the one its
    /// connection was last given and was issued less than
    /// [`membership::BIND_TOKEN_LIFETIME`] ago. A token is good once.
    pub fn redeem_bind(
        &self,
        session: &str,
        token: &str,
    ) -> Option<(SessionView, ParticipantView, String)> {
        let mut st = self.shared.lock();
        let s = st.sessions.get(session)?;
        let pid = s
            .participants
            .iter()
            .find(|p| {
                st.participants
                    .get(*p)
                    .and_then(|p| p.bind.as_ref())
                    .is_some_and(|(t, _)| crate::secret::same_secret(t, token))
            })?
            .clone();
        let p = st.participants.get_mut(&pid).expect("found above");
        let (_, issued) = p.bind.take().expect("found above");
        if issued.elapsed() >= membership::BIND_TOKEN_LIFETIME {
            return None;
        }
        let resume = p.resume.clone();
        let v = view(&st, session)?;
        let p = v.participants.iter().find(|p| p.id == pid)?.clone();
        Some((v, p, resume))
    }

    /// The sessions an operator account takes part in.
    pub fn sessions_of_operator(&self, user: &str) -> Vec<SessionView> {
        let st = self.shared.lock();
        let ids: std::collections::BTreeSet<&String> = st
            .participants
            .values()
            .filter(|p| p.user.as_deref() == Some(user))
            .map(|p| &p.session)
            .collect();
        ids.into_iter().filter_map(|id| view(&st, id)).collect()
    }

    /// The shared state, for tests that drive connections over channels.
    #[cfg(test)]
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

fn view(st: &registry::State, id: &str) -> Option<SessionView> {
    let s = st.sessions.get(id)?;
    let participants = s
        .participants
        .iter()
        .filter_map(|p| st.participants.get(p))
        .map(|p| ParticipantView {
            id: p.id.clone(),
            role: p.role,
            name: p.name.clone(),
            user: p.user.clone(),
            connected: p.conn.is_some(),
        })
        .collect();
    Some(SessionView {
        id: s.id.clone(),
        control: s.control,
        participants,
    })
}
