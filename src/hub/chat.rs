//! The chat beside the page: text messages with their sender's name and
//! time, delivered to everyone in the session (the sender too, numbered and
//! timed by the hub) and kept for participants who join later.
//!
//! Bounded three ways: a message holds at most `hub.chat_max_chars`
//! characters of plain text (no control characters but newline and tab); a
//! participant sends at most [`BURST`] at once, then one a second; a session
//! keeps its latest `hub.chat_max_messages` messages within
//! `hub.chat_max_bytes`, the oldest going first. The log goes when the
//! session ends. Nothing anyone typed reaches the log files.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::protocol::{ChatMessage, ErrorCode, Refusal, ServerMessage};
use crate::config::HubLimits;

/// Chat messages one participant may send at once before the pace of one a
/// second applies.
pub const BURST: u32 = 10;

/// What keeping a message costs beyond its text, name and sender: its
/// number, time and bookkeeping.
const OVERHEAD: usize = 64;

#[derive(Default)]
struct Log {
    messages: VecDeque<ChatMessage>,
    bytes: usize,
    /// The number the next message gets.
    next: u64,
}

fn cost(m: &ChatMessage) -> usize {
    m.text.len() + m.name.len() + m.sender.len() + OVERHEAD
}

pub struct Chats {
    logs: HashMap<String, Log>,
    max_messages: usize,
    max_bytes: usize,
    max_chars: usize,
    /// Chat messages per participant id.
    pub pace: DefaultKeyedRateLimiter<String>,
}

impl Chats {
    pub fn new(limits: &HubLimits) -> Chats {
        let burst = NonZeroU32::new(BURST).expect("not 0");
        Chats {
            logs: HashMap::new(),
            max_messages: limits.chat_max_messages,
            max_bytes: limits.chat_max_bytes,
            max_chars: limits.chat_max_chars,
            pace: RateLimiter::keyed(Quota::per_second(NonZeroU32::MIN).allow_burst(burst)),
        }
    }

    /// Checks `text` as a chat message: what is kept is the text trimmed.
    pub fn check<'t>(&self, text: &'t str) -> Result<&'t str, Refusal> {
        let text = text.trim();
        if text.is_empty() {
            return Err(Refusal::new(
                ErrorCode::BadMessage,
                "a chat message needs some text",
            ));
        }
        let chars = text.chars().count();
        if chars > self.max_chars {
            return Err(Refusal::new(
                ErrorCode::TooLarge,
                format!(
                    "a chat message holds at most {} characters; this one has {chars}",
                    self.max_chars
                ),
            ));
        }
        if text
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err(Refusal::new(
                ErrorCode::BadMessage,
                "a chat message is plain text: no control characters",
            ));
        }
        Ok(text)
    }

    /// Keeps a message in its session's log, the oldest making room.
    pub fn keep(
        &mut self,
        session: &str,
        mut message: ChatMessage,
    ) -> Result<ChatMessage, Refusal> {
        let size = cost(&message);
        if size > self.max_bytes {
            return Err(Refusal::new(
                ErrorCode::TooLarge,
                format!(
                    "the message is larger than the chat keeps ({} bytes, hub.chat_max_bytes)",
                    self.max_bytes
                ),
            ));
        }
        let log = self.logs.entry(session.to_string()).or_default();
        log.next += 1;
        message.n = log.next;
        while !log.messages.is_empty()
            && (log.messages.len() >= self.max_messages || log.bytes + size > self.max_bytes)
        {
            if let Some(old) = log.messages.pop_front() {
                log.bytes -= cost(&old);
            }
        }
        log.bytes += size;
        log.messages.push_back(message.clone());
        Ok(message)
    }

    /// The conversation so far, for a participant joining `session`; `None`
    /// when nothing was said.
    pub fn log_json(&self, session: &str) -> Option<String> {
        let log = self.logs.get(session).filter(|l| !l.messages.is_empty())?;
        Some(
            ServerMessage::ChatLog {
                session,
                messages: log.messages.iter().collect(),
            }
            .to_json(),
        )
    }

    pub fn forget(&mut self, session: &str) {
        self.logs.remove(session);
        self.pace.retain_recent();
    }

    /// What `session`'s log holds, for the checkpoint: the number the next
    /// message gets and the messages kept, oldest first.
    pub fn export(&self, session: &str) -> Option<(u64, Vec<ChatMessage>)> {
        let log = self.logs.get(session)?;
        Some((log.next, log.messages.iter().cloned().collect()))
    }

    /// Takes up a log from the checkpoint, within this hub's own bounds
    /// (the newest messages kept).
    pub fn restore(&mut self, session: &str, next: u64, messages: Vec<ChatMessage>) {
        let mut log = Log {
            next: messages.iter().map(|m| m.n).max().unwrap_or(0).max(next),
            ..Log::default()
        };
        for m in messages.into_iter().rev() {
            let size = cost(&m);
            if log.messages.len() >= self.max_messages || log.bytes + size > self.max_bytes {
                break;
            }
            log.bytes += size;
            log.messages.push_front(m);
        }
        self.logs.insert(session.to_string(), log);
    }

    /// Forgets every log (the hub hands its sessions over).
    pub fn forget_all(&mut self) {
        self.logs.clear();
    }

    #[cfg(test)]
    fn kept(&self, session: &str) -> (usize, usize) {
        self.logs
            .get(session)
            .map_or((0, 0), |l| (l.messages.len(), l.bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::protocol::Role;

    fn chats(max_messages: usize, max_bytes: usize, max_chars: usize) -> Chats {
        Chats::new(&HubLimits {
            chat_max_messages: max_messages,
            chat_max_bytes: max_bytes,
            chat_max_chars: max_chars,
            ..HubLimits::default()
        })
    }

    fn said(text: &str) -> ChatMessage {
        ChatMessage {
            n: 0,
            sender: "p1".into(),
            name: "Customer".into(),
            role: Role::Customer,
            time: 0,
            text: text.into(),
        }
    }

    #[test]
    fn the_log_keeps_the_latest_within_count_and_bytes() {
        let mut c = chats(3, 10_000, 100);
        for i in 0..5 {
            c.keep("s", said(&format!("m{i}"))).unwrap();
        }
        let log = c.log_json("s").unwrap();
        assert!(
            !log.contains("\"m1\"") && log.contains("\"m2\"") && log.contains("\"m4\""),
            "{log}"
        );
        assert!(log.contains("\"n\":5"), "{log}");
        assert_eq!(c.kept("s").0, 3);

        let one = cost(&said(&"x".repeat(100)));
        let mut c = chats(100, one * 2, 100);
        for _ in 0..5 {
            c.keep("s", said(&"x".repeat(100))).unwrap();
        }
        assert_eq!(c.kept("s"), (2, one * 2));
        assert_eq!(
            c.keep("s", said(&"x".repeat(one * 2))).unwrap_err().code,
            ErrorCode::TooLarge
        );
        c.forget("s");
        assert_eq!(c.log_json("s"), None);
    }

    #[test]
    fn messages_are_plain_text_of_bounded_length() {
        let c = chats(10, 10_000, 5);
        assert_eq!(c.check("  hello \n").unwrap(), "hello");
        assert_eq!(c.check("héllo").unwrap(), "héllo", "characters, not bytes");
        assert_eq!(c.check("a\tb").unwrap(), "a\tb");
        assert_eq!(c.check("   ").unwrap_err().code, ErrorCode::BadMessage);
        assert_eq!(c.check("hello!").unwrap_err().code, ErrorCode::TooLarge);
        assert_eq!(c.check("a\u{1b}b").unwrap_err().code, ErrorCode::BadMessage);
    }
}
