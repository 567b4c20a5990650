//! Frame-level tests: several commands/replies per frame in both codecs and
//! malformed input.

use bytes::Bytes;
use herald_protocol::{
    Command, DecodeError, Protocol, Publication, Push, Reply, SendRequest, append_to_frame, decode_commands,
    encode_reply, encode_reply_bytes,
};
use prost::Message as _;

fn pub_push(offset: u64) -> Reply {
    Reply::from_push(Push {
        channel: "ch".into(),
        publication: Some(Publication { data: Bytes::from_static(br#"{"n":1}"#), offset, ..Default::default() }),
        ..Default::default()
    })
}

#[test]
fn json_multi_command_frames() {
    let frame = b"{\"id\":1,\"presence\":{\"channel\":\"a\"}}\n{}\n{\"send\":{\"data\":{\"x\":true}}}";
    let cmds = decode_commands(Protocol::Json, frame).expect("decode");
    assert_eq!(cmds.len(), 3);
    assert_eq!(cmds[0].id, 1);
    assert!(cmds[1].is_empty());
    assert_eq!(cmds[2].send, Some(SendRequest { data: Bytes::from_static(br#"{"x":true}"#) }));

    // \r\n separators, trailing newline and blank lines are tolerated.
    let crlf = b"{\"id\":1,\"ping\":{}}\r\n\r\n{\"id\":2,\"ping\":{}}\r\n";
    let cmds = decode_commands(Protocol::Json, crlf).expect("decode");
    assert_eq!(cmds.iter().map(|c| c.id).collect::<Vec<_>>(), vec![1, 2]);

    assert!(decode_commands(Protocol::Json, b"").expect("empty").is_empty());
    assert!(decode_commands(Protocol::Json, b"\n").expect("newline").is_empty());
}

#[test]
fn protobuf_multi_command_frames() {
    let a = Command { id: 1, ping: Some(Default::default()), ..Default::default() };
    let b = Command::default();
    let c = Command { send: Some(SendRequest { data: Bytes::from(vec![7u8; 300]) }), ..Default::default() };
    let mut frame = Vec::new();
    for cmd in [&a, &b, &c] {
        cmd.encode_length_delimited(&mut frame).expect("encode");
    }
    assert_eq!(decode_commands(Protocol::Protobuf, &frame).expect("decode"), vec![a, b, c]);
    assert!(decode_commands(Protocol::Protobuf, b"").expect("empty").is_empty());
}

#[test]
fn json_reply_frames_join_with_newline() {
    let mut frame = Vec::new();
    for reply in [pub_push(1), Reply::ping(), pub_push(2)] {
        let mut encoded = Vec::new();
        encode_reply(Protocol::Json, &reply, &mut encoded);
        append_to_frame(Protocol::Json, &mut frame, &encoded);
    }
    let text = String::from_utf8(frame).expect("utf-8");
    assert_eq!(
        text,
        "{\"push\":{\"channel\":\"ch\",\"pub\":{\"data\":{\"n\":1},\"offset\":1}}}\n{}\n{\"push\":{\"channel\":\"ch\",\"pub\":{\"data\":{\"n\":1},\"offset\":2}}}"
    );
    // Decoded the way centrifuge-js does: trim, split on \n, JSON.parse each.
    let replies: Vec<Reply> =
        text.trim().split('\n').map(|l| serde_json::from_str(l).expect("reply")).collect::<Vec<_>>();
    assert_eq!(replies, vec![pub_push(1), Reply::ping(), pub_push(2)]);
}

#[test]
fn protobuf_reply_frames_concatenate() {
    let replies = [pub_push(1), Reply::ping(), pub_push(300)];
    let mut frame = Vec::new();
    for reply in &replies {
        append_to_frame(Protocol::Protobuf, &mut frame, &encode_reply_bytes(Protocol::Protobuf, reply));
    }
    // Decoded the way centrifuge-js does: decodeDelimited until exhausted.
    let mut buf = &frame[..];
    let mut decoded = Vec::new();
    while !buf.is_empty() {
        decoded.push(Reply::decode_length_delimited(&mut buf).expect("reply"));
    }
    assert_eq!(decoded, replies);
}

#[test]
fn encode_reply_appends() {
    let mut out = b"prefix".to_vec();
    encode_reply(Protocol::Json, &Reply::ping(), &mut out);
    assert_eq!(out, b"prefix{}");
    let mut out = vec![0xAA];
    encode_reply(Protocol::Protobuf, &Reply::ping(), &mut out);
    assert_eq!(out, vec![0xAA, 0x00]);
}

#[test]
fn malformed_json() {
    for (frame, index) in [
        (&b"{\"id\":1"[..], 0),
        (b"{\"id\":1}\n{bad", 1),
        (b"[1,2]", 0),
        (b"{\"id\":\"x\"}", 0),
        (b"{\"id\":-1}", 0),
        (b"{\"id\":1} trailing", 0),
        (b"{}\n{}\n\xff", 2),
        (b"{\"publish\":{\"data\":}}", 0),
    ] {
        match decode_commands(Protocol::Json, frame) {
            Err(DecodeError::Json { index: i, .. }) => assert_eq!(i, index, "{frame:?}"),
            other => panic!("expected JSON error for {frame:?}, got {other:?}"),
        }
    }
}

#[test]
fn malformed_protobuf() {
    for (frame, index) in [
        (&[0x80u8][..], 0),                             // truncated length varint
        (&[0x05, 0x08][..], 0),                         // length past end of frame
        (&[0x00, 0x02, 0x08, 0x80][..], 1),             // truncated field varint
        (&[0x02, 0x0A, 0x05][..], 0),                   // nested length past end
        (&[0x04, 0x2A, 0x02, 0x0A, 0xFF][..], 0),       // nested message truncated
        (&[0x05, 0x2A, 0x03, 0x0A, 0x01, 0xFF][..], 0), // invalid UTF-8 channel
        (&[0x01, 0x07][..], 0),                         // invalid wire type 7
    ] {
        match decode_commands(Protocol::Protobuf, frame) {
            Err(DecodeError::Protobuf { index: i, .. }) => assert_eq!(i, index, "{frame:?}"),
            other => panic!("expected protobuf error for {frame:?}, got {other:?}"),
        }
    }
}

#[test]
fn protocol_helpers() {
    assert_eq!(Protocol::PROTOBUF_SUBPROTOCOL, "centrifuge-protobuf");
    assert!(Protocol::Protobuf.is_binary() && !Protocol::Json.is_binary());
    assert_eq!(Protocol::from_name(Protocol::Json.name()), Some(Protocol::Json));
    assert_eq!(Protocol::from_name("protobuf"), Some(Protocol::Protobuf));
    assert_eq!(Protocol::from_name("xml"), None);
}
