//! Push payloads ([`Publication`], [`Join`], [`Leave`], [`Unsubscribe`],
//! [`Subscribe`], [`Message`], [`Connect`], [`Disconnect`], [`Refresh`]) and the
//! shared [`ClientInfo`] and [`Dictionary`] messages.
//!
//! `bytes` fields hold the raw payload: arbitrary bytes on Protobuf
//! connections, one raw JSON value on JSON connections (see [`crate::json`]).

use std::collections::HashMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::results::SubscribeResult;
use crate::json::{is_default, nullable, raw};

/// Information about a client connection (presence entries, join/leave,
/// publication publisher).
#[derive(Clone, PartialEq, Eq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientInfo {
    #[prost(string, tag = "1")]
    #[serde(deserialize_with = "nullable")]
    pub user: String,
    #[prost(string, tag = "2")]
    #[serde(deserialize_with = "nullable")]
    pub client: String,
    #[prost(bytes = "bytes", tag = "3")]
    #[serde(skip_serializing_if = "Bytes::is_empty", with = "raw")]
    pub conn_info: Bytes,
    #[prost(bytes = "bytes", tag = "4")]
    #[serde(skip_serializing_if = "Bytes::is_empty", with = "raw")]
    pub chan_info: Bytes,
}

/// Publication in a channel.
///
/// For a delta-negotiated subscription `data` holds the wire form produced by
/// [`crate::delta_data`] / [`crate::delta_full_data`] rather than the payload.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Publication {
    /// Publication payload.
    #[prost(bytes = "bytes", tag = "4")]
    #[serde(skip_serializing_if = "Bytes::is_empty", with = "raw")]
    pub data: Bytes,
    /// Optional publisher info.
    #[prost(message, optional, tag = "5")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<ClientInfo>,
    /// Stream offset (the epoch is given in the subscribe result).
    #[prost(uint64, tag = "6")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub offset: u64,
    #[prost(map = "string, string", tag = "7")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub tags: HashMap<String, String>,
    /// `data` is a fossil delta against the previous publication's payload.
    #[prost(bool, tag = "8")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub delta: bool,
    /// Optional publication time, Unix milliseconds.
    #[prost(int64, tag = "9")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub time: i64,
    /// Channel, set for publications of wildcard subscriptions.
    #[prost(string, tag = "10")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub channel: String,
    #[prost(string, tag = "11")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub key: String,
    #[prost(bool, tag = "12")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub removed: bool,
    #[prost(sint64, tag = "13")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub score: i64,
    #[prost(string, tag = "14")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub epoch: String,
    /// Previous payload for broker fan-out delta computation; not for clients.
    #[prost(bytes = "bytes", tag = "15")]
    #[serde(skip_serializing_if = "Bytes::is_empty", with = "raw")]
    pub prev_data: Bytes,
    #[prost(uint64, tag = "16")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub version: u64,
}

/// A client joined a channel.
#[derive(Clone, PartialEq, Eq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Join {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<ClientInfo>,
}

/// A client left a channel.
#[derive(Clone, PartialEq, Eq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Leave {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<ClientInfo>,
}

/// Server unsubscribed the client from a channel. Codes `>= 2500` make the
/// SDKs resubscribe (see [`crate::codes`]).
#[derive(Clone, PartialEq, Eq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Unsubscribe {
    #[prost(uint32, tag = "2")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub code: u32,
    #[prost(string, tag = "3")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub reason: String,
}

/// Server-side subscription was added.
#[derive(Clone, PartialEq, Eq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Subscribe {
    #[prost(bool, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub recoverable: bool,
    #[prost(string, tag = "4")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub epoch: String,
    #[prost(uint64, tag = "5")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub offset: u64,
    #[prost(bool, tag = "6")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub positioned: bool,
    #[prost(bytes = "bytes", tag = "7")]
    #[serde(skip_serializing_if = "Bytes::is_empty", with = "raw")]
    pub data: Bytes,
}

/// Asynchronous message to the client (server → client `message` push).
#[derive(Clone, PartialEq, Eq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Message {
    #[prost(bytes = "bytes", tag = "1")]
    #[serde(skip_serializing_if = "Bytes::is_empty", with = "raw")]
    pub data: Bytes,
}

/// Connect push, used by unidirectional transports instead of a connect reply.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Connect {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub client: String,
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub version: String,
    #[prost(bytes = "bytes", tag = "3")]
    #[serde(skip_serializing_if = "Bytes::is_empty", with = "raw")]
    pub data: Bytes,
    #[prost(map = "string, message", tag = "4")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub subs: HashMap<String, SubscribeResult>,
    #[prost(bool, tag = "5")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub expires: bool,
    #[prost(uint32, tag = "6")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub ttl: u32,
    #[prost(uint32, tag = "7")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub ping: u32,
    #[prost(bool, tag = "8")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub pong: bool,
    #[prost(string, tag = "9")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub session: String,
    #[prost(string, tag = "10")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub node: String,
    /// Server time, Unix milliseconds (not sent by default).
    #[prost(int64, tag = "11")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub time: i64,
}

/// Disconnect push. Whether the SDK reconnects is decided by the code range
/// (see [`crate::codes::DisconnectCode::reconnect`]).
#[derive(Clone, PartialEq, Eq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Disconnect {
    #[prost(uint32, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub code: u32,
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub reason: String,
    #[prost(bool, tag = "3")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub reconnect: bool,
}

/// Refresh push (connection expiration update, unidirectional transports).
#[derive(Clone, PartialEq, Eq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Refresh {
    #[prost(bool, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub expires: bool,
    #[prost(uint32, tag = "2")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub ttl: u32,
}

/// Shared compression dictionary announced in [`crate::ConnectResult::dict`]
/// (a recent, optional protocol extension; Herald may leave it unset).
#[derive(Clone, PartialEq, Eq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Dictionary {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub id: String,
    /// DEFLATE-compressed content, Protobuf connections only.
    #[prost(bytes = "bytes", tag = "2")]
    #[serde(skip_serializing_if = "Bytes::is_empty", with = "raw")]
    pub data: Bytes,
    /// Base64 of the compressed content, JSON connections only.
    #[prost(string, tag = "3")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub data_b64: String,
}
