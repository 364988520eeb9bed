//! Membership: who is in which session. A customer calls, an operator
//! responds, another tab or frame joins, a connection resumes its
//! participant, a participant hangs up or is gone past the grace, a
//! session ends (hang-up, last operator gone, idle expiry, shutdown).
//!
//! Every way in goes through one admission path: [`State::admit`] makes a
//! new participant, [`State::attach`] gives a participant its connection
//! (both `resume` and every new participant end there). An operator let in
//! by `respond` or by a customer's join code (`talk`) is admitted by
//! [`State::admit_operator`].

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::{info, warn};

use super::auth::Account;
use super::outbox::Outbound;
use super::protocol::{ErrorCode, Refusal, Role, ServerMessage};
use super::queue::Release;
use super::registry::{State, address_of};
use super::session::{ConnId, Participant, Session};
use super::state::{Shared, store_refusal};
use crate::config::Config;
use crate::secret::{new_secret, same_secret};
use crate::telemetry;

/// How long a bind token given in `joined` may be used: the agent binds
/// right after it arrives.
pub const BIND_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

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

/// Who a new participant is.
struct Newcomer {
    role: Role,
    name: String,
    /// The operator account, for operators.
    user: Option<String>,
}

impl State {
    /// Makes `conn` a new participant of the existing session `sid`, with a
    /// resume secret of its own; `replay` whether its connection starts
    /// with the session's stored commands. Returns the participant's id.
    fn admit(&mut self, conn: ConnId, sid: &str, who: Newcomer, replay: bool) -> String {
        let pid = format!("p{}", self.next());
        self.participants.insert(
            pid.clone(),
            Participant {
                id: pid.clone(),
                session: sid.to_string(),
                role: who.role,
                name: who.name,
                user: who.user,
                resume: new_secret(),
                conn: None,
                detached_since: None,
                bind: None,
            },
        );
        self.sessions
            .get_mut(sid)
            .expect("admitted into a session that exists")
            .participants
            .push(pid.clone());
        self.attach(conn, &pid, replay);
        pid
    }

    /// Makes `conn` the connection of participant `pid`: an offer it held
    /// is withdrawn, it is told `joined` and starts following the session,
    /// and the session's participants are told `status`.
    fn attach(&mut self, conn: ConnId, pid: &str, replay: bool) {
        self.release_offer(conn, Release::Withdrawn);
        let p = self
            .participants
            .get_mut(pid)
            .expect("attached to a participant that exists");
        p.conn = Some(conn);
        p.detached_since = None;
        let sid = p.session.clone();
        let json = joined(p);
        self.send_text(conn, json);
        self.send(
            conn,
            Outbound::Follow {
                session: sid.clone(),
                participant: pid.to_string(),
                replay,
            },
        );
        if let Some(c) = self.conns.get_mut(&conn) {
            c.participant = Some(pid.to_string());
        }
        if let Some(s) = self.sessions.get_mut(&sid) {
            s.idle_since = None;
        }
        self.touch(&sid);
    }

    /// An operator enters the existing session `sid` as a new participant,
    /// whichever way it was let in (`respond`, a join code): admitted with
    /// the replay, the session no longer waits for an operator, and an
    /// offer of it still open to another operator is withdrawn. Returns the
    /// participant's id.
    pub(super) fn admit_operator(&mut self, conn: ConnId, sid: &str, account: &Account) -> String {
        let operator = Newcomer {
            role: Role::Operator,
            name: account.name.clone(),
            user: Some(account.user.clone()),
        };
        let pid = self.admit(conn, sid, operator, true);
        if let Some(other) = self.sessions.get(sid).and_then(|s| s.offer) {
            self.release_offer(other.conn, Release::Withdrawn);
        }
        let s = self.sessions.get_mut(sid).expect("admitted above");
        s.wants_operator = false;
        self.queue.retain(|q| q != sid);
        pid
    }
}

impl Shared {
    /// A customer calls: a new session, queued and offered.
    pub async fn call(self: &Arc<Self>, conn: ConnId) -> Result<(), Refusal> {
        {
            let st = self.lock();
            let (c, p) = st.participant_of(conn)?;
            if c.role != Role::Customer {
                return Err(Refusal::new(ErrorCode::Forbidden, "only customers call"));
            }
            if let Some(p) = p {
                return Err(Refusal::new(
                    ErrorCode::InSession,
                    format!("already in session {}", p.session),
                ));
            }
            if self.calls.check_key(&address_of(c.remote)).is_err() {
                return Err(Refusal::new(
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
            return Err(Refusal::new(ErrorCode::InSession, "already in a session"));
        }
        let mut st = self.lock();
        // Other calls may have taken the last room while the store opened.
        if let Err(refusal) = self.room_for_a_session(&st) {
            let store = self.store.clone();
            tokio::spawn(async move { store.remove(&sid).await });
            return Err(refusal);
        }
        st.sessions
            .insert(sid.clone(), Session::new(sid.clone(), now_secs()));
        let customer = Newcomer {
            role: Role::Customer,
            name: "Customer".into(),
            user: None,
        };
        let pid = st.admit(conn, &sid, customer, false);
        st.queue.push(sid.clone());
        info!(target: "audit", event = "call", session = %sid, participant = %pid, role = "customer");
        metrics::counter!(telemetry::HUB_CALLS).increment(1);
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
        Err(Refusal::new(
            ErrorCode::Limit,
            format!(
                "the hub holds its maximum of {max} sessions (hub.max_sessions); try again later"
            ),
        ))
    }

    /// An operator takes the call offered to it.
    pub fn respond(self: &Arc<Self>, conn: ConnId, sid: &str) -> Result<(), Refusal> {
        let mut st = self.lock();
        let c = st
            .conns
            .get(&conn)
            .ok_or_else(|| Refusal::new(ErrorCode::Forbidden, "connection closed"))?;
        if c.offer.as_deref() != Some(sid) || !st.sessions.contains_key(sid) {
            return Err(Refusal::new(
                ErrorCode::NotOffered,
                "that call is not offered to you (any more)",
            ));
        }
        let account = c
            .account
            .clone()
            .ok_or_else(|| Refusal::new(ErrorCode::Forbidden, "only operators respond"))?;
        // Admission withdraws the offer this operator held: this one.
        let pid = st.admit_operator(conn, sid, &account);
        info!(target: "audit", event = "join", session = %sid, participant = %pid, role = "operator", user = %account.user);
        Ok(())
    }

    /// A participant's connection comes back after a reload or a blip.
    pub fn resume(self: &Arc<Self>, conn: ConnId, sid: &str, secret: &str) -> Result<(), Refusal> {
        let mut st = self.lock();
        let (c, current) = st.participant_of(conn)?;
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
                Refusal::new(
                    ErrorCode::UnknownSession,
                    "no such session, or it has ended",
                )
            })?;
        if current.is_some_and(|p| p.id != pid) {
            return Err(Refusal::new(
                ErrorCode::InSession,
                "this connection is in another session",
            ));
        }
        let p = &st.participants[&pid];
        if p.role != role || p.user != user {
            return Err(Refusal::new(
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
        st.attach(conn, &pid, true);
        info!(target: "audit", event = "resume", session = %sid, participant = %pid, role = role.as_str(), user = user.as_deref().unwrap_or(""));
        Ok(())
    }

    /// Another connection of a participant's side joins its session as a
    /// participant of its own: a customer's second tab, or an operator
    /// console's second frame. It proves itself with the resume secret of a
    /// participant of the same role (and, for operators, the same account).
    pub fn join(self: &Arc<Self>, conn: ConnId, sid: &str, secret: &str) -> Result<(), Refusal> {
        let mut st = self.lock();
        let (c, current) = st.participant_of(conn)?;
        if current.is_some() {
            return Err(Refusal::new(
                ErrorCode::InSession,
                "this connection is in a session already",
            ));
        }
        let role = c.role;
        let user = c.account.as_ref().map(|a| a.user.clone());
        let voucher = st.sessions.get(sid).and_then(|s| {
            s.participants
                .iter()
                .filter_map(|p| st.participants.get(p))
                .find(|p| same_secret(&p.resume, secret))
        });
        let Some(voucher) = voucher else {
            return Err(Refusal::new(
                ErrorCode::UnknownSession,
                "no such session, or it has ended",
            ));
        };
        if voucher.role != role || voucher.user != user {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                "that secret belongs to another kind of participant",
            ));
        }
        let who = Newcomer {
            role,
            name: voucher.name.clone(),
            user: user.clone(),
        };
        let pid = st.admit(conn, sid, who, true);
        info!(target: "audit", event = "join", session = %sid, participant = %pid, role = role.as_str(), user = user.as_deref().unwrap_or(""), via = "join");
        Ok(())
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
            st.touch(&sid);
        }
    }

    /// The customer ends the session; an operator leaves it.
    pub fn hangup(self: &Arc<Self>, conn: ConnId) -> Result<(), Refusal> {
        let mut st = self.lock();
        let (c, p) = st.participant_of(conn)?;
        let p = p.ok_or_else(|| Refusal::new(ErrorCode::NotInSession, "not in a session"))?;
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
        }
        Ok(())
    }

    /// Takes a participant out of its session. When no operator remains the
    /// customer is alone again: the session is over and the customer may
    /// call anew.
    fn leave(&self, st: &mut State, sid: &str, pid: &str) {
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
            st.touch(sid);
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
                    st.touch(&sid);
                }
            }
            dropped += 1;
        }
        dropped
    }

    /// Ends a session for everyone in it and forgets everything kept for it.
    fn end(&self, st: &mut State, sid: &str, reason: &str) {
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
