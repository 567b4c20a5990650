//! Top-level frames of the client protocol: [`Command`] (client → server),
//! [`Reply`] (server → client, answer or push), [`Push`] and [`Error`].
//!
//! Field numbers and types follow `definitions/client.proto` of
//! `centrifugal/protocol`. The protocol deliberately uses a set of optional
//! fields instead of a `oneof` (for JSON interoperability): the server takes
//! the first request that is set.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::push::{Connect, Disconnect, Join, Leave, Message, Publication, Refresh, Subscribe, Unsubscribe};
use super::requests::{
    ConnectRequest, HistoryRequest, PingRequest, PresenceRequest, PresenceStatsRequest, PublishRequest, RefreshRequest,
    RpcRequest, SendRequest, SubRefreshRequest, SubscribeRequest, UnsubscribeRequest,
};
use super::results::{
    ConnectResult, HistoryResult, PingResult, PresenceResult, PresenceStatsResult, PublishResult, RefreshResult,
    RpcResult, SubRefreshResult, SubscribeResult, UnsubscribeResult,
};
use crate::json::{is_default, nullable, raw};

/// Error returned to a client inside a [`Reply`] (client.proto `Error`).
///
/// Not a Rust error type: it is the wire message. Standard values live in
/// [`crate::codes`].
#[derive(Clone, PartialEq, Eq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Error {
    #[prost(uint32, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub code: u32,
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub message: String,
    #[prost(bool, tag = "3")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub temporary: bool,
}

/// Body of an HTTP emulation request (bidirectional emulation over
/// unidirectional transports). In JSON `data` is raw JSON (a JSON string
/// holding the encoded commands); in Protobuf it is the encoded commands.
#[derive(Clone, PartialEq, Eq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct EmulationRequest {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub node: String,
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub session: String,
    #[prost(bytes = "bytes", tag = "3")]
    #[serde(skip_serializing_if = "Bytes::is_empty", with = "raw")]
    pub data: Bytes,
}

/// Command sent from a client to a server.
///
/// An all-default `Command` is the client's pong: `{}` in JSON, a zero-length
/// message (single `0x00` length byte inside the frame) in Protobuf.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Command {
    /// Command id; replies carry the same id. Zero for commands that expect no
    /// reply (`send`, pong).
    #[prost(uint32, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub id: u32,
    #[prost(message, optional, tag = "4")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect: Option<ConnectRequest>,
    #[prost(message, optional, tag = "5")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<SubscribeRequest>,
    #[prost(message, optional, tag = "6")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unsubscribe: Option<UnsubscribeRequest>,
    #[prost(message, optional, tag = "7")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish: Option<PublishRequest>,
    #[prost(message, optional, tag = "8")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence: Option<PresenceRequest>,
    #[prost(message, optional, tag = "9")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_stats: Option<PresenceStatsRequest>,
    #[prost(message, optional, tag = "10")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<HistoryRequest>,
    #[prost(message, optional, tag = "11")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ping: Option<PingRequest>,
    #[prost(message, optional, tag = "12")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send: Option<SendRequest>,
    #[prost(message, optional, tag = "13")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpc: Option<RpcRequest>,
    #[prost(message, optional, tag = "14")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh: Option<RefreshRequest>,
    #[prost(message, optional, tag = "15")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_refresh: Option<SubRefreshRequest>,
}

impl Command {
    /// True for the all-default command (`{}`), which clients send as the pong
    /// to a server ping.
    pub fn is_empty(&self) -> bool {
        *self == Command::default()
    }
}

/// Reply sent from a server to a client: the answer to a [`Command`] (same
/// `id`, `error` or one result set) or an asynchronous [`Push`] (`id` 0).
///
/// An all-default `Reply` is the server ping: `{}` in JSON, a zero-length
/// message in Protobuf.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Reply {
    #[prost(uint32, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub id: u32,
    #[prost(message, optional, tag = "2")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Error>,
    #[prost(message, optional, tag = "4")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push: Option<Push>,
    #[prost(message, optional, tag = "5")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect: Option<ConnectResult>,
    #[prost(message, optional, tag = "6")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<SubscribeResult>,
    #[prost(message, optional, tag = "7")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unsubscribe: Option<UnsubscribeResult>,
    #[prost(message, optional, tag = "8")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish: Option<PublishResult>,
    #[prost(message, optional, tag = "9")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence: Option<PresenceResult>,
    #[prost(message, optional, tag = "10")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_stats: Option<PresenceStatsResult>,
    #[prost(message, optional, tag = "11")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<HistoryResult>,
    #[prost(message, optional, tag = "12")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ping: Option<PingResult>,
    #[prost(message, optional, tag = "13")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpc: Option<RpcResult>,
    #[prost(message, optional, tag = "14")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh: Option<RefreshResult>,
    #[prost(message, optional, tag = "15")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_refresh: Option<SubRefreshResult>,
}

impl Reply {
    /// The server ping (all fields default).
    pub fn ping() -> Reply {
        Reply::default()
    }

    /// A reply wrapping an asynchronous push.
    pub fn from_push(push: Push) -> Reply {
        Reply { push: Some(push), ..Reply::default() }
    }

    /// An error reply to command `id`.
    pub fn from_error(id: u32, error: Error) -> Reply {
        Reply { id, error: Some(error), ..Reply::default() }
    }
}

/// Asynchronous server-to-client message. Sent wrapped in [`Reply::push`] on
/// bidirectional transports and bare on unidirectional ones.
///
/// Naming: client.proto's field `pub` is the Rust field [`Push::publication`]
/// (`pub` is a Rust keyword); it is still named `pub` on the wire (JSON key
/// `"pub"`, Protobuf field 4).
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Push {
    /// Optional numeric channel id used instead of `channel` when the
    /// subscription negotiated channel compaction ([`crate::SubscribeResult::id`]).
    #[prost(int64, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub id: i64,
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub channel: String,
    /// client.proto `pub` (field 4).
    #[prost(message, optional, tag = "4")]
    #[serde(rename = "pub", skip_serializing_if = "Option::is_none")]
    pub publication: Option<Publication>,
    #[prost(message, optional, tag = "5")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join: Option<Join>,
    #[prost(message, optional, tag = "6")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leave: Option<Leave>,
    #[prost(message, optional, tag = "7")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unsubscribe: Option<Unsubscribe>,
    #[prost(message, optional, tag = "8")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
    #[prost(message, optional, tag = "9")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<Subscribe>,
    #[prost(message, optional, tag = "10")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect: Option<Connect>,
    #[prost(message, optional, tag = "11")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disconnect: Option<Disconnect>,
    #[prost(message, optional, tag = "12")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh: Option<Refresh>,
}
