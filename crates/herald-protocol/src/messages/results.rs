//! Result messages carried in [`crate::Reply`] as answers to commands.
//!
//! Naming: client.proto's `RPCResult` is [`RpcResult`]; the proto field `type`
//! is the Rust field `r#type` (JSON key `"type"`).

use std::collections::HashMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::push::{ClientInfo, Dictionary, Publication};
use crate::json::{is_default, nullable, raw};

/// One entry of [`ConnectResult::subs`] (a protobuf map entry: key 1, value 2).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct SubscribeResultEntry {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<SubscribeResult>,
}

impl SubscribeResultEntry {
    pub fn new(channel: impl Into<String>, result: SubscribeResult) -> Self {
        Self { key: channel.into(), value: Some(result) }
    }
}

/// JSON form of [`ConnectResult::subs`]: `{"<channel>": SubscribeResult, ...}`.
mod subs_map {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer};

    use super::{SubscribeResult, SubscribeResultEntry};

    pub(crate) fn serialize<S: Serializer>(entries: &[SubscribeResultEntry], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(entries.iter().map(|e| (&e.key, e.value.clone().unwrap_or_default())))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<SubscribeResultEntry>, D::Error> {
        let map = Option::<BTreeMap<String, SubscribeResult>>::deserialize(deserializer)?.unwrap_or_default();
        Ok(map.into_iter().map(|(key, value)| SubscribeResultEntry { key, value: Some(value) }).collect())
    }
}

/// Connect result.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectResult {
    /// Client (connection) id.
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub client: String,
    /// Server version string.
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub version: String,
    #[prost(bool, tag = "3")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub expires: bool,
    #[prost(uint32, tag = "4")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub ttl: u32,
    #[prost(bytes = "bytes", tag = "5")]
    #[serde(skip_serializing_if = "Bytes::is_empty", with = "raw")]
    pub data: Bytes,
    /// Server-side subscriptions, by channel. On the wire this is client.proto's
    /// `map<string, SubscribeResult> subs = 6`; it is modelled as its entries so that an entry
    /// whose value is all defaults still carries the value field (`12 00`), as Go's protobuf
    /// writes it. prost would leave the value out, and protobufjs then decodes it as `null`,
    /// which centrifuge-js cannot handle. In JSON it is an object keyed by channel.
    #[prost(message, repeated, tag = "6")]
    #[serde(skip_serializing_if = "Vec::is_empty", with = "subs_map")]
    pub subs: Vec<SubscribeResultEntry>,
    /// Server ping interval in seconds (the SDK expects a `{}` ping that often).
    #[prost(uint32, tag = "7")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub ping: u32,
    /// Whether the client must answer pings with an empty command.
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
    /// Connection features the server enabled (subset of the request's flag).
    #[prost(int64, tag = "12")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub flag: i64,
    #[prost(message, optional, tag = "13")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dict: Option<Dictionary>,
}

/// Connection token refresh result.
#[derive(Clone, PartialEq, Eq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct RefreshResult {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub client: String,
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub version: String,
    #[prost(bool, tag = "3")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub expires: bool,
    #[prost(uint32, tag = "4")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub ttl: u32,
}

/// Subscribe result.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct SubscribeResult {
    #[prost(bool, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub expires: bool,
    #[prost(uint32, tag = "2")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub ttl: u32,
    #[prost(bool, tag = "3")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub recoverable: bool,
    #[prost(string, tag = "6")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub epoch: String,
    /// Recovered publications. On delta subscriptions they must be in delta
    /// wire form too (first one full, see [`crate::delta_full_data`]).
    #[prost(message, repeated, tag = "7")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub publications: Vec<Publication>,
    #[prost(bool, tag = "8")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub recovered: bool,
    #[prost(uint64, tag = "9")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub offset: u64,
    #[prost(bool, tag = "10")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub positioned: bool,
    #[prost(bytes = "bytes", tag = "11")]
    #[serde(skip_serializing_if = "Bytes::is_empty", with = "raw")]
    pub data: Bytes,
    #[prost(bool, tag = "12")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub was_recovering: bool,
    /// Delta compression negotiated; from now on every publication's `data`
    /// is in delta wire form.
    #[prost(bool, tag = "13")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub delta: bool,
    /// Numeric channel id for channel compaction (pushes then carry
    /// [`crate::Push::id`] instead of the channel name).
    #[prost(int64, tag = "14")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub id: i64,
    /// client.proto `type`; echoes the request's type.
    #[prost(int32, tag = "15")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub r#type: i32,
    #[prost(int32, tag = "16")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub phase: i32,
    #[prost(string, tag = "17")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub cursor: String,
    #[prost(message, repeated, tag = "18")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub state: Vec<Publication>,
    /// Publish debounce advice in milliseconds.
    #[prost(uint32, tag = "19")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub publish_debounce: u32,
}

/// Subscription refresh / track result.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct SubRefreshResult {
    #[prost(bool, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub expires: bool,
    #[prost(uint32, tag = "2")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub ttl: u32,
    #[prost(message, repeated, tag = "3")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub items: Vec<Publication>,
}

/// Unsubscribe result (empty).
#[derive(Clone, PartialEq, Eq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct UnsubscribeResult {}

/// Publish result (empty).
#[derive(Clone, PartialEq, Eq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct PublishResult {}

/// Presence result: connected clients by client id. Its fields, like those of the presence
/// stats and history results and of `ClientInfo`'s user and client, are always written in JSON,
/// zero or empty included, as Centrifugo's encoder writes them: the SDKs read them directly
/// (centrifuge-js takes `num_clients` as is; absent, it is `undefined`, not 0).
#[derive(Clone, PartialEq, Eq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct PresenceResult {
    #[prost(map = "string, message", tag = "1")]
    #[serde(deserialize_with = "nullable")]
    pub presence: HashMap<String, ClientInfo>,
}

/// Presence stats result.
#[derive(Clone, PartialEq, Eq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct PresenceStatsResult {
    #[prost(uint32, tag = "1")]
    #[serde(deserialize_with = "nullable")]
    pub num_clients: u32,
    #[prost(uint32, tag = "2")]
    #[serde(deserialize_with = "nullable")]
    pub num_users: u32,
}

/// History result.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct HistoryResult {
    #[prost(message, repeated, tag = "1")]
    #[serde(deserialize_with = "nullable")]
    pub publications: Vec<Publication>,
    #[prost(string, tag = "2")]
    #[serde(deserialize_with = "nullable")]
    pub epoch: String,
    #[prost(uint64, tag = "3")]
    #[serde(deserialize_with = "nullable")]
    pub offset: u64,
}

/// Ping result (empty).
#[derive(Clone, PartialEq, Eq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct PingResult {}

/// RPC result (client.proto `RPCResult`).
#[derive(Clone, PartialEq, Eq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct RpcResult {
    #[prost(bytes = "bytes", tag = "1")]
    #[serde(skip_serializing_if = "Bytes::is_empty", with = "raw")]
    pub data: Bytes,
}
