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
    pub fn ask(&mut self, session: &str, from: &str, now: Instant) -> Result<bool, Duration> {
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
    pub fn answer(&mut self, session: &str, granted: bool, now: Instant) -> Option<String> {
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

    /// Forgets every request (the hub hands its sessions over).
    pub fn forget_all(&mut self) {
        self.open.clear();
        self.denied.clear();
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
