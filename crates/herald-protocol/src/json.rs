//! JSON-side helpers shared by the message definitions: raw-JSON `bytes` fields,
//! Go-style `omitempty` predicates, null tolerance and JSON string escaping.
//!
//! # How `bytes` fields travel in JSON
//!
//! The Centrifugo JSON protocol does not base64 `bytes` fields (`data`, `info`,
//! `conn_info`, `chan_info`, ...). It embeds them verbatim as a JSON value: a
//! publication whose payload is `{"a":1}` is sent as `"data":{"a":1}`. The Go
//! reference (`centrifugal/protocol` `raw.go`) does the same with its `Raw`
//! type. The private `raw` serde module reproduces that contract:
//!
//! * **serialize** — the bytes are written as-is after a validation pass (they
//!   must be one complete JSON value). Raw `\n` bytes are stripped, as Go does,
//!   because `\n` separates messages inside a frame; in valid JSON a raw newline
//!   can only be insignificant whitespace, so stripping it never changes the
//!   value. Bytes that are not valid JSON are written as `null` so that one bad
//!   payload can never corrupt the whole frame (the server should reject such
//!   payloads on ingress, see [`crate::is_valid_json`]).
//! * **deserialize** — any JSON value is accepted and its exact source text is
//!   kept. `null` becomes empty bytes, matching Go, which skips `null` values.

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// `skip_serializing_if` predicate implementing Go's `omitempty` for scalars,
/// strings, maps and vectors: the field is omitted when it equals its default.
#[inline]
pub(crate) fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// `deserialize_with` helper that maps an explicit JSON `null` to the field's
/// default, like the Go decoder (easyjson) which skips `null` values.
pub(crate) fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Returns the payload as a validated raw JSON value, or `None` when it is not
/// exactly one well-formed JSON value (surrounding whitespace is allowed and
/// trimmed).
fn as_raw_value(bytes: &[u8]) -> Option<&RawValue> {
    let text = std::str::from_utf8(bytes).ok()?;
    // Borrowed deserialization validates without allocating or copying.
    serde_json::from_str::<&RawValue>(text).ok()
}

/// Whether `bytes` is exactly one well-formed JSON value (surrounding
/// whitespace allowed). Payloads destined for JSON connections must pass this;
/// the server should check it on ingress (publish API, client publish over
/// Protobuf) and reject the request instead of relying on the encoder's `null`
/// fallback.
pub fn is_valid_json(bytes: &[u8]) -> bool {
    as_raw_value(bytes).is_some()
}

/// Serde `with` module for `bytes` fields: raw JSON in, raw JSON out.
pub(crate) mod raw {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(bytes: &Bytes, serializer: S) -> Result<S::Ok, S::Error> {
        let Some(raw) = as_raw_value(bytes) else {
            // Not JSON: never emit bytes that would break the frame.
            return serializer.serialize_unit();
        };
        if !raw.get().as_bytes().contains(&b'\n') {
            return raw.serialize(serializer);
        }
        // Rare path: pretty-printed payload. Newlines are whitespace between
        // tokens (inside strings they are always escaped), so dropping them
        // keeps the value identical while keeping the frame line-delimited.
        let stripped: String = raw.get().chars().filter(|&c| c != '\n').collect();
        match RawValue::from_string(stripped) {
            Ok(owned) => owned.serialize(serializer),
            Err(_) => serializer.serialize_unit(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
        let raw: Box<RawValue> = Deserialize::deserialize(deserializer)?;
        if raw.get() == "null" {
            return Ok(Bytes::new());
        }
        // Box<RawValue> -> Box<str> -> Box<[u8]> -> Bytes reuses the allocation.
        let text: Box<str> = raw.into();
        Ok(Bytes::from(text.into_boxed_bytes()))
    }
}

/// Appends `bytes` to `out` as a quoted JSON string literal.
///
/// Used for fossil-delta subscriptions on JSON connections, where the SDKs
/// expect `data` to be a JSON *string* whose UTF-8 encoding is the payload (or
/// the delta). Invalid UTF-8 is replaced with U+FFFD: such a payload could not
/// be delivered to a JSON client intact anyway.
pub(crate) fn write_json_string(bytes: &[u8], out: &mut Vec<u8>) {
    let text = String::from_utf8_lossy(bytes);
    out.reserve(text.len() + 2);
    // serde_json's string escaper: quotes, backslashes and control characters.
    if serde_json::to_writer(&mut *out, text.as_ref()).is_err() {
        // Writing a &str into a Vec cannot fail; keep the output well-formed
        // regardless.
        out.extend_from_slice(b"\"\"");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Holder {
        #[serde(default, with = "raw", skip_serializing_if = "Bytes::is_empty")]
        data: Bytes,
    }

    fn ser(data: &[u8]) -> String {
        serde_json::to_string(&Holder { data: Bytes::copy_from_slice(data) }).expect("serialize")
    }

    #[test]
    fn raw_is_embedded_verbatim() {
        assert_eq!(ser(br#"{"a":1}"#), r#"{"data":{"a":1}}"#);
        assert_eq!(ser(br#""text""#), r#"{"data":"text"}"#);
        assert_eq!(ser(b"42"), r#"{"data":42}"#);
        assert_eq!(ser(b"  [1, 2] \n"), r#"{"data":[1, 2]}"#);
        assert_eq!(ser(b""), "{}");
    }

    #[test]
    fn raw_newlines_are_stripped() {
        assert_eq!(ser(b"{\n  \"a\": \"x\\ny\"\n}"), r#"{"data":{  "a": "x\ny"}}"#);
    }

    #[test]
    fn invalid_raw_becomes_null() {
        assert_eq!(ser(b"{"), r#"{"data":null}"#);
        assert_eq!(ser(b"\xff\xfe"), r#"{"data":null}"#);
        assert_eq!(ser(b"1 2"), r#"{"data":null}"#);
    }

    #[test]
    fn raw_deserialize_keeps_source_text() {
        let h: Holder = serde_json::from_str(r#"{"data": {"b" : [1, 2.50]} }"#).expect("decode");
        assert_eq!(&h.data[..], br#"{"b" : [1, 2.50]}"#);
        let h: Holder = serde_json::from_str(r#"{"data":null}"#).expect("decode");
        assert!(h.data.is_empty());
    }

    #[test]
    fn json_string_escaping() {
        let mut out = Vec::new();
        write_json_string(b"a\"b\\c\nd\x01\xc3\xa9", &mut out);
        assert_eq!(out, "\"a\\\"b\\\\c\\nd\\u0001\u{e9}\"".as_bytes());
    }

    #[test]
    fn validity() {
        assert!(is_valid_json(b"{}"));
        assert!(is_valid_json(b" null "));
        assert!(!is_valid_json(b""));
        assert!(!is_valid_json(b"{}{}"));
    }
}
