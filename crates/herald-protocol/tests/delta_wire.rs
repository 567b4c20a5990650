//! Delta publication data in the forms the SDKs decode: a JSON string on JSON
//! connections (`applyDelta(prev, TextEncoder.encode(pub.data))`), raw bytes
//! on Protobuf connections (`applyDelta(prev, pub.data)`).

use bytes::Bytes;
use herald_protocol::{
    DeltaPayload, Protocol, Publication, Push, Reply, delta_data, delta_full_data, delta_publication_data,
    encode_reply_bytes, fossil,
};
use prost::Message as _;

const PREV: &str = r#"{"name":"Zoë","status":"online","bio":"Ünïcödé text repeated: Ünïcödé text repeated","n":1}"#;
const CURR: &str = r#"{"name":"Zoé","status":"online","bio":"Ünïcödé text repeated: Ünïcödé text repeated","n":2}"#;

fn push_with(data: Bytes, delta: bool) -> Reply {
    Reply::from_push(Push {
        channel: "ch".into(),
        publication: Some(Publication { data, delta, offset: 2, ..Default::default() }),
        ..Default::default()
    })
}

/// What centrifuge-js's JsonCodec does with a received line.
fn js_json_decode(line: &[u8], prev: &[u8]) -> Vec<u8> {
    let reply: serde_json::Value = serde_json::from_slice(line).expect("JSON.parse");
    let publication = &reply["push"]["pub"];
    let data = publication["data"].as_str().expect("data is a JSON string");
    if publication["delta"].as_bool().unwrap_or(false) {
        fossil::apply(prev, data.as_bytes()).expect("applyDelta")
    } else {
        data.as_bytes().to_vec()
    }
}

#[test]
fn json_delta_is_a_json_string() {
    let data = delta_data(Protocol::Json, PREV.as_bytes(), CURR.as_bytes());
    assert_eq!(data[0], b'"');
    let line = encode_reply_bytes(Protocol::Json, &push_with(data, true));
    assert!(line.starts_with(br#"{"push":{"channel":"ch","pub":{"data":""#), "{}", String::from_utf8_lossy(&line));
    assert!(line.ends_with(br#"","offset":2,"delta":true}}}"#));
    let decoded = js_json_decode(&line, PREV.as_bytes());
    assert_eq!(decoded, CURR.as_bytes());
    // The result is the JSON payload the app receives after JSON.parse.
    let value: serde_json::Value = serde_json::from_slice(&decoded).expect("payload");
    assert_eq!(value["n"], 2);
}

#[test]
fn json_full_data_is_a_json_string() {
    let data = delta_full_data(Protocol::Json, br#"{"a":"x\"y"}"#);
    assert_eq!(&data[..], br#""{\"a\":\"x\\\"y\"}""#);
    let line = encode_reply_bytes(Protocol::Json, &push_with(data, false));
    assert_eq!(js_json_decode(&line, b""), br#"{"a":"x\"y"}"#);
}

#[test]
fn protobuf_delta_is_raw_bytes() {
    let prev = b"\x00\x01binary payload that is long enough to have a copy\xff\xfe".to_vec();
    let mut curr = prev.clone();
    curr[1] = 9;
    let data = delta_data(Protocol::Protobuf, &prev, &curr);
    assert_eq!(&data[..], &fossil::delta(&prev, &curr)[..]);
    let encoded = encode_reply_bytes(Protocol::Protobuf, &push_with(data, true));
    let reply = Reply::decode_length_delimited(&encoded[..]).expect("decode");
    let publication = reply.push.and_then(|p| p.publication).expect("pub");
    assert!(publication.delta);
    assert_eq!(fossil::apply(&prev, &publication.data).expect("apply"), curr);
    assert_eq!(&delta_full_data(Protocol::Protobuf, &curr)[..], &curr[..]);
}

#[test]
fn delta_choice_follows_go_server() {
    for protocol in [Protocol::Json, Protocol::Protobuf] {
        // No previous payload: full data, delta false.
        let first = delta_publication_data(protocol, None, CURR.as_bytes());
        assert_eq!(first, DeltaPayload { data: delta_full_data(protocol, CURR.as_bytes()), delta: false });
        // Similar payloads: a delta.
        let next = delta_publication_data(protocol, Some(PREV.as_bytes()), CURR.as_bytes());
        assert!(next.delta);
        assert_eq!(next.data, delta_data(protocol, PREV.as_bytes(), CURR.as_bytes()));
        // Unrelated payloads: the patch is not smaller, so full data.
        let other = delta_publication_data(protocol, Some(b"{\"completely\":\"different\"}"), b"[1,2,3]");
        assert_eq!(other, DeltaPayload { data: delta_full_data(protocol, b"[1,2,3]"), delta: false });
    }
}
