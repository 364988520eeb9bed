//! Sessions and their participants: who is in which session, on which
//! connection, and what `status` tells them.

use std::collections::HashSet;
use std::time::Instant;

use super::protocol::{ParticipantEntry, Role, SessionState};

/// Identifies one WebSocket connection inside the hub.
pub type ConnId = u64;

/// Someone taking part in a session. Outlives its connection: a reload or a
/// network blip detaches it, `resume` attaches a new connection.
#[derive(Debug)]
pub struct Participant {
    pub id: String,
    pub session: String,
    pub role: Role,
    pub name: String,
    /// The operator account, for operators.
    pub user: Option<String>,
    /// The secret that lets a new connection become this participant.
    pub resume: String,
    pub conn: Option<ConnId>,
    /// Since when it has had no connection.
    pub detached_since: Option<Instant>,
    /// The single-use token its connection was last given (in `joined`) to
    /// bind its browser to it (`POST {prefix}bind`), and when.
    pub bind: Option<(String, Instant)>,
}

/// An offer of a session to one operator, until answered or timed out.
#[derive(Debug, Clone, Copy)]
pub struct Offer {
    pub conn: ConnId,
    /// Tells a timeout that fires late from the offer it was armed for.
    pub token: u64,
}

#[derive(Debug)]
pub struct Session {
    pub id: String,
    /// When the customer called, in seconds since the Unix epoch.
    pub since: u64,
    /// Participant ids in the order they joined.
    pub participants: Vec<String>,
    /// Whether the customer lets operators act on the page.
    pub control: bool,
    /// Waiting for an operator: no operator yet, or an invite is open.
    pub wants_operator: bool,
    pub offer: Option<Offer>,
    /// Operators who let this call's offer time out in the current round.
    pub lapsed: HashSet<ConnId>,
    /// Since when no participant has been connected.
    pub idle_since: Option<Instant>,
    /// The state and queue position its participants were last told.
    pub told: Option<(SessionState, Option<usize>)>,
}

impl Session {
    pub fn new(id: String, since: u64) -> Session {
        Session {
            id,
            since,
            participants: Vec::new(),
            control: false,
            wants_operator: true,
            offer: None,
            lapsed: HashSet::new(),
            idle_since: None,
            told: None,
        }
    }
}

/// The `status` a session's participants see.
pub fn state_of(has_operator: bool, offered: bool) -> SessionState {
    if has_operator {
        SessionState::Connected
    } else if offered {
        SessionState::Offered
    } else {
        SessionState::Queued
    }
}

pub fn entry(p: &Participant) -> ParticipantEntry {
    ParticipantEntry {
        id: p.id.clone(),
        role: p.role,
        name: p.name.clone(),
        connected: p.conn.is_some(),
    }
}
