//! Client protocol v2 messages: one set of structs that derive both
//! `prost::Message` (Protobuf wire format with client.proto's field numbers)
//! and serde (the JSON protocol).
//!
//! JSON conventions, matching the Go reference encoder (easyjson):
//!
//! * keys are the proto field names (snake_case), emitted in proto
//!   declaration order;
//! * default values (0, false, "", empty map/list/bytes, unset message) are
//!   omitted, like Go's `omitempty`, so an all-default message is `{}`;
//! * a present but empty message is kept (`"publish":{}`), which Protobuf
//!   mirrors by encoding a zero-length submessage;
//! * `bytes` fields are embedded as raw JSON, never base64 (see
//!   [`crate::json`]);
//! * explicit `null` decodes as the default value;
//! * unknown keys and unknown Protobuf fields are ignored.
//!
//! Rust names that differ from client.proto: `Push.pub` is
//! [`Push::publication`], fields called `type` are `r#type`, `RPCRequest` /
//! `RPCResult` are [`RpcRequest`] / [`RpcResult`]. Map fields are
//! `std::collections::HashMap`.

mod envelope;
mod push;
mod requests;
mod results;

pub use envelope::{Command, EmulationRequest, Error, Push, Reply};
pub use push::{
    ClientInfo, Connect, Dictionary, Disconnect, Join, Leave, Message, Publication, Refresh, Subscribe, Unsubscribe,
};
pub use requests::{
    ConnectRequest, FilterNode, HistoryRequest, KeyedItem, PingRequest, PresenceRequest, PresenceStatsRequest,
    PublishRequest, RefreshRequest, RpcRequest, SendRequest, StreamPosition, SubRefreshRequest, SubscribeRequest,
    TrackBatch, UnsubscribeRequest,
};
pub use results::{
    ConnectResult, HistoryResult, PingResult, PresenceResult, PresenceStatsResult, PublishResult, RefreshResult,
    RpcResult, SubRefreshResult, SubscribeResult, SubscribeResultEntry, UnsubscribeResult,
};
