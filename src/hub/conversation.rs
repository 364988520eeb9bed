//! What the hub keeps of what the people in a session say to each other
//! beside the page: join codes a customer reads out ([`code`](super::code)),
//! the chat ([`chat`](super::chat)) and requests for control
//! ([`control`](super::control)). The operations on them are in
//! [`talk`](super::talk).
//!
//! Each part has its own lock, always taken after the hub's state lock and
//! never held while taking it, so the operations that use both stay in one
//! order. Everything kept for a session is forgotten when it ends
//! ([`Conversation::forget`], called from the hub's session end hook).

use std::sync::{Mutex, MutexGuard};

use super::chat::Chats;
use super::code::Codes;
use super::control::Asks;
use crate::config::HubLimits;
use crate::lock::lock;

pub struct Conversation {
    pub codes: Codes,
    chats: Mutex<Chats>,
    asks: Mutex<Asks>,
}

impl Conversation {
    pub fn new(limits: &HubLimits) -> Conversation {
        Conversation {
            codes: Codes::new(limits),
            chats: Mutex::new(Chats::new(limits)),
            asks: Mutex::new(Asks::default()),
        }
    }

    /// The session ended: its code, its chat and any open request for
    /// control go with it.
    pub fn forget(&self, session: &str) {
        self.codes.forget(session);
        self.chats().forget(session);
        self.asks().forget(session);
    }

    /// Forgets what every session said, without ending any: the hub hands
    /// its sessions over to another node, which has them from the
    /// checkpoint.
    pub fn forget_all(&self) {
        self.codes.forget_all();
        self.chats().forget_all();
        self.asks().forget_all();
    }

    pub fn chats(&self) -> MutexGuard<'_, Chats> {
        lock(&self.chats)
    }

    pub fn asks(&self) -> MutexGuard<'_, Asks> {
        lock(&self.asks)
    }

    /// Forgets rate-limit entries of operators and addresses gone quiet, and
    /// codes past their expiry.
    pub fn tidy(&self) {
        self.codes.tidy();
    }
}
