//! Why a connection ends: a Centrifugo disconnect code and reason, sent as the WebSocket close
//! frame's code and reason.
//!
//! The SDKs decide from the code alone whether to reconnect: 3500 to 3999 and 4500 to 4999 end
//! the session, every other code makes them reconnect with backoff (and recover).

use std::borrow::Cow;

use herald_protocol::codes;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disconnect {
    pub code: u16,
    pub reason: Cow<'static, str>,
}

impl Disconnect {
    pub const fn new_static(code: u16, reason: &'static str) -> Self {
        Self { code, reason: Cow::Borrowed(reason) }
    }

    pub const SHUTDOWN: Self = Self::from_code(codes::DISCONNECT_SHUTDOWN);
    pub const SERVER_ERROR: Self = Self::from_code(codes::DISCONNECT_SERVER_ERROR);
    pub const EXPIRED: Self = Self::from_code(codes::DISCONNECT_EXPIRED);
    pub const SLOW: Self = Self::from_code(codes::DISCONNECT_SLOW);
    pub const WRITE_ERROR: Self = Self::from_code(codes::DISCONNECT_WRITE_ERROR);
    pub const NO_PONG: Self = Self::from_code(codes::DISCONNECT_NO_PONG);
    pub const INVALID_TOKEN: Self = Self::from_code(codes::DISCONNECT_INVALID_TOKEN);
    pub const BAD_REQUEST: Self = Self::from_code(codes::DISCONNECT_BAD_REQUEST);
    pub const STALE: Self = Self::from_code(codes::DISCONNECT_STALE);
    pub const FORCE_NO_RECONNECT: Self = Self::from_code(codes::DISCONNECT_FORCE_NO_RECONNECT);
    pub const CONNECTION_LIMIT: Self = Self::from_code(codes::DISCONNECT_CONNECTION_LIMIT);

    const fn from_code(code: codes::DisconnectCode) -> Self {
        Self { code: code.code as u16, reason: Cow::Borrowed(code.reason) }
    }

    /// Whether the SDKs reconnect after this code.
    pub fn reconnects(&self) -> bool {
        !((3500..4000).contains(&self.code) || (4500..5000).contains(&self.code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_rules_follow_the_sdks() {
        assert!(Disconnect::SHUTDOWN.reconnects());
        assert!(Disconnect::SLOW.reconnects());
        assert!(Disconnect::NO_PONG.reconnects());
        assert!(!Disconnect::INVALID_TOKEN.reconnects());
        assert!(!Disconnect::BAD_REQUEST.reconnects());
        assert!(Disconnect::new_static(4000, "custom").reconnects());
        assert!(!Disconnect::new_static(4500, "custom").reconnects());
        assert_eq!(Disconnect::SLOW.code, 3008);
        assert_eq!(Disconnect::SHUTDOWN.code, 3001);
    }
}
