//! The hub's operations on the conversation beside the page (what is kept
//! is in [`conversation`](super::conversation)): a customer's join code and
//! an operator joining by it, the chat, and requests for control with the
//! customer's answer. Each checks who asks under the state lock, then uses
//! the conversation's own locks (after the state lock, never before).

use std::time::Instant;

use tracing::info;

use super::chat;
use super::membership::now_secs;
use super::protocol::{ChatMessage, ErrorCode, Refusal, Role, ServerMessage};
use super::registry::{State, address_of};
use super::session::ConnId;
use super::state::Shared;
use crate::telemetry;

impl Shared {
    /// A customer asks for a code to read out; only its own connection is
    /// told it.
    pub fn issue_code(&self, conn: ConnId) -> Result<(), Refusal> {
        let st = self.lock();
        let (c, p) = st.participant_of(conn)?;
        if c.role != Role::Customer {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                "only a customer gives out a join code",
            ));
        }
        let p = p.ok_or_else(|| {
            Refusal::new(
                ErrorCode::NotInSession,
                "call first: a join code names the session it joins",
            )
        })?;
        if !st.sessions.contains_key(&p.session) {
            return Err(Refusal::new(
                ErrorCode::NotInSession,
                "the session has ended",
            ));
        }
        let (code, lasts) = self.conversation.codes.issue(&p.session);
        let json = ServerMessage::Code {
            session: &p.session,
            code: &code,
            expires_in: lasts.as_secs(),
        }
        .to_json();
        info!(target: "audit", event = "code_issued", session = %p.session, participant = %p.id);
        self.checkpoint.session(&p.session);
        st.send_text(conn, json);
        Ok(())
    }

    /// An operator joins the session a customer's code names, straight in
    /// (the queue is skipped), admitted as by `respond`.
    pub fn join_by_code(&self, conn: ConnId, code: &str) -> Result<(), Refusal> {
        let mut st = self.lock();
        let (c, p) = st.participant_of(conn)?;
        let account = match (c.role, &c.account) {
            (Role::Operator, Some(a)) => a.clone(),
            _ => {
                return Err(Refusal::new(
                    ErrorCode::Forbidden,
                    "only operators join by code",
                ));
            }
        };
        if p.is_some() {
            return Err(Refusal::new(
                ErrorCode::InSession,
                "leave your session before joining another",
            ));
        }
        self.conversation
            .codes
            .allow(&account.user, address_of(c.remote))?;
        let Some(sid) = self
            .conversation
            .codes
            .redeem(code)
            .filter(|sid| st.sessions.contains_key(sid))
        else {
            metrics::counter!(telemetry::HUB_CODE_LOOKUPS, "result" => "unknown").increment(1);
            return Err(Refusal::new(
                ErrorCode::UnknownCode,
                "no session has that code: it may be mistyped, used already or expired",
            ));
        };
        metrics::counter!(telemetry::HUB_CODE_LOOKUPS, "result" => "joined").increment(1);
        let pid = st.admit_operator(conn, &sid, &account);
        info!(target: "audit", event = "join", session = %sid, participant = %pid, role = "operator", user = %account.user, via = "code");
        Ok(())
    }
}

impl Shared {
    /// A participant says something: kept, and delivered to everyone
    /// connected in the session, the sender included.
    pub fn chat(&self, conn: ConnId, text: &str) -> Result<(), Refusal> {
        let st = self.lock();
        let (_, p) = st.participant_of(conn)?;
        let p = p.ok_or_else(|| {
            Refusal::new(ErrorCode::NotInSession, "join a session before chatting")
        })?;
        if !st.sessions.contains_key(&p.session) {
            return Err(Refusal::new(
                ErrorCode::NotInSession,
                "the session has ended",
            ));
        }
        let mut chats = self.conversation.chats();
        let text = chats.check(text)?;
        if chats.pace.check_key(&p.id).is_err() {
            return Err(Refusal::new(
                ErrorCode::RateLimited,
                format!(
                    "more than {} chat messages at once, then one a second; slow down",
                    chat::BURST
                ),
            ));
        }
        let message = ChatMessage {
            n: 0,
            sender: p.id.clone(),
            name: p.name.clone(),
            role: p.role,
            time: now_secs(),
            text: text.to_string(),
        };
        let message = chats.keep(&p.session, message)?;
        drop(chats);
        self.checkpoint.chat(&p.session);
        let json = ServerMessage::Chat {
            session: &p.session,
            message: &message,
        }
        .to_json();
        for to in st.connected(&p.session) {
            st.send_text(to, json.clone());
        }
        Ok(())
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
        let (c, p) = st.participant_of(conn)?;
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
        let prompt = self
            .conversation
            .asks()
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
    /// control ([`Shared::control`]); everyone in the session is told the
    /// answer.
    pub fn answer_control(&self, conn: ConnId, granted: bool) -> Result<(), Refusal> {
        {
            let st = self.lock();
            let (c, p) = st.participant_of(conn)?;
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
            let asked = self
                .conversation
                .asks()
                .answer(&p.session, granted, Instant::now());
            if let Some(from) = asked {
                if !granted {
                    info!(target: "audit", event = "control_denied", session = %p.session, participant = %p.id, asked_by = %from);
                }
                let json = ServerMessage::ControlAnswer {
                    session: &p.session,
                    granted,
                }
                .to_json();
                // The customer's other tabs close their prompt too.
                for to in st.connected(&p.session) {
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
