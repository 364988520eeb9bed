//! The command gate: which difference commands a participant may send
//! (an operator acts on the page only while the customer grants control,
//! save the always-allowed ones), and the customer's grant itself. What
//! passes goes to the store, which keeps and fans it out.

use tracing::info;

use super::protocol::{ALWAYS_ALLOWED, Command, ErrorCode, Refusal, Role};
use super::session::ConnId;
use super::state::{Shared, store_refusal};
use crate::telemetry;

impl Shared {
    /// A difference command: checked under the lock, stored and fanned out
    /// by the store.
    pub async fn command(&self, conn: ConnId, command: Command) -> Result<(), Refusal> {
        let (sid, pid) = {
            let st = self.lock();
            let (_, p) = st.participant_of(conn)?;
            let p = p.ok_or_else(|| {
                Refusal::new(
                    ErrorCode::NotInSession,
                    "join a session before sending commands",
                )
            })?;
            let s = st
                .sessions
                .get(&p.session)
                .ok_or_else(|| Refusal::new(ErrorCode::NotInSession, "the session has ended"))?;
            if p.role == Role::Operator
                && !s.control
                && !ALWAYS_ALLOWED.contains(&command.function.as_str())
            {
                return Err(Refusal::new(
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
        let (c, p) = st.participant_of(conn)?;
        if c.role != Role::Customer {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                "only the customer grants control",
            ));
        }
        let p = p.ok_or_else(|| Refusal::new(ErrorCode::NotInSession, "not in a session"))?;
        let (sid, pid) = (p.session.clone(), p.id.clone());
        let s = st
            .sessions
            .get_mut(&sid)
            .ok_or_else(|| Refusal::new(ErrorCode::NotInSession, "the session has ended"))?;
        if s.control != granted {
            s.control = granted;
            let event = if granted {
                "control_granted"
            } else {
                "control_revoked"
            };
            info!(target: "audit", event, session = %sid, participant = %pid);
        }
        st.touch(&sid);
        Ok(())
    }
}
