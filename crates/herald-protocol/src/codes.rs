//! Standard client protocol codes: reply errors (100–113), unsubscribe codes
//! (2000, 2500–2502) and disconnect codes (3000–3014, 3500–3509), with the
//! messages/reasons used by Centrifugo.
//!
//! Sources: centrifugal.dev `docs/server/codes.md`, centrifugal/centrifuge
//! `errors.go`, `disconnect.go`, `unsubscribe.go`, and the SDK behaviour in
//! centrifuge-js (`centrifuge.ts`: disconnect codes 3500–3999 and 4500–4999 are
//! terminal, everything else reconnects; unsubscribe codes `>= 2500`
//! resubscribe). Codes 3002, 3003 and 3007 are not defined by the v2 protocol.

use crate::messages::{Disconnect, Error, Unsubscribe};

/// Subscribe request `flag` bit: the client accepts a numeric subscription id in place of the
/// channel name in pushes (channel compaction; Centrifugo never enables it, nor does Herald).
pub const SUBSCRIBE_FLAG_CHANNEL_COMPACTION: i64 = 1;
/// Subscribe request `flag` bit: when recovery fails, answer 112 (unrecoverable position)
/// instead of `recovered: false`; the SDKs then reload state (`getState`) and subscribe again.
pub const SUBSCRIBE_FLAG_REJECT_UNRECOVERED: i64 = 2;

/// A standard reply error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ErrorCode {
    pub code: u32,
    pub message: &'static str,
    /// Temporary errors may be retried by the SDKs.
    pub temporary: bool,
}

impl ErrorCode {
    /// The wire [`Error`] for this code.
    pub fn to_error(&self) -> Error {
        Error { code: self.code, message: self.message.to_owned(), temporary: self.temporary }
    }
}

impl From<ErrorCode> for Error {
    fn from(code: ErrorCode) -> Error {
        code.to_error()
    }
}

const fn error(code: u32, message: &'static str, temporary: bool) -> ErrorCode {
    ErrorCode { code, message, temporary }
}

pub const ERROR_INTERNAL: ErrorCode = error(100, "internal server error", true);
pub const ERROR_UNAUTHORIZED: ErrorCode = error(101, "unauthorized", false);
pub const ERROR_UNKNOWN_CHANNEL: ErrorCode = error(102, "unknown channel", false);
pub const ERROR_PERMISSION_DENIED: ErrorCode = error(103, "permission denied", false);
pub const ERROR_METHOD_NOT_FOUND: ErrorCode = error(104, "method not found", false);
pub const ERROR_ALREADY_SUBSCRIBED: ErrorCode = error(105, "already subscribed", false);
pub const ERROR_LIMIT_EXCEEDED: ErrorCode = error(106, "limit exceeded", false);
pub const ERROR_BAD_REQUEST: ErrorCode = error(107, "bad request", false);
pub const ERROR_NOT_AVAILABLE: ErrorCode = error(108, "not available", false);
/// The SDKs react by fetching a new token and retrying.
pub const ERROR_TOKEN_EXPIRED: ErrorCode = error(109, "token expired", false);
pub const ERROR_EXPIRED: ErrorCode = error(110, "expired", false);
pub const ERROR_TOO_MANY_REQUESTS: ErrorCode = error(111, "too many requests", true);
pub const ERROR_UNRECOVERABLE_POSITION: ErrorCode = error(112, "unrecoverable position", false);
pub const ERROR_CONCURRENT_PAGINATION: ErrorCode = error(113, "concurrent pagination", true);

/// Every standard reply error, by code.
pub const ALL_ERRORS: &[ErrorCode] = &[
    ERROR_INTERNAL,
    ERROR_UNAUTHORIZED,
    ERROR_UNKNOWN_CHANNEL,
    ERROR_PERMISSION_DENIED,
    ERROR_METHOD_NOT_FOUND,
    ERROR_ALREADY_SUBSCRIBED,
    ERROR_LIMIT_EXCEEDED,
    ERROR_BAD_REQUEST,
    ERROR_NOT_AVAILABLE,
    ERROR_TOKEN_EXPIRED,
    ERROR_EXPIRED,
    ERROR_TOO_MANY_REQUESTS,
    ERROR_UNRECOVERABLE_POSITION,
    ERROR_CONCURRENT_PAGINATION,
];

/// A standard unsubscribe code (sent in an [`Unsubscribe`] push).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UnsubscribeCode {
    pub code: u32,
    pub reason: &'static str,
}

impl UnsubscribeCode {
    /// Whether the SDKs resubscribe automatically (`code >= 2500`).
    pub const fn resubscribe(&self) -> bool {
        self.code >= 2500
    }

    /// The wire [`Unsubscribe`] push payload for this code.
    pub fn to_unsubscribe(&self) -> Unsubscribe {
        Unsubscribe { code: self.code, reason: self.reason.to_owned() }
    }
}

/// Unsubscribe initiated by the client; server-internal, never sent.
pub const UNSUBSCRIBE_CLIENT: UnsubscribeCode = UnsubscribeCode { code: 0, reason: "client unsubscribed" };
/// Unsubscribe caused by client disconnect; server-internal, never sent.
pub const UNSUBSCRIBE_DISCONNECT: UnsubscribeCode = UnsubscribeCode { code: 1, reason: "client disconnected" };
/// Explicit server-side unsubscribe; no resubscribe.
pub const UNSUBSCRIBE_SERVER: UnsubscribeCode = UnsubscribeCode { code: 2000, reason: "server unsubscribe" };
/// Insufficient state in the stream; the client resubscribes and recovers.
pub const UNSUBSCRIBE_INSUFFICIENT_STATE: UnsubscribeCode =
    UnsubscribeCode { code: 2500, reason: "insufficient state" };
/// Subscription expired; the client resubscribes with a fresh token.
pub const UNSUBSCRIBE_EXPIRED: UnsubscribeCode = UnsubscribeCode { code: 2501, reason: "subscription expired" };
/// Subscription state/token invalidated; the client resubscribes from scratch.
pub const UNSUBSCRIBE_STATE_INVALIDATED: UnsubscribeCode = UnsubscribeCode { code: 2502, reason: "state invalidated" };

/// A standard disconnect code (sent in a [`Disconnect`] push and/or as the
/// WebSocket close code with the reason as close reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DisconnectCode {
    pub code: u32,
    pub reason: &'static str,
}

impl DisconnectCode {
    /// Whether the SDKs reconnect after this code: terminal ranges are
    /// 3500–3999 and 4500–4999, everything else reconnects.
    pub const fn reconnect(&self) -> bool {
        reconnect_for(self.code)
    }

    /// The wire [`Disconnect`] push payload for this code. `reconnect` is
    /// left `false` (omitted), as the Go server does: v2 SDKs decide by code.
    pub fn to_disconnect(&self) -> Disconnect {
        Disconnect { code: self.code, reason: self.reason.to_owned(), reconnect: false }
    }
}

/// SDK reconnect rule for any disconnect code (see [`DisconnectCode::reconnect`]).
pub const fn reconnect_for(code: u32) -> bool {
    !((code >= 3500 && code < 4000) || (code >= 4500 && code < 5000))
}

const fn disconnect(code: u32, reason: &'static str) -> DisconnectCode {
    DisconnectCode { code, reason }
}

/// Connection closed without advice from the server (e.g. network loss).
pub const DISCONNECT_CONNECTION_CLOSED: DisconnectCode = disconnect(3000, "connection closed");
// Non-terminal: the client reconnects.
pub const DISCONNECT_SHUTDOWN: DisconnectCode = disconnect(3001, "shutdown");
pub const DISCONNECT_SERVER_ERROR: DisconnectCode = disconnect(3004, "internal server error");
pub const DISCONNECT_EXPIRED: DisconnectCode = disconnect(3005, "connection expired");
pub const DISCONNECT_SUB_EXPIRED: DisconnectCode = disconnect(3006, "subscription expired");
pub const DISCONNECT_SLOW: DisconnectCode = disconnect(3008, "slow");
pub const DISCONNECT_WRITE_ERROR: DisconnectCode = disconnect(3009, "write error");
pub const DISCONNECT_INSUFFICIENT_STATE: DisconnectCode = disconnect(3010, "insufficient state");
pub const DISCONNECT_FORCE_RECONNECT: DisconnectCode = disconnect(3011, "force reconnect");
pub const DISCONNECT_NO_PONG: DisconnectCode = disconnect(3012, "no pong");
pub const DISCONNECT_TOO_MANY_REQUESTS: DisconnectCode = disconnect(3013, "too many requests");
pub const DISCONNECT_STATE_INVALIDATED: DisconnectCode = disconnect(3014, "state invalidated");
// Terminal: the client does not reconnect.
pub const DISCONNECT_INVALID_TOKEN: DisconnectCode = disconnect(3500, "invalid token");
pub const DISCONNECT_BAD_REQUEST: DisconnectCode = disconnect(3501, "bad request");
pub const DISCONNECT_STALE: DisconnectCode = disconnect(3502, "stale");
pub const DISCONNECT_FORCE_NO_RECONNECT: DisconnectCode = disconnect(3503, "force disconnect");
pub const DISCONNECT_CONNECTION_LIMIT: DisconnectCode = disconnect(3504, "connection limit");
pub const DISCONNECT_CHANNEL_LIMIT: DisconnectCode = disconnect(3505, "channel limit");
pub const DISCONNECT_INAPPROPRIATE_PROTOCOL: DisconnectCode = disconnect(3506, "inappropriate protocol");
pub const DISCONNECT_PERMISSION_DENIED: DisconnectCode = disconnect(3507, "permission denied");
pub const DISCONNECT_NOT_AVAILABLE: DisconnectCode = disconnect(3508, "not available");
pub const DISCONNECT_TOO_MANY_ERRORS: DisconnectCode = disconnect(3509, "too many errors");

/// Every standard disconnect code, by code.
pub const ALL_DISCONNECTS: &[DisconnectCode] = &[
    DISCONNECT_CONNECTION_CLOSED,
    DISCONNECT_SHUTDOWN,
    DISCONNECT_SERVER_ERROR,
    DISCONNECT_EXPIRED,
    DISCONNECT_SUB_EXPIRED,
    DISCONNECT_SLOW,
    DISCONNECT_WRITE_ERROR,
    DISCONNECT_INSUFFICIENT_STATE,
    DISCONNECT_FORCE_RECONNECT,
    DISCONNECT_NO_PONG,
    DISCONNECT_TOO_MANY_REQUESTS,
    DISCONNECT_STATE_INVALIDATED,
    DISCONNECT_INVALID_TOKEN,
    DISCONNECT_BAD_REQUEST,
    DISCONNECT_STALE,
    DISCONNECT_FORCE_NO_RECONNECT,
    DISCONNECT_CONNECTION_LIMIT,
    DISCONNECT_CHANNEL_LIMIT,
    DISCONNECT_INAPPROPRIATE_PROTOCOL,
    DISCONNECT_PERMISSION_DENIED,
    DISCONNECT_NOT_AVAILABLE,
    DISCONNECT_TOO_MANY_ERRORS,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_ranges() {
        assert!(DISCONNECT_SHUTDOWN.reconnect());
        assert!(DISCONNECT_STATE_INVALIDATED.reconnect());
        assert!(!DISCONNECT_INVALID_TOKEN.reconnect());
        assert!(!DISCONNECT_TOO_MANY_ERRORS.reconnect());
        assert!(reconnect_for(4000) && reconnect_for(4499) && reconnect_for(5000));
        assert!(!reconnect_for(4500) && !reconnect_for(4999) && !reconnect_for(3999));
        for d in ALL_DISCONNECTS {
            assert_eq!(d.reconnect(), d.code < 3500, "{d:?}");
        }
    }

    #[test]
    fn codes_are_sorted_and_unique() {
        assert!(ALL_ERRORS.windows(2).all(|w| w[0].code < w[1].code));
        assert!(ALL_DISCONNECTS.windows(2).all(|w| w[0].code < w[1].code));
        assert_eq!(ALL_ERRORS.len(), 14);
    }

    #[test]
    fn conversions() {
        let e: Error = ERROR_TOO_MANY_REQUESTS.into();
        assert_eq!(e, Error { code: 111, message: "too many requests".into(), temporary: true });
        assert!(UNSUBSCRIBE_INSUFFICIENT_STATE.resubscribe());
        assert!(!UNSUBSCRIBE_SERVER.resubscribe());
        assert_eq!(DISCONNECT_BAD_REQUEST.to_disconnect().reason, "bad request");
    }
}
