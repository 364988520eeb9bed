//! The queue of calls, its offers to operators, and what participants and
//! waiting operators are told about it.
//!
//! Telling is coalesced and costs messages only where something changed:
//! the state's lock runs [`State::allocate`] and then [`State::refresh`]
//! once when it is released (`state::Locked`), however many operations
//! changed things while it was held. A queued session is sent `status` only
//! when its place or state moved (or its participants changed); a waiting
//! operator is sent `queue` only when the list of calls or its own offer
//! did. A call joining the end of the queue costs its own `status` and one
//! `queue` per waiting operator; a call leaving it costs one `status` per
//! session behind it.

use std::collections::HashSet;

use tracing::info;

use super::outbox::{Latest, Outbound};
use super::protocol::{self, CallEntry, ParticipantEntry, Role, ServerMessage};
use super::registry::{Conn, State};
use super::session::{self, ConnId, Offer};
use crate::telemetry;

/// Why an operator no longer holds an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Release {
    /// Declined: not offered that call again until the operator is `ready` again.
    Declined,
    /// Timed out: others get it first.
    Lapsed,
    /// Gone away, resumed into a session, or disconnected.
    Withdrawn,
}

fn waiting_operator(c: &Conn) -> bool {
    c.role == Role::Operator && c.ready.is_some() && c.participant.is_none()
}

impl State {
    /// `sid`'s participants are told where the session stands when the
    /// lock is released: its participants, control or state changed.
    pub(super) fn touch(&mut self, sid: &str) {
        if !self.touched.iter().any(|t| t == sid) {
            self.touched.push(sid.to_string());
        }
    }

    /// Tells every connected participant of `sid` where the session stands,
    /// with its place in the queue known.
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

    /// Sends `status` to every touched session and every queued session
    /// whose place or state moved (in one pass over the queue), and `queue`
    /// to every waiting operator whose view of it changed.
    pub(super) fn refresh(&mut self) {
        let touched: HashSet<String> = std::mem::take(&mut self.touched).into_iter().collect();
        let mut tell = Vec::new();
        let mut queued = HashSet::new();
        let mut place = 0;
        for sid in &self.queue {
            let Some(s) = self.sessions.get(sid) else {
                continue;
            };
            queued.insert(sid.as_str());
            let has_operator = self.has_operator(s);
            let position = if has_operator {
                None
            } else {
                place += 1;
                Some(place)
            };
            let state = session::state_of(has_operator, s.offer.is_some());
            if touched.contains(sid) || s.told != Some((state, position)) {
                tell.push((sid.clone(), position));
            }
        }
        // Not queued: it has its operators, no place to tell.
        for sid in &touched {
            if !queued.contains(sid.as_str()) && self.sessions.contains_key(sid) {
                tell.push((sid.clone(), None));
            }
        }
        for (sid, position) in tell {
            self.status_at(&sid, position);
        }
        self.tell_queue();
    }

    /// `queue` to every waiting operator whose list of calls or offer
    /// changed since it was last told.
    fn tell_queue(&mut self) {
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
        if calls != self.told_calls.1 {
            self.told_calls = (self.told_calls.0 + 1, calls);
        }
        let version = self.told_calls.0;
        let mut tell = Vec::new();
        for (id, c) in &mut self.conns {
            if !waiting_operator(c) {
                c.told_queue = None;
                continue;
            }
            let view = (version, c.offer.clone());
            if c.told_queue.as_ref() != Some(&view) {
                tell.push(*id);
                c.told_queue = Some(view);
            }
        }
        if tell.is_empty() {
            return;
        }
        // The list is the same for every operator told: serialised once,
        // not once per operator (a burst of calls meeting as many waiting
        // operators would otherwise cost the cube of their number).
        let calls = protocol::calls_json(&self.told_calls.1);
        for id in tell {
            let text = ServerMessage::Queue {
                calls: &calls,
                offer: self.conns[&id].offer.as_deref(),
            }
            .to_json();
            self.send(
                id,
                Outbound::Latest {
                    of: Latest::Queue,
                    text,
                },
            );
        }
    }

    /// Takes back the offer `conn` holds, remembering why so the call goes
    /// to someone else next.
    pub(super) fn release_offer(&mut self, conn: ConnId, why: Release) {
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

    /// Offers every call that has no open offer to the free operator who
    /// has waited longest, among those who have not let it lapse this round;
    /// when all have, a new round starts, so a call is never left unoffered
    /// while an operator is free. Each offer's timeout is armed when the
    /// lock is released (`armed`).
    pub(super) fn allocate(&mut self, expires_in: u64) {
        for sid in self.queue.clone() {
            let Some(s) = self.sessions.get(&sid) else {
                continue;
            };
            if s.offer.is_some() {
                continue;
            }
            let member_users: HashSet<&str> = s
                .participants
                .iter()
                .filter_map(|p| self.participants.get(p)?.user.as_deref())
                .collect();
            let mut free: Vec<(ConnId, u64)> = self
                .conns
                .iter()
                .filter(|(_, c)| {
                    waiting_operator(c) && c.offer.is_none() && !c.declined.contains(&sid)
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
                    self.sessions
                        .get_mut(&sid)
                        .expect("checked above")
                        .lapsed
                        .clear();
                    *op
                }
                (None, None) => continue,
            };
            let token = self.next();
            self.sessions.get_mut(&sid).expect("checked above").offer =
                Some(Offer { conn: op, token });
            self.conns.get_mut(&op).expect("found above").offer = Some(sid.clone());
            self.send_text(
                op,
                ServerMessage::Offer {
                    session: &sid,
                    expires_in,
                }
                .to_json(),
            );
            let user = self.conns[&op]
                .account
                .as_ref()
                .map_or("", |a| a.user.as_str());
            info!(target: "audit", event = "offer", session = %sid, user);
            self.armed.push((sid, token));
        }
    }

    /// The offer of `sid` armed with `token` timed out: if it is still
    /// open, it is taken back and goes to the next operator.
    pub(super) fn offer_lapsed(&mut self, sid: &str, token: u64) {
        let Some(offer) = self.sessions.get(sid).and_then(|s| s.offer) else {
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
        let user = self
            .conns
            .get(&offer.conn)
            .and_then(|c| c.account.as_ref())
            .map_or("", |a| a.user.as_str());
        info!(target: "audit", event = "offer_lapsed", session = %sid, user);
        metrics::counter!(telemetry::HUB_OFFER_TIMEOUTS).increment(1);
        self.release_offer(offer.conn, Release::Lapsed);
    }
}
