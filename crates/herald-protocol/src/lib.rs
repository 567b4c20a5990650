//! Centrifugo client protocol v2 for Herald: message types, JSON and Protobuf
//! frame codecs, standard codes and fossil delta compression, wire-compatible
//! with the official SDKs (centrifuge-js, centrifuge-python).
//!
//! * [`messages`] — one struct per client.proto message, usable with both
//!   prost (Protobuf) and serde_json (JSON protocol). All types are
//!   re-exported at the crate root.
//! * [`decode_commands`], [`encode_reply`], [`encode_reply_bytes`],
//!   [`append_to_frame`] — frame-level codecs for a connection's [`Protocol`].
//! * [`delta_data`], [`delta_full_data`], [`delta_publication_data`] —
//!   publication `data` for subscriptions that negotiated `delta: "fossil"`.
//! * [`fossil`] — the delta algorithm itself; [`codes`] — error, unsubscribe
//!   and disconnect codes; [`filter`] — tags filters (`tf`) of subscriptions.
//!
//! Ping/pong: the server ping is an all-default [`Reply`] (`{}` in JSON, the
//! byte `0x00` in a Protobuf frame) and the client's pong is an all-default
//! [`Command`] ([`Command::is_empty`]).

mod codec;
pub mod codes;
pub mod filter;
pub mod fossil;
pub mod json;
pub mod messages;

pub use codec::{
    DecodeError, DeltaPayload, Protocol, append_to_frame, decode_commands, delta_data, delta_full_data,
    delta_publication_data, encode_reply, encode_reply_bytes,
};
pub use fossil::FossilError;
pub use json::is_valid_json;
pub use messages::*;
