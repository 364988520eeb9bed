//! An operator asks the customer for control; the customer allows or
//! denies. Granting is the customer's `control` (the same grant, status and
//! audit line as the widget's own button), and the customer takes control
//! back the same way at any time.
//!
//! The customer is not to be pestered: while a request is open (for
//! [`ASK_OPEN`]) asking again shows no new prompt, and after a denial the
//! session's operators wait [`AFTER_DENIAL`] before asking again
//! (`rate_limited`). Requests and denials are in the audit log, beside the
//! grants and revocations.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tracing::info;

use super::conversation::lock;
use super::protocol::{ErrorCode, Refusal, Role, ServerMessage};
use super::session::ConnId;
use super::state::{Shared, State};

/// How long a request waits for its answer before it may be made again.
pub const ASK_OPEN: Duration = Duration::from_secs(60);

/// How long operators wait after a denial before asking again.
pub const AFTER_DENIAL: Duration = Duration::from_secs(10);

/// Open requests and recent denials, per session.
#[derive(Default)]
pub struct Asks {
    /// The operator participant who asked, and when.
    open: HashMap<String, (String, Instant)>,
    denied: HashMap<String, Instant>,
}

impl Asks {
    /// Records a request; whether the customer is to be prompted (not when
    /// one is open), or how long to wait after a denial.
    fn ask(&mut self, session: &str, from: &str, now: Instant) -> Result<bool, Duration> {
        if let Some(at) = self.denied.get(session) {
            let since = now.saturating_duration_since(*at);
            if since < AFTER_DENIAL {
                return Err(AFTER_DENIAL - since);
            }
            self.denied.remove(session);
        }
        if self
            .open
            .get(session)
            .is_some_and(|(_, at)| now.saturating_duration_since(*at) < ASK_OPEN)
        {
            return Ok(false);
        }
        self.open
            .insert(session.to_string(), (from.to_string(), now));
        Ok(true)
    }

    /// Closes the open request of `session` with the customer's answer: who
    /// asked, if anyone did.
    fn answer(&mut self, session: &str, granted: bool, now: Instant) -> Option<String> {
        let (from, _) = self.open.remove(session)?;
        if !granted {
            self.denied.insert(session.to_string(), now);
        }
        Some(from)
    }

    pub fn forget(&mut self, session: &str) {
        self.open.remove(session);
        self.denied.remove(session);
    }
}

/// The connections of a session's participants in `role`.
fn conns_of(st: &State, session: &str, role: Role) -> Vec<ConnId> {
    st.sessions.get(session).map_or_else(Vec::new, |s| {
        s.participants
            .iter()
            .filter_map(|p| st.participants.get(p))
            .filter(|p| p.role == role)
            .filter_map(|p| p.conn)
            .collect()
    })
}

impl Shared {
    /// An operator asks the customer for control: every customer tab of the
    /// session shows the prompt.
    pub fn request_control(&self, conn: ConnId) -> Result<(), Refusal> {
        let st = self.lock();
        let (c, p) = Self::participant_of(&st, conn)?;
        if c.role != Role::Operator {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                "only operators ask for control",
            ));
        }
        let p = p.ok_or_else(|| Refusal::new(ErrorCode::NotInSession, "not in a session"))?;
        let s = st
            .sessions
            .get(&p.session)
            .ok_or_else(|| Refusal::new(ErrorCode::NotInSession, "the session has ended"))?;
        if s.control {
            // Granted already: the status says so.
            return Ok(());
        }
        let prompt = lock(&self.conversation.asks)
            .ask(&p.session, &p.id, Instant::now())
            .map_err(|wait| {
                Refusal::new(
                    ErrorCode::RateLimited,
                    format!(
                        "the customer declined a moment ago; ask again in {} s",
                        wait.as_secs().max(1)
                    ),
                )
            })?;
        if !prompt {
            return Ok(());
        }
        info!(target: "audit", event = "control_requested", session = %p.session, participant = %p.id, user = p.user.as_deref().unwrap_or(""));
        let json = ServerMessage::ControlRequest {
            session: &p.session,
            from: &p.id,
            name: &p.name,
        }
        .to_json();
        for to in conns_of(&st, &p.session, Role::Customer) {
            st.send_text(to, json.clone());
        }
        Ok(())
    }

    /// The customer answers a request for control. Allowing is granting
    /// control ([`Shared::control`]); the session's operators are told the
    /// answer.
    pub fn answer_control(&self, conn: ConnId, granted: bool) -> Result<(), Refusal> {
        {
            let st = self.lock();
            let (c, p) = Self::participant_of(&st, conn)?;
            if c.role != Role::Customer {
                return Err(Refusal::new(
                    ErrorCode::Forbidden,
                    "only the customer answers a request for control",
                ));
            }
            let p = p.ok_or_else(|| Refusal::new(ErrorCode::NotInSession, "not in a session"))?;
            if !st.sessions.contains_key(&p.session) {
                return Err(Refusal::new(
                    ErrorCode::NotInSession,
                    "the session has ended",
                ));
            }
            let asked = lock(&self.conversation.asks).answer(&p.session, granted, Instant::now());
            if let Some(from) = asked {
                if !granted {
                    info!(target: "audit", event = "control_denied", session = %p.session, participant = %p.id, asked_by = %from);
                }
                let json = ServerMessage::ControlAnswer {
                    session: &p.session,
                    granted,
                }
                .to_json();
                for to in conns_of(&st, &p.session, Role::Operator) {
                    st.send_text(to, json.clone());
                }
            }
        }
        if granted {
            self.control(conn, true)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_prompt_at_a_time_and_a_pause_after_a_denial() {
        let mut a = Asks::default();
        let t = Instant::now();
        assert_eq!(a.ask("s", "p2", t), Ok(true));
        assert_eq!(a.ask("s", "p3", t), Ok(false), "one open request");
        assert_eq!(
            a.ask("s", "p3", t + ASK_OPEN),
            Ok(true),
            "unanswered for long"
        );
        assert_eq!(a.answer("s", false, t + ASK_OPEN).as_deref(), Some("p3"));
        assert!(a.ask("s", "p2", t + ASK_OPEN).is_err());
        assert_eq!(a.ask("s", "p2", t + ASK_OPEN + AFTER_DENIAL), Ok(true));
        assert_eq!(a.answer("s", true, t).as_deref(), Some("p2"));
        assert_eq!(a.answer("s", true, t), None, "nothing open");
    }
}
