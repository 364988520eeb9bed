//! Taking over and handing over the shared sessions between nodes (issue
//! 12, `docs/scale-out.md`): exactly one node, the leader, serves them; its
//! state is checkpointed to Redis (`checkpoint`).
//!
//! - Taking over ([`Shared::take_over`]): the checkpoint is loaded into
//!   the state; participants come back detached and `resume` with their
//!   secrets, the queue in its order, logins and join codes as they were.
//!   Operators waiting are connections: they come back by reconnecting.
//! - Handing over ([`Shared::hand_over`]): every connection is closed with
//!   1012 (service restart: reconnect and resume, through the new leader),
//!   and the state is forgotten without ending a session: nothing is
//!   deleted from Redis, no session end hook runs, nothing more is written.
//!   Until the next take-over the hub's routes answer 503.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tracing::info;

use super::checkpoint::{Batch, Next};
use super::outbox::Outbound;
use super::protocol::CLOSE_HANDED_OVER;
use super::state::Shared;
use super::store::StoreError;

/// The reason sent with the 1012 close.
const HANDED_OVER: &str = "this node hands its sessions over: reconnect and resume";

/// Starts the checkpoint's writer for `shared` (when the store is Redis);
/// it ends with the hub.
pub(super) fn start(shared: &Arc<Shared>) {
    shared.checkpoint.watch_logins(&shared.logins);
    let weak = Arc::downgrade(shared);
    let again = weak.clone();
    shared.checkpoint.start(
        move || {
            let Some(shared) = weak.upgrade() else {
                return Next::Gone;
            };
            let st = shared.lock();
            match shared
                .checkpoint
                .take(&st, &shared.conversation, &shared.logins)
            {
                Some(batch) => Next::Write(batch),
                None => Next::Nothing,
            }
        },
        move || {
            if let Some(shared) = again.upgrade() {
                let st = shared.lock();
                shared.checkpoint.mark_all(&st, &shared.conversation);
            }
        },
    );
}

impl Shared {
    /// Loads the checkpoint: this node serves the shared sessions from now
    /// on. Sessions it holds already are kept as they are. Returns how many
    /// sessions were taken over (0 with the store in memory).
    pub async fn take_over(&self) -> Result<usize, StoreError> {
        let Some(mut loaded) = self.checkpoint.load().await? else {
            self.serving.store(true, Ordering::Release);
            return Ok(0);
        };
        let taken = {
            let mut st = self.lock();
            let taken = loaded.apply(&mut st, &self.conversation, &self.logins);
            self.checkpoint.set_active(true);
            self.serving.store(true, Ordering::Release);
            taken
        };
        self.checkpoint.clean(&loaded).await;
        info!(
            sessions = taken.len(),
            "hub: took over the shared sessions from the checkpoint"
        );
        Ok(taken.len())
    }

    /// Another node serves the shared sessions from now on (see the
    /// module). With `flush` (this node stops while it still leads), what
    /// was changed and not yet written is read now and returned, for
    /// [`Shared::write_last`]; without it (another node leads already),
    /// nothing more is written.
    pub fn hand_over(&self, flush: bool) -> Option<Batch> {
        let mut guard = self.lock();
        // Forgetting settles nothing: no offers, no `status`, no marks.
        let st = guard.unsettled();
        let last = if flush {
            self.checkpoint.take(st, &self.conversation, &self.logins)
        } else {
            None
        };
        self.checkpoint.set_active(false);
        self.serving.store(false, Ordering::Release);
        for id in st.conns.keys() {
            st.send(
                *id,
                Outbound::Close {
                    code: CLOSE_HANDED_OVER,
                    reason: HANDED_OVER,
                },
            );
        }
        let sessions = st.sessions.len();
        // Dropping the connections closes their outboxes: each writer sends
        // the close frame queued above, then ends.
        st.forget_all();
        st.gauges();
        drop(guard);
        self.conversation.forget_all();
        self.logins.forget_all();
        info!(
            sessions,
            "hub: handed the shared sessions over; connections closed with 1012"
        );
        last
    }

    /// Writes what [`Shared::hand_over`] returned.
    pub async fn write_last(&self, last: Option<Batch>) {
        if let Some(batch) = last {
            self.checkpoint.write_last(batch).await;
        }
    }
}
