//! Client request messages carried in [`crate::Command`], plus the helper
//! messages they use ([`StreamPosition`], [`FilterNode`], [`TrackBatch`],
//! [`KeyedItem`]).
//!
//! Naming: client.proto's `RPCRequest` is [`RpcRequest`]; proto fields named
//! `type` are the Rust fields `r#type` (JSON key `"type"`).

use std::collections::HashMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::json::{is_default, nullable, raw};

/// Connect request (first command of a connection).
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectRequest {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub token: String,
    #[prost(bytes = "bytes", tag = "2")]
    #[serde(skip_serializing_if = "Bytes::is_empty", with = "raw")]
    pub data: Bytes,
    /// Server-side subscriptions to recover, by channel.
    #[prost(map = "string, message", tag = "3")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub subs: HashMap<String, SubscribeRequest>,
    /// SDK name, e.g. `js`.
    #[prost(string, tag = "4")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub name: String,
    /// SDK version.
    #[prost(string, tag = "5")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub version: String,
    /// Emulated headers (header emulation feature).
    #[prost(map = "string, string", tag = "6")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub headers: HashMap<String, String>,
    /// Connection-level feature bitmask the client supports.
    #[prost(int64, tag = "7")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub flag: i64,
    /// Untrusted application context hint.
    #[prost(string, tag = "9")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub profile: String,
    /// Id of a compression dictionary the client already holds.
    #[prost(string, tag = "8")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub dict: String,
}

/// Connection token refresh.
#[derive(Clone, PartialEq, Eq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct RefreshRequest {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub token: String,
}

/// Subscribe request.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct SubscribeRequest {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub channel: String,
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub token: String,
    /// Client asks to recover missed publications since `epoch`/`offset`.
    #[prost(bool, tag = "3")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub recover: bool,
    #[prost(string, tag = "6")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub epoch: String,
    #[prost(uint64, tag = "7")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub offset: u64,
    #[prost(bytes = "bytes", tag = "8")]
    #[serde(skip_serializing_if = "Bytes::is_empty", with = "raw")]
    pub data: Bytes,
    #[prost(bool, tag = "9")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub positioned: bool,
    #[prost(bool, tag = "10")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub recoverable: bool,
    #[prost(bool, tag = "11")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub join_leave: bool,
    /// Requested delta encoding; `"fossil"` is the only one defined.
    #[prost(string, tag = "12")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub delta: String,
    /// Optional server-side tags filter.
    #[prost(message, optional, tag = "13")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tf: Option<FilterNode>,
    /// Subscription feature bitmask (centrifuge-js always sends 1 =
    /// channel compaction; 2 = reject unrecovered).
    #[prost(int64, tag = "14")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub flag: i64,
    /// client.proto `type`.
    #[prost(int32, tag = "15")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub r#type: i32,
    #[prost(int32, tag = "16")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub phase: i32,
    #[prost(string, tag = "17")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub cursor: String,
    #[prost(int32, tag = "18")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub limit: i32,
    #[prost(bool, tag = "19")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub asc: bool,
}

/// Key and version of a tracked item.
#[derive(Clone, PartialEq, Eq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct KeyedItem {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub key: String,
    #[prost(uint64, tag = "2")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub version: u64,
}

/// Signed batch of tracked keys.
#[derive(Clone, PartialEq, Eq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct TrackBatch {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub signature: String,
    #[prost(message, repeated, tag = "2")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub items: Vec<KeyedItem>,
}

/// Subscription token refresh (type 0) or track/untrack (types 1/2).
#[derive(Clone, PartialEq, Eq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct SubRefreshRequest {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub channel: String,
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub token: String,
    /// client.proto `type`.
    #[prost(int32, tag = "3")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub r#type: i32,
    #[prost(message, repeated, tag = "4")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub track: Vec<TrackBatch>,
    #[prost(string, repeated, tag = "5")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub untrack: Vec<String>,
}

/// Unsubscribe request.
#[derive(Clone, PartialEq, Eq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct UnsubscribeRequest {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub channel: String,
}

/// Publish request.
#[derive(Clone, PartialEq, Eq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct PublishRequest {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub channel: String,
    #[prost(bytes = "bytes", tag = "2")]
    #[serde(skip_serializing_if = "Bytes::is_empty", with = "raw")]
    pub data: Bytes,
    /// client.proto `type` (0 regular, 1 map).
    #[prost(int32, tag = "3")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub r#type: i32,
    #[prost(string, tag = "4")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub key: String,
    #[prost(bool, tag = "5")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub removed: bool,
}

/// Presence request.
#[derive(Clone, PartialEq, Eq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct PresenceRequest {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub channel: String,
}

/// Presence stats request.
#[derive(Clone, PartialEq, Eq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct PresenceStatsRequest {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub channel: String,
}

/// Position in a channel stream.
#[derive(Clone, PartialEq, Eq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamPosition {
    #[prost(uint64, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub offset: u64,
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub epoch: String,
}

/// History request.
#[derive(Clone, PartialEq, Eq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct HistoryRequest {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub channel: String,
    #[prost(int32, tag = "7")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub limit: i32,
    #[prost(message, optional, tag = "8")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<StreamPosition>,
    #[prost(bool, tag = "9")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub reverse: bool,
}

/// Ping request (explicit ping command; the usual keepalive is the empty
/// command, see [`crate::Command`]).
#[derive(Clone, PartialEq, Eq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct PingRequest {}

/// RPC request (client.proto `RPCRequest`).
#[derive(Clone, PartialEq, Eq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct RpcRequest {
    #[prost(bytes = "bytes", tag = "1")]
    #[serde(skip_serializing_if = "Bytes::is_empty", with = "raw")]
    pub data: Bytes,
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub method: String,
}

/// Asynchronous message from client to server; no reply is sent.
#[derive(Clone, PartialEq, Eq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct SendRequest {
    #[prost(bytes = "bytes", tag = "1")]
    #[serde(skip_serializing_if = "Bytes::is_empty", with = "raw")]
    pub data: Bytes,
}

/// Node of a tags filter expression tree (`op` "", "and", "or", "not").
#[derive(Clone, PartialEq, Eq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct FilterNode {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub op: String,
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub key: String,
    #[prost(string, tag = "3")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub cmp: String,
    #[prost(string, tag = "4")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub val: String,
    #[prost(string, repeated, tag = "5")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub vals: Vec<String>,
    #[prost(message, repeated, tag = "6")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub nodes: Vec<FilterNode>,
}
