//! JSON protocol wire tests: exact byte strings in the shape the Go reference
//! server (easyjson, proto field order, omitempty, raw `bytes`) produces and
//! the SDKs send.

use bytes::Bytes;
use herald_protocol::{
    ClientInfo, Command, ConnectResult, Disconnect, Error, HistoryResult, Join, Protocol, Publication, PublishResult,
    Push, Reply, StreamPosition, SubscribeResult, Unsubscribe, codes, decode_commands, encode_reply,
    encode_reply_bytes,
};

fn json(reply: &Reply) -> String {
    String::from_utf8(encode_reply_bytes(Protocol::Json, reply).to_vec()).expect("utf-8")
}

fn decode_one(line: &str) -> Command {
    let mut cmds = decode_commands(Protocol::Json, line.as_bytes()).expect("decode");
    assert_eq!(cmds.len(), 1, "{line}");
    cmds.remove(0)
}

#[test]
fn ping_is_empty_object() {
    assert_eq!(json(&Reply::ping()), "{}");
    let pong = decode_one("{}");
    assert!(pong.is_empty());
    assert_eq!(serde_json::to_string(&pong).expect("ser"), "{}");
}

#[test]
fn connect_reply() {
    let reply = Reply {
        id: 1,
        connect: Some(ConnectResult {
            client: "9b2a7c1e".into(),
            version: "0.1.0".into(),
            ping: 25,
            pong: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(json(&reply), r#"{"id":1,"connect":{"client":"9b2a7c1e","version":"0.1.0","ping":25,"pong":true}}"#);
}

#[test]
fn connect_reply_full_field_order() {
    let subs = vec![herald_protocol::SubscribeResultEntry::new(
        "news",
        SubscribeResult { recoverable: true, offset: 7, ..Default::default() },
    )];
    let reply = Reply {
        id: 1,
        connect: Some(ConnectResult {
            client: "c".into(),
            version: "v".into(),
            expires: true,
            ttl: 60,
            data: Bytes::from_static(br#"{"ok":true}"#),
            subs,
            ping: 25,
            pong: true,
            session: "s".into(),
            node: "n".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        json(&reply),
        r#"{"id":1,"connect":{"client":"c","version":"v","expires":true,"ttl":60,"data":{"ok":true},"subs":{"news":{"recoverable":true,"offset":7}},"ping":25,"pong":true,"session":"s","node":"n"}}"#
    );
}

#[test]
fn publication_push() {
    let reply = Reply::from_push(Push {
        channel: "ch".into(),
        publication: Some(Publication { data: Bytes::from_static(br#"{"a":1}"#), offset: 3, ..Default::default() }),
        ..Default::default()
    });
    let text = json(&reply);
    assert_eq!(text, r#"{"push":{"channel":"ch","pub":{"data":{"a":1},"offset":3}}}"#);
    let back: Reply = serde_json::from_str(&text).expect("decode");
    assert_eq!(back, reply);
}

#[test]
fn publication_with_info_tags_and_channel_id() {
    let mut tags = std::collections::HashMap::new();
    tags.insert("k".to_string(), "v".to_string());
    let reply = Reply::from_push(Push {
        id: 5,
        publication: Some(Publication {
            data: Bytes::from_static(b"\"hello\""),
            info: Some(ClientInfo {
                user: "42".into(),
                client: "c1".into(),
                conn_info: Bytes::from_static(br#"{"name":"A"}"#),
                chan_info: Bytes::new(),
            }),
            offset: 10,
            tags,
            time: 1_700_000_000_000,
            ..Default::default()
        }),
        ..Default::default()
    });
    assert_eq!(
        json(&reply),
        r#"{"push":{"id":5,"pub":{"data":"hello","info":{"user":"42","client":"c1","conn_info":{"name":"A"}},"offset":10,"tags":{"k":"v"},"time":1700000000000}}}"#
    );
}

#[test]
fn other_pushes() {
    let join = Reply::from_push(Push {
        channel: "ch".into(),
        join: Some(Join { info: Some(ClientInfo { user: "u".into(), client: "c".into(), ..Default::default() }) }),
        ..Default::default()
    });
    assert_eq!(json(&join), r#"{"push":{"channel":"ch","join":{"info":{"user":"u","client":"c"}}}}"#);

    let unsub = Reply::from_push(Push {
        channel: "ch".into(),
        unsubscribe: Some(codes::UNSUBSCRIBE_INSUFFICIENT_STATE.to_unsubscribe()),
        ..Default::default()
    });
    assert_eq!(json(&unsub), r#"{"push":{"channel":"ch","unsubscribe":{"code":2500,"reason":"insufficient state"}}}"#);

    let disc =
        Reply::from_push(Push { disconnect: Some(codes::DISCONNECT_SHUTDOWN.to_disconnect()), ..Default::default() });
    assert_eq!(json(&disc), r#"{"push":{"disconnect":{"code":3001,"reason":"shutdown"}}}"#);

    let reconnect = Disconnect { code: 3001, reason: "shutdown".into(), reconnect: true };
    assert_eq!(
        serde_json::to_string(&reconnect).expect("ser"),
        r#"{"code":3001,"reason":"shutdown","reconnect":true}"#
    );

    let message = Reply::from_push(Push {
        message: Some(herald_protocol::Message { data: Bytes::from_static(b"[1,2]") }),
        ..Default::default()
    });
    assert_eq!(json(&message), r#"{"push":{"message":{"data":[1,2]}}}"#);

    let unsub_default = Unsubscribe::default();
    assert_eq!(serde_json::to_string(&unsub_default).expect("ser"), "{}");
}

#[test]
fn error_replies() {
    assert_eq!(
        json(&Reply::from_error(3, codes::ERROR_TOKEN_EXPIRED.into())),
        r#"{"id":3,"error":{"code":109,"message":"token expired"}}"#
    );
    assert_eq!(
        json(&Reply::from_error(4, codes::ERROR_INTERNAL.into())),
        r#"{"id":4,"error":{"code":100,"message":"internal server error","temporary":true}}"#
    );
    let custom = Error { code: 4000, message: "custom".into(), temporary: false };
    assert_eq!(json(&Reply::from_error(5, custom)), r#"{"id":5,"error":{"code":4000,"message":"custom"}}"#);
}

#[test]
fn empty_results_are_kept() {
    let reply = Reply { id: 5, publish: Some(PublishResult {}), ..Default::default() };
    assert_eq!(json(&reply), r#"{"id":5,"publish":{}}"#);
    let reply = Reply { id: 6, ping: Some(Default::default()), ..Default::default() };
    assert_eq!(json(&reply), r#"{"id":6,"ping":{}}"#);
}

/// A server-side subscription whose result is all defaults still carries its (empty) value
/// in protobuf, as Go writes it: protobufjs would decode a missing value as `null`.
#[test]
fn empty_server_side_subscription_keeps_its_value_in_protobuf() {
    use prost::Message as _;
    let result = ConnectResult {
        subs: vec![herald_protocol::SubscribeResultEntry::new("ab", SubscribeResult::default())],
        ..Default::default()
    };
    let bytes = result.encode_to_vec();
    // field 6, length 6: key "ab" (0a 02 61 62) then value field 2 with length 0 (12 00).
    assert_eq!(bytes, vec![0x32, 0x06, 0x0a, 0x02, b'a', b'b', 0x12, 0x00]);
    let json = serde_json::to_string(&result).expect("ser");
    assert_eq!(json, r#"{"subs":{"ab":{}}}"#);
    let back: ConnectResult = serde_json::from_str(&json).expect("de");
    assert_eq!(back, result);
}

#[test]
fn subscribe_and_history_results() {
    let pub1 = Publication { data: Bytes::from_static(br#"{"x":1}"#), offset: 1, ..Default::default() };
    let reply = Reply {
        id: 2,
        subscribe: Some(SubscribeResult {
            recoverable: true,
            epoch: "xyz".into(),
            publications: vec![pub1.clone()],
            recovered: true,
            offset: 1,
            positioned: true,
            was_recovering: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        json(&reply),
        r#"{"id":2,"subscribe":{"recoverable":true,"epoch":"xyz","publications":[{"data":{"x":1},"offset":1}],"recovered":true,"offset":1,"positioned":true,"was_recovering":true}}"#
    );
    let history = Reply {
        id: 7,
        history: Some(HistoryResult { publications: vec![pub1], epoch: "e".into(), offset: 9 }),
        ..Default::default()
    };
    assert_eq!(
        json(&history),
        r#"{"id":7,"history":{"publications":[{"data":{"x":1},"offset":1}],"epoch":"e","offset":9}}"#
    );
}

/// Commands as centrifuge-js / centrifuge-python build them; decoding and
/// re-encoding must reproduce the same bytes.
#[test]
fn sdk_commands_round_trip() {
    let lines = [
        r#"{"id":1,"connect":{"token":"t","data":{"k":"v"},"name":"js","version":"5.0.0"}}"#,
        r#"{"id":2,"subscribe":{"channel":"news","recover":true,"epoch":"e","offset":5,"positioned":true,"recoverable":true,"join_leave":true,"delta":"fossil","flag":1}}"#,
        r#"{"id":3,"publish":{"channel":"chat","data":{"text":"hi"}}}"#,
        r#"{"id":4,"rpc":{"data":[1,2],"method":"m"}}"#,
        r#"{"send":{"data":"hello"}}"#,
        r#"{"id":5,"history":{"channel":"c","limit":10,"since":{"offset":5,"epoch":"e"},"reverse":true}}"#,
        r#"{"id":6,"presence":{"channel":"c"}}"#,
        r#"{"id":7,"presence_stats":{"channel":"c"}}"#,
        r#"{"id":8,"unsubscribe":{"channel":"c"}}"#,
        r#"{"id":9,"refresh":{"token":"t"}}"#,
        r#"{"id":10,"sub_refresh":{"channel":"c","token":"t"}}"#,
        r#"{"id":11,"ping":{}}"#,
        r#"{"id":12,"subscribe":{"channel":"c","tf":{"op":"and","nodes":[{"key":"a","cmp":"eq","val":"1"},{"key":"b","cmp":"in","vals":["x","y"]}]},"flag":1}}"#,
    ];
    for line in lines {
        let cmd = decode_one(line);
        assert_eq!(serde_json::to_string(&cmd).expect("ser"), line);
    }
    let sub = decode_one(lines[1]).subscribe.expect("subscribe");
    assert_eq!((sub.channel.as_str(), sub.offset, sub.delta.as_str(), sub.flag), ("news", 5, "fossil", 1));
    let history = decode_one(lines[5]).history.expect("history");
    assert_eq!(history.since, Some(StreamPosition { offset: 5, epoch: "e".into() }));
    let publish = decode_one(lines[2]).publish.expect("publish");
    assert_eq!(&publish.data[..], br#"{"text":"hi"}"#);
}

#[test]
fn decoding_is_lenient_like_go() {
    // Whitespace inside raw data is kept verbatim; nulls mean "unset";
    // unknown keys are ignored; key order does not matter.
    let cmd = decode_one(
        r#"{"publish":{"data": { "a" : [1, 2] },"channel":"c","unknown":{"x":[1]}},"id":3,"extra":null,"connect":null}"#,
    );
    let publish = cmd.publish.expect("publish");
    assert_eq!(cmd.id, 3);
    assert!(cmd.connect.is_none());
    assert_eq!(publish.channel, "c");
    assert_eq!(&publish.data[..], br#"{ "a" : [1, 2] }"#);

    let cmd =
        decode_one(r#"{"id":1,"subscribe":{"channel":"c","token":null,"data":null,"offset":null,"recover":null}}"#);
    let sub = cmd.subscribe.expect("subscribe");
    assert_eq!(sub.channel, "c");
    assert!(sub.token.is_empty() && sub.data.is_empty() && sub.offset == 0 && !sub.recover);
}

#[test]
fn raw_payload_newlines_do_not_break_frames() {
    let reply = Reply::from_push(Push {
        channel: "c".into(),
        publication: Some(Publication { data: Bytes::from_static(b"{\n \"a\": \"x\\ny\"\n}\n"), ..Default::default() }),
        ..Default::default()
    });
    let mut out = Vec::new();
    encode_reply(Protocol::Json, &reply, &mut out);
    assert!(!out.contains(&b'\n'));
    assert_eq!(out, br#"{"push":{"channel":"c","pub":{"data":{ "a": "x\ny"}}}}"#);
}

#[test]
fn invalid_payload_is_written_as_null() {
    let reply = Reply::from_push(Push {
        channel: "c".into(),
        publication: Some(Publication { data: Bytes::from_static(b"\x00\x01binary"), offset: 1, ..Default::default() }),
        ..Default::default()
    });
    assert_eq!(json(&reply), r#"{"push":{"channel":"c","pub":{"data":null,"offset":1}}}"#);
    assert!(!herald_protocol::is_valid_json(b"\x00\x01binary"));
}

/// Fields Centrifugo's encoder writes even when zero or empty (no omitempty in its JSON tags):
/// the SDKs read them directly.
#[test]
fn zero_counts_positions_and_empty_presence_are_written() {
    use herald_protocol::{PresenceResult, PresenceStatsResult};
    let stats = Reply { id: 3, presence_stats: Some(PresenceStatsResult::default()), ..Default::default() };
    assert_eq!(json(&stats), r#"{"id":3,"presence_stats":{"num_clients":0,"num_users":0}}"#);
    let presence = Reply { id: 4, presence: Some(PresenceResult::default()), ..Default::default() };
    assert_eq!(json(&presence), r#"{"id":4,"presence":{"presence":{}}}"#);
    let history = Reply { id: 5, history: Some(HistoryResult::default()), ..Default::default() };
    assert_eq!(json(&history), r#"{"id":5,"history":{"publications":[],"epoch":"","offset":0}}"#);
    let info = ClientInfo::default();
    assert_eq!(serde_json::to_string(&info).expect("ser"), r#"{"user":"","client":""}"#);
}
