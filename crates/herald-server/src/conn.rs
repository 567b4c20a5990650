//! A connection as the rest of the node sees it: its id, wire protocol, bounded outbox and,
//! once connected, its user. The hub indexes these handles for fan-out and targeting; the
//! session (`client.rs`) and the transport own the rest of the connection. This module depends
//! on nothing but the outbox, so the hub does not depend on the session.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use herald_protocol::Protocol;

use crate::outbox::{Outbox, OutboxLimits};

/// The part of a connection the hub and the server API hold.
pub struct ConnShared {
    pub id: Arc<str>,
    pub protocol: Protocol,
    pub outbox: Outbox,
    identity: OnceLock<Identity>,
}

struct Identity {
    user: Arc<str>,
    conn_info: Bytes,
}

impl ConnShared {
    pub fn new(protocol: Protocol, limits: OutboxLimits) -> Self {
        Self {
            id: Arc::from(uuid::Uuid::new_v4().to_string()),
            protocol,
            outbox: Outbox::new(limits),
            identity: OnceLock::new(),
        }
    }

    /// The authenticated user; empty for anonymous or not yet connected clients.
    pub fn user(&self) -> &str {
        self.identity.get().map(|i| &*i.user).unwrap_or("")
    }

    pub fn user_arc(&self) -> Arc<str> {
        self.identity.get().map(|i| i.user.clone()).unwrap_or_else(|| Arc::from(""))
    }

    pub fn conn_info(&self) -> Bytes {
        self.identity.get().map(|i| i.conn_info.clone()).unwrap_or_default()
    }

    /// Record who authenticated on this connection; once only (false the second time).
    pub fn set_identity(&self, user: Arc<str>, conn_info: Bytes) -> bool {
        self.identity.set(Identity { user, conn_info }).is_ok()
    }
}
