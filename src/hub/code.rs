//! Join codes: the short number a customer reads out over the phone so an
//! operator can join that customer's session at once, without the queue.
//!
//! A code is the only secret an operator needs to join, and it is short, so
//! it is held to four rules:
//! - single use: redeeming a code removes it, whether or not the join then
//!   succeeds;
//! - short-lived: void `hub.code_expiry_secs` after it was given (default
//!   10 minutes); a session holds one code at a time, a new one replaces it;
//! - unguessable in practice: uniformly random digits from the operating
//!   system's generator, and every lookup (right or wrong) counts against a
//!   budget per operator account and per client address, past which even the
//!   right code is refused (`rate_limited`);
//! - never written down: no log or audit line, no URL and no error message
//!   carries a code; only the customer's own connection receives it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::protocol::{ErrorCode, Refusal};
use crate::config::HubLimits;
use crate::lock::lock;
use crate::telemetry;

/// The live codes, both ways round.
#[derive(Default)]
struct Table {
    /// Code to its session and when it is void.
    by_code: HashMap<String, (String, Instant)>,
    /// Session to its one live code.
    by_session: HashMap<String, String>,
}

pub struct Codes {
    live: Mutex<Table>,
    length: usize,
    expiry: Duration,
    per_operator: DefaultKeyedRateLimiter<String>,
    per_address: DefaultKeyedRateLimiter<IpAddr>,
    operator_quota: u32,
    address_quota: u32,
}

/// `n` lookups a minute, the first `n` at once.
fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

impl Codes {
    pub fn new(limits: &HubLimits) -> Codes {
        Codes {
            live: Mutex::new(Table::default()),
            length: limits.code_length,
            expiry: limits.code_expiry,
            per_operator: RateLimiter::keyed(per_minute(
                limits.code_lookups_per_minute_per_operator,
            )),
            per_address: RateLimiter::keyed(per_minute(limits.code_lookups_per_minute_per_address)),
            operator_quota: limits.code_lookups_per_minute_per_operator,
            address_quota: limits.code_lookups_per_minute_per_address,
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        lock(&self.live)
    }

    /// A fresh code for `session`, replacing the one it had, and its
    /// lifetime.
    pub fn issue(&self, session: &str) -> (String, Duration) {
        let mut t = self.table();
        let now = Instant::now();
        if let Some(old) = t.by_session.remove(session) {
            t.by_code.remove(&old);
        }
        let code = loop {
            let code: String = (0..self.length)
                .map(|_| char::from(b'0' + rand::random_range(0..10u8)))
                .collect();
            // Another session's live code is never handed out twice.
            if t.by_code.get(&code).is_none_or(|(_, until)| *until <= now) {
                break code;
            }
        };
        if let Some((other, _)) = t.by_code.remove(&code) {
            t.by_session.remove(&other);
        }
        t.by_code
            .insert(code.clone(), (session.to_string(), now + self.expiry));
        t.by_session.insert(session.to_string(), code.clone());
        (code, self.expiry)
    }

    /// Counts one lookup against the operator's and the address's budgets
    /// (`address` as [`super::registry::address_of`] counts it); refused past
    /// either, whatever code it names.
    pub fn allow(&self, user: &str, address: IpAddr) -> Result<(), Refusal> {
        let refused = |whose: &str, n: u32| {
            metrics::counter!(telemetry::HUB_CODE_LOOKUPS, "result" => "rate_limited").increment(1);
            Err(Refusal::new(
                ErrorCode::RateLimited,
                format!(
                    "more than {n} join-code attempts a minute from this {whose}; wait a minute"
                ),
            ))
        };
        if self.per_operator.check_key(&user.to_string()).is_err() {
            return refused("operator", self.operator_quota);
        }
        if self.per_address.check_key(&address).is_err() {
            return refused("address", self.address_quota);
        }
        Ok(())
    }

    /// The session `code` names, if it is live. The code is used up.
    pub fn redeem(&self, code: &str) -> Option<String> {
        let mut t = self.table();
        let (session, until) = t.by_code.remove(code)?;
        t.by_session.remove(&session);
        (until > Instant::now()).then_some(session)
    }

    /// `session`'s live code and how long it has left, for the checkpoint.
    pub fn of(&self, session: &str) -> Option<(String, Duration)> {
        let t = self.table();
        let code = t.by_session.get(session)?;
        let (_, until) = t.by_code.get(code)?;
        let left = until.checked_duration_since(Instant::now())?;
        (!left.is_zero()).then(|| (code.clone(), left))
    }

    /// Takes up a code from the checkpoint with the time it has left (at
    /// most this hub's own expiry). A code another session holds here
    /// already is not taken up: a code names one session.
    pub fn restore(&self, session: &str, code: String, left: Duration) {
        let left = left.min(self.expiry);
        if left.is_zero() || code.len() != self.length || !code.bytes().all(|b| b.is_ascii_digit())
        {
            return;
        }
        let mut t = self.table();
        let now = Instant::now();
        if t.by_code
            .get(&code)
            .is_some_and(|(s, until)| s != session && *until > now)
        {
            return;
        }
        if let Some(old) = t.by_session.remove(session) {
            t.by_code.remove(&old);
        }
        t.by_code
            .insert(code.clone(), (session.to_string(), now + left));
        t.by_session.insert(session.to_string(), code);
    }

    /// Forgets every code (the hub hands its sessions over).
    pub fn forget_all(&self) {
        let mut t = self.table();
        t.by_code.clear();
        t.by_session.clear();
    }

    pub fn forget(&self, session: &str) {
        let mut t = self.table();
        if let Some(code) = t.by_session.remove(session) {
            t.by_code.remove(&code);
        }
    }

    /// Drops void codes and the budgets of operators and addresses gone
    /// quiet.
    pub fn tidy(&self) {
        let now = Instant::now();
        let mut t = self.table();
        let void: Vec<String> = t
            .by_code
            .iter()
            .filter(|(_, (_, until))| *until <= now)
            .map(|(code, _)| code.clone())
            .collect();
        for code in void {
            if let Some((session, _)) = t.by_code.remove(&code) {
                t.by_session.remove(&session);
            }
        }
        drop(t);
        self.per_operator.retain_recent();
        self.per_address.retain_recent();
    }

    #[cfg(test)]
    pub fn live(&self) -> usize {
        self.table().by_code.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(length: usize, expiry: Duration) -> Codes {
        Codes::new(&HubLimits {
            code_length: length,
            code_expiry: expiry,
            code_lookups_per_minute_per_operator: 3,
            code_lookups_per_minute_per_address: 5,
            ..HubLimits::default()
        })
    }

    #[test]
    fn a_code_is_digits_used_once_and_replaced_by_the_next() {
        let c = codes(6, Duration::from_secs(60));
        let (first, lasts) = c.issue("s1");
        assert_eq!(lasts, Duration::from_secs(60));
        assert_eq!(first.len(), 6);
        assert!(first.bytes().all(|b| b.is_ascii_digit()), "{first}");
        let (second, _) = c.issue("s1");
        assert_eq!(c.live(), 1, "one code per session");
        if second != first {
            assert_eq!(c.redeem(&first), None, "a replaced code is void");
        }
        assert_eq!(c.redeem(&second).as_deref(), Some("s1"));
        assert_eq!(c.redeem(&second), None, "a code is good once");
        let (third, _) = c.issue("s2");
        c.forget("s2");
        assert_eq!(c.redeem(&third), None, "an ended session's code is void");
    }

    #[test]
    fn an_expired_code_is_void() {
        let c = codes(8, Duration::from_millis(1));
        let (code, _) = c.issue("s");
        assert_eq!(code.len(), 8);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(c.redeem(&code), None);
        c.issue("t");
        std::thread::sleep(Duration::from_millis(5));
        c.tidy();
        assert_eq!(c.live(), 0);
    }

    #[test]
    fn lookups_are_budgeted_per_operator_and_per_address() {
        let c = codes(6, Duration::from_secs(60));
        let here: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert!(c.allow("op", here).is_ok());
        }
        let e = c.allow("op", here).unwrap_err();
        assert_eq!(e.code, ErrorCode::RateLimited);
        assert!(e.message.contains("operator"), "{}", e.message);
        // Another account from the same address shares the address's budget.
        assert!(c.allow("op2", here).is_ok());
        assert!(c.allow("op2", here).is_ok());
        let e = c.allow("op2", here).unwrap_err();
        assert!(e.message.contains("address"), "{}", e.message);
        assert!(c.allow("op3", "192.0.2.2".parse().unwrap()).is_ok());
    }
}
