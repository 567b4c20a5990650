//! Frame codecs: decoding commands from a WebSocket frame, encoding replies
//! into frames, and the delta wire forms of publication data.
//!
//! Framing (centrifuge-js `json.ts` / `protobuf.codec.ts`, centrifuge-python
//! `codecs.py`):
//!
//! * **JSON** — a frame is one or more JSON objects separated by `\n` (the
//!   SDKs split on `\n` after trimming). Replies are text frames.
//! * **Protobuf** — a frame is a concatenation of varint-length-delimited
//!   messages (`encodeDelimited`/`decodeDelimited`). Replies are binary
//!   frames. An empty `Reply`/`Command` is the single byte `0x00`; that is
//!   the Protobuf form of the server ping and the client pong.

use bytes::Bytes;
use prost::Message as _;
use thiserror::Error;

use crate::fossil;
use crate::json::write_json_string;
use crate::messages::{Command, Reply};

/// Wire protocol of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Text frames, `\n`-separated JSON objects; the default.
    Json,
    /// Binary frames of length-delimited Protobuf messages; selected with the
    /// WebSocket subprotocol [`Protocol::PROTOBUF_SUBPROTOCOL`].
    Protobuf,
}

impl Protocol {
    /// WebSocket subprotocol the SDKs request for the Protobuf protocol.
    pub const PROTOBUF_SUBPROTOCOL: &'static str = "centrifuge-protobuf";

    /// Whether frames of this protocol are sent as binary WebSocket messages
    /// (`true` for Protobuf) rather than text (JSON).
    pub const fn is_binary(self) -> bool {
        matches!(self, Protocol::Protobuf)
    }

    /// Protocol name as used in `?format=` style parameters: `json` or
    /// `protobuf`.
    pub const fn name(self) -> &'static str {
        match self {
            Protocol::Json => "json",
            Protocol::Protobuf => "protobuf",
        }
    }

    /// Parses [`Protocol::name`] output (case-sensitive).
    pub fn from_name(name: &str) -> Option<Protocol> {
        match name {
            "json" => Some(Protocol::Json),
            "protobuf" => Some(Protocol::Protobuf),
            _ => None,
        }
    }
}

/// A frame could not be decoded into commands.
#[derive(Debug, Error)]
pub enum DecodeError {
    /// A JSON line is not a valid command object.
    #[error("malformed JSON command #{index}: {source}")]
    Json {
        /// Zero-based position of the command in the frame.
        index: usize,
        #[source]
        source: serde_json::Error,
    },
    /// A Protobuf message or its length prefix is malformed or truncated.
    #[error("malformed protobuf command #{index}: {source}")]
    Protobuf {
        /// Zero-based position of the command in the frame.
        index: usize,
        #[source]
        source: prost::DecodeError,
    },
}

/// Decodes every command in one WebSocket frame.
///
/// JSON: objects separated by `\n`; `\r\n` separators, a trailing newline and
/// blank lines are tolerated. Protobuf: varint length-delimited messages. An
/// empty frame yields an empty vector (the caller decides whether that is an
/// error); the pong `{}` / `0x00` yields one empty [`Command`].
pub fn decode_commands(protocol: Protocol, frame: &[u8]) -> Result<Vec<Command>, DecodeError> {
    match protocol {
        Protocol::Json => {
            let mut commands = Vec::new();
            for line in frame.split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let command = serde_json::from_slice::<Command>(line)
                    .map_err(|source| DecodeError::Json { index: commands.len(), source })?;
                commands.push(command);
            }
            Ok(commands)
        }
        Protocol::Protobuf => {
            let mut commands = Vec::new();
            let mut buf = frame;
            while !buf.is_empty() {
                // Advances `buf` past the length prefix and the message; fails
                // on a truncated varint or a length past the end of the frame.
                let command = Command::decode_length_delimited(&mut buf)
                    .map_err(|source| DecodeError::Protobuf { index: commands.len(), source })?;
                commands.push(command);
            }
            Ok(commands)
        }
    }
}

/// Appends one reply (answer or push) in its in-frame wire form: JSON = the
/// object bytes without separator; Protobuf = varint length prefix + message.
/// Combine several with [`append_to_frame`].
pub fn encode_reply(protocol: Protocol, reply: &Reply, out: &mut Vec<u8>) {
    match protocol {
        Protocol::Json => {
            let start = out.len();
            out.reserve(json_size_hint(reply));
            if serde_json::to_writer(&mut *out, reply).is_err() {
                // Unreachable in practice: writing into a Vec cannot fail and
                // the serializers in this crate never return errors (invalid
                // raw JSON is written as null). Never leave half an object.
                debug_assert!(false, "JSON serialization of Reply failed");
                out.truncate(start);
                out.extend_from_slice(b"{}");
            }
        }
        Protocol::Protobuf => {
            let len = reply.encoded_len();
            out.reserve(len + prost::length_delimiter_len(len));
            // A Vec grows on demand, so encoding cannot run out of capacity.
            if reply.encode_length_delimited(out).is_err() {
                debug_assert!(false, "Protobuf encoding into Vec failed");
            }
        }
    }
}

/// Encodes one reply into a fresh buffer (see [`encode_reply`]).
pub fn encode_reply_bytes(protocol: Protocol, reply: &Reply) -> Bytes {
    let mut out = Vec::new();
    encode_reply(protocol, reply, &mut out);
    Bytes::from(out)
}

/// Adds one reply produced by [`encode_reply`] to a frame payload: JSON joins
/// with `\n`, Protobuf concatenates (the length prefix is already there).
pub fn append_to_frame(protocol: Protocol, frame: &mut Vec<u8>, encoded: &[u8]) {
    if protocol == Protocol::Json && !frame.is_empty() {
        frame.push(b'\n');
    }
    frame.extend_from_slice(encoded);
}

/// Capacity estimate for the JSON form: envelope overhead plus the payload of
/// a publication push, which dominates the hot path.
fn json_size_hint(reply: &Reply) -> usize {
    let payload = reply
        .push
        .as_ref()
        .and_then(|p| p.publication.as_ref())
        .map_or(0, |p| p.data.len() + p.info.as_ref().map_or(0, |i| i.conn_info.len() + i.chan_info.len() + 64));
    128 + payload
}

/// The `data` of a `delta: true` [`crate::Publication`] for a subscription
/// that negotiated fossil delta, given the previous and current payloads.
///
/// * Protobuf: the raw fossil delta bytes (SDKs call `applyDelta(prev, data)`).
/// * JSON: the delta as a JSON string literal (quotes included), because the
///   SDKs do `applyDelta(prev, TextEncoder.encode(pub.data))`. The delta is
///   made with [`fossil::delta_utf8`] so it survives that UTF-8 round trip.
///
/// Always returns a delta, even when it is larger than `current`; use
/// [`delta_publication_data`] for the reference server's choice between delta
/// and full payload.
pub fn delta_data(protocol: Protocol, prev: &[u8], current: &[u8]) -> Bytes {
    match protocol {
        Protocol::Protobuf => Bytes::from(fossil::delta(prev, current)),
        Protocol::Json => {
            let patch = fossil::delta_utf8(prev, current);
            let mut out = Vec::with_capacity(patch.len() + 16);
            write_json_string(&patch, &mut out);
            Bytes::from(out)
        }
    }
}

/// The `data` of a `delta: false` publication sent to a delta-negotiated
/// subscription: the first publication after subscribe, recovered
/// publications that start a chain, and any publication not sent as a delta.
///
/// * Protobuf: `current` unchanged.
/// * JSON: `current` as a JSON *string* literal. Once delta is negotiated,
///   centrifuge-js and centrifuge-python `JSON.parse(pub.data)` /
///   `json.loads(pub.data)` even non-delta publications, so the payload must
///   be wrapped in a string (the Go server does the same with `json.Escape`).
pub fn delta_full_data(protocol: Protocol, current: &[u8]) -> Bytes {
    match protocol {
        Protocol::Protobuf => Bytes::copy_from_slice(current),
        Protocol::Json => {
            let mut out = Vec::with_capacity(current.len() + 16);
            write_json_string(current, &mut out);
            Bytes::from(out)
        }
    }
}

/// Publication `data` and `delta` flag for a delta-negotiated subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeltaPayload {
    /// Value for [`crate::Publication::data`].
    pub data: Bytes,
    /// Value for [`crate::Publication::delta`].
    pub delta: bool,
}

/// Chooses between a delta and the full payload like the Go reference server
/// (`centrifuge` `getDeltaPub`): no previous payload → full; otherwise the
/// delta, unless the raw patch is not smaller than the payload, in which case
/// the full payload with `delta: false`. Data is in the protocol's wire form
/// (see [`delta_data`], [`delta_full_data`]).
pub fn delta_publication_data(protocol: Protocol, prev: Option<&[u8]>, current: &[u8]) -> DeltaPayload {
    let Some(prev) = prev else {
        return DeltaPayload { data: delta_full_data(protocol, current), delta: false };
    };
    let patch = match protocol {
        Protocol::Protobuf => fossil::delta(prev, current),
        Protocol::Json => fossil::delta_utf8(prev, current),
    };
    if patch.len() >= current.len() {
        return DeltaPayload { data: delta_full_data(protocol, current), delta: false };
    }
    let data = match protocol {
        Protocol::Protobuf => Bytes::from(patch),
        Protocol::Json => {
            let mut out = Vec::with_capacity(patch.len() + 16);
            write_json_string(&patch, &mut out);
            Bytes::from(out)
        }
    };
    DeltaPayload { data, delta: true }
}
