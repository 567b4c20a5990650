//! Protobuf wire tests against hand-computed bytes (field numbers and wire
//! types of client.proto) and encode/decode round trips.

use std::collections::HashMap;

use bytes::Bytes;
use herald_protocol::{
    ClientInfo, Command, ConnectRequest, ConnectResult, FilterNode, HistoryRequest, Protocol, Publication, Push, Reply,
    StreamPosition, SubscribeRequest, SubscribeResult, codes, decode_commands, encode_reply_bytes,
};
use prost::Message as _;

#[test]
fn ping_is_single_zero_byte() {
    // centrifuge-js: Reply.decodeDelimited of length 0 -> reply without push
    // -> _handleServerPing -> sends {} which encodeDelimited makes 0x00 too.
    assert_eq!(&encode_reply_bytes(Protocol::Protobuf, &Reply::ping())[..], &[0x00]);
    let cmds = decode_commands(Protocol::Protobuf, &[0x00]).expect("decode");
    assert_eq!(cmds.len(), 1);
    assert!(cmds[0].is_empty());
}

#[test]
fn connect_reply_known_bytes() {
    let reply = Reply {
        id: 1,
        connect: Some(ConnectResult {
            client: "c".into(),
            version: "v".into(),
            ping: 25,
            pong: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    #[rustfmt::skip]
    let expected = [
        0x0E,                   // length 14
        0x08, 0x01,             // 1: id = 1
        0x2A, 0x0A,             // 5: connect, len 10
        0x0A, 0x01, b'c',       //   1: client
        0x12, 0x01, b'v',       //   2: version
        0x38, 0x19,             //   7: ping = 25
        0x40, 0x01,             //   8: pong = true
    ];
    assert_eq!(&encode_reply_bytes(Protocol::Protobuf, &reply)[..], &expected);
}

#[test]
fn publication_push_known_bytes() {
    let reply = Reply::from_push(Push {
        channel: "ch".into(),
        publication: Some(Publication {
            data: Bytes::from_static(&[0x01, 0x02]),
            offset: 3,
            score: -1,
            ..Default::default()
        }),
        ..Default::default()
    });
    #[rustfmt::skip]
    let expected = [
        0x10,                         // length 16
        0x22, 0x0E,                   // 4: push, len 14
        0x12, 0x02, b'c', b'h',       //   2: channel
        0x22, 0x08,                   //   4: pub, len 8
        0x22, 0x02, 0x01, 0x02,       //     4: data
        0x30, 0x03,                   //     6: offset = 3
        0x68, 0x01,                   //     13: score = -1 (sint64 zigzag)
    ];
    assert_eq!(&encode_reply_bytes(Protocol::Protobuf, &reply)[..], &expected);
}

#[test]
fn subscribe_command_known_bytes() {
    #[rustfmt::skip]
    let frame = [
        0x0F,                               // length 15
        0x08, 0x02,                         // 1: id = 2
        0x2A, 0x0B,                         // 5: subscribe, len 11
        0x0A, 0x04, b'n', b'e', b'w', b's', //   1: channel
        0x18, 0x01,                         //   3: recover = true
        0x38, 0xAC, 0x02,                   //   7: offset = 300
    ];
    let cmds = decode_commands(Protocol::Protobuf, &frame).expect("decode");
    let expected = Command {
        id: 2,
        subscribe: Some(SubscribeRequest { channel: "news".into(), recover: true, offset: 300, ..Default::default() }),
        ..Default::default()
    };
    assert_eq!(cmds, vec![expected.clone()]);
    assert_eq!(expected.encode_length_delimited_to_vec(), frame);
}

#[test]
fn empty_result_is_encoded_as_present() {
    let reply = Reply { id: 9, publish: Some(Default::default()), ..Default::default() };
    // 1: id = 9, 8: publish len 0
    assert_eq!(&encode_reply_bytes(Protocol::Protobuf, &reply)[..], &[0x04, 0x08, 0x09, 0x42, 0x00]);
}

#[test]
fn round_trips() {
    let mut subs = HashMap::new();
    subs.insert("a".to_string(), SubscribeRequest { channel: "a".into(), recover: true, ..Default::default() });
    let mut headers = HashMap::new();
    headers.insert("x-h".to_string(), "1".to_string());
    let command = Command {
        id: 77,
        connect: Some(ConnectRequest {
            token: "tok".into(),
            data: Bytes::from_static(&[0, 159, 146, 150]),
            subs,
            name: "python".into(),
            version: "0.4".into(),
            headers,
            flag: 1,
            ..Default::default()
        }),
        history: Some(HistoryRequest {
            channel: "h".into(),
            limit: -1,
            since: Some(StreamPosition { offset: u64::MAX, epoch: "e".into() }),
            reverse: true,
        }),
        subscribe: Some(SubscribeRequest {
            channel: "c".into(),
            tf: Some(FilterNode {
                op: "not".into(),
                nodes: vec![FilterNode { key: "k".into(), cmp: "eq".into(), val: "v".into(), ..Default::default() }],
                ..Default::default()
            }),
            r#type: 2,
            ..Default::default()
        }),
        ..Default::default()
    };
    let bytes = command.encode_length_delimited_to_vec();
    assert_eq!(decode_commands(Protocol::Protobuf, &bytes).expect("decode"), vec![command]);

    let mut presence = HashMap::new();
    presence.insert(
        "c1".to_string(),
        ClientInfo {
            user: "u".into(),
            client: "c1".into(),
            conn_info: Bytes::from_static(b"\xff"),
            ..Default::default()
        },
    );
    let reply = Reply {
        id: 3,
        error: Some(codes::ERROR_UNRECOVERABLE_POSITION.into()),
        subscribe: Some(SubscribeResult {
            publications: vec![Publication { data: Bytes::from_static(b"x"), delta: true, ..Default::default() }],
            id: -5,
            ..Default::default()
        }),
        presence: Some(herald_protocol::PresenceResult { presence }),
        ..Default::default()
    };
    let encoded = encode_reply_bytes(Protocol::Protobuf, &reply);
    let decoded = Reply::decode_length_delimited(&encoded[..]).expect("decode");
    assert_eq!(decoded, reply);
}

#[test]
fn unknown_fields_are_skipped() {
    // Command { id: 1, <field 99 varint 5>, ping: {} }
    let body = [0x08, 0x01, 0x98, 0x06, 0x05, 0x5A, 0x00];
    let mut frame = vec![body.len() as u8];
    frame.extend_from_slice(&body);
    let cmds = decode_commands(Protocol::Protobuf, &frame).expect("decode");
    assert_eq!(cmds[0].id, 1);
    assert!(cmds[0].ping.is_some());
}
