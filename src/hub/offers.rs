//! What operators do with the queue: start and stop waiting for calls,
//! decline an offer, invite another operator into their session. Taking an
//! offer (`respond`) is an admission, in `membership`; who is offered what
//! is decided when the lock is released (`queue`).

use std::sync::Arc;

use tracing::info;

use super::protocol::{ErrorCode, Refusal, Role};
use super::queue::Release;
use super::session::ConnId;
use super::state::Shared;

impl Shared {
    /// An operator starts waiting for calls.
    pub fn ready(self: &Arc<Self>, conn: ConnId) -> Result<(), Refusal> {
        let mut st = self.lock();
        let order = st.next();
        let c = st
            .conns
            .get_mut(&conn)
            .ok_or_else(|| Refusal::new(ErrorCode::Forbidden, "connection closed"))?;
        if c.role != Role::Operator {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                "only operators wait for calls",
            ));
        }
        c.ready.get_or_insert(order);
        c.declined.clear();
        // Asking to wait is answered with the queue, even if unchanged.
        c.told_queue = None;
        Ok(())
    }

    /// An operator stops waiting; an offer it holds moves on.
    pub fn away(self: &Arc<Self>, conn: ConnId) -> Result<(), Refusal> {
        let mut st = self.lock();
        let c = st
            .conns
            .get_mut(&conn)
            .ok_or_else(|| Refusal::new(ErrorCode::Forbidden, "connection closed"))?;
        if c.role != Role::Operator {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                "only operators wait for calls",
            ));
        }
        c.ready = None;
        st.release_offer(conn, Release::Withdrawn);
        Ok(())
    }

    /// An operator declines the call offered to it: it goes to the next
    /// operator, and not to this one again until it is `ready` again.
    pub fn decline(self: &Arc<Self>, conn: ConnId, sid: &str) -> Result<(), Refusal> {
        let mut st = self.lock();
        if st.conns.get(&conn).and_then(|c| c.offer.as_deref()) != Some(sid) {
            return Err(Refusal::new(
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
        Ok(())
    }

    /// An operator in a session asks for another operator.
    pub fn invite(self: &Arc<Self>, conn: ConnId) -> Result<(), Refusal> {
        let mut st = self.lock();
        let (c, p) = st.participant_of(conn)?;
        if c.role != Role::Operator {
            return Err(Refusal::new(ErrorCode::Forbidden, "only operators invite"));
        }
        let p = p.ok_or_else(|| Refusal::new(ErrorCode::NotInSession, "not in a session"))?;
        let sid = p.session.clone();
        info!(target: "audit", event = "invite", session = %sid, participant = %p.id, user = p.user.as_deref().unwrap_or(""));
        let s = st
            .sessions
            .get_mut(&sid)
            .ok_or_else(|| Refusal::new(ErrorCode::NotInSession, "the session has ended"))?;
        s.wants_operator = true;
        if !st.queue.contains(&sid) {
            st.queue.push(sid.clone());
        }
        // Nobody's `status` changes with it, but a node taking over must
        // know the session waits for another operator.
        self.checkpoint.session(&sid);
        Ok(())
    }
}
