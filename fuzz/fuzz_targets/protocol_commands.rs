//! The client protocol (`herald_protocol`): frames a client sends, tags filters, fossil deltas.
//!
//! Input: `mode`, then the body.
//!
//! - mode % 3 == 0 / 1: the body is a WebSocket frame for `decode_commands` with the JSON /
//!   Protobuf protocol. Decoded commands must encode back to the same commands; replies built
//!   from them (publication pushes, results carrying their `data`) must encode in both protocols
//!   to one JSON line that parses back / a Protobuf message that decodes back. Every subscribe
//!   `tf` filter goes through `TagsFilter::compile` (64 nodes, the config default) and a
//!   compiled filter must agree with a plain reading of the rules in `filter.rs` on tag maps
//!   made from the frame; numbers in the frame are compared with `filter::Decimal` and with an
//!   independent decimal comparison.
//! - mode % 3 == 2: the body is a (base, other) pair: `fossil::apply(base, other)` must not
//!   panic; `fossil::delta` and `fossil::delta_utf8` of (base, other) must apply back to
//!   `other`; the UTF-8 variant must be UTF-8 for a UTF-8 target and equal `delta` for ASCII;
//!   `delta_publication_data` must give what the SDKs turn back into `other`.

#![no_main]

use std::cmp::Ordering;
use std::collections::HashMap;

use herald_protocol::filter::{Decimal, TagsFilter};
use herald_protocol::{
    Command, ConnectResult, Error, FilterNode, Protocol, Publication, Push, Reply, RpcResult, SubscribeResult,
    append_to_frame, decode_commands, delta_publication_data, encode_reply_bytes, fossil, is_valid_json,
};
use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use serde_json::value::RawValue;

/// `client.max_tags_filter_nodes` by default.
const MAX_FILTER_NODES: usize = 64;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else { return };
    match mode % 3 {
        0 => commands(Protocol::Json, body),
        1 => commands(Protocol::Protobuf, body),
        _ => fossil_pair(body),
    }
});

fn commands(protocol: Protocol, frame: &[u8]) {
    let commands = match decode_commands(protocol, frame) {
        Ok(commands) => commands,
        Err(error) => {
            let _ = error.to_string();
            return;
        }
    };

    // What was decoded encodes back to the same commands.
    let mut again = Vec::new();
    for command in &commands {
        match protocol {
            Protocol::Json => {
                let json = serde_json::to_vec(command).expect("a decoded command serializes");
                assert!(!json.contains(&b'\n'), "a command's JSON holds a newline: {}", String::from_utf8_lossy(&json));
                append_to_frame(protocol, &mut again, &json);
            }
            Protocol::Protobuf => command.encode_length_delimited(&mut again).expect("encoding into a Vec"),
        }
    }
    let decoded = decode_commands(protocol, &again).expect("re-encoded commands decode");
    assert_eq!(decoded, commands, "commands changed through an encode and decode");

    let mut replies = Vec::new();
    for command in &commands {
        replies_to(command, &mut replies);
    }
    for protocol in [Protocol::Json, Protocol::Protobuf] {
        check_replies(protocol, &replies);
    }

    let mut header_maps: Vec<&HashMap<String, String>> = Vec::new();
    let mut filters: Vec<&FilterNode> = Vec::new();
    for command in &commands {
        if let Some(connect) = &command.connect {
            header_maps.push(&connect.headers);
            filters.extend(connect.subs.values().filter_map(|sub| sub.tf.as_ref()));
        }
        filters.extend(command.subscribe.as_ref().and_then(|sub| sub.tf.as_ref()));
    }
    for filter in filters {
        check_filter(filter, &header_maps);
    }
}

/// Replies the server could send in answer, carrying the command's own bytes and strings.
fn replies_to(command: &Command, replies: &mut Vec<Reply>) {
    let id = command.id;
    replies.push(Reply::from_error(
        id,
        Error { code: id, message: format!("{command:?}"), temporary: id.is_multiple_of(2) },
    ));
    if let Some(publish) = &command.publish {
        let publication = Publication {
            data: publish.data.clone(),
            channel: publish.channel.clone(),
            key: publish.key.clone(),
            removed: publish.removed,
            offset: u64::from(id),
            ..Publication::default()
        };
        replies.push(Reply::from_push(Push {
            channel: publish.channel.clone(),
            publication: Some(publication),
            ..Push::default()
        }));
    }
    if let Some(rpc) = &command.rpc {
        replies.push(Reply { id, rpc: Some(RpcResult { data: rpc.data.clone() }), ..Reply::default() });
    }
    if let Some(send) = &command.send {
        let message = herald_protocol::Message { data: send.data.clone() };
        replies.push(Reply::from_push(Push { message: Some(message), ..Push::default() }));
    }
    if let Some(subscribe) = &command.subscribe {
        let result = SubscribeResult {
            epoch: subscribe.epoch.clone(),
            offset: subscribe.offset,
            data: subscribe.data.clone(),
            cursor: subscribe.cursor.clone(),
            ..SubscribeResult::default()
        };
        replies.push(Reply { id, subscribe: Some(result), ..Reply::default() });
    }
    if let Some(connect) = &command.connect {
        let result = ConnectResult {
            client: connect.name.clone(),
            version: connect.version.clone(),
            data: connect.data.clone(),
            session: connect.profile.clone(),
            ..ConnectResult::default()
        };
        replies.push(Reply { id, connect: Some(result), ..Reply::default() });
    }
}

/// What a `bytes` field reads as after a trip through the JSON protocol: the value's text
/// without surrounding whitespace or raw newlines; empty for `null` and for bytes that are not
/// one JSON value (sent as `null`).
fn json_form(bytes: &[u8]) -> Vec<u8> {
    let Some(raw) = std::str::from_utf8(bytes).ok().and_then(|text| serde_json::from_str::<&RawValue>(text).ok())
    else {
        return Vec::new();
    };
    assert!(is_valid_json(bytes));
    let text: Vec<u8> = raw.get().bytes().filter(|&b| b != b'\n').collect();
    if text == b"null" { Vec::new() } else { text }
}

fn reply_data(reply: &Reply) -> Option<&[u8]> {
    if let Some(push) = &reply.push {
        if let Some(publication) = &push.publication {
            return Some(&publication.data);
        }
        if let Some(message) = &push.message {
            return Some(&message.data);
        }
    }
    reply
        .rpc
        .as_ref()
        .map(|r| &r.data[..])
        .or(reply.subscribe.as_ref().map(|s| &s.data[..]))
        .or(reply.connect.as_ref().map(|c| &c.data[..]))
}

fn check_replies(protocol: Protocol, replies: &[Reply]) {
    let mut frame = Vec::new();
    for reply in replies {
        let encoded = encode_reply_bytes(protocol, reply);
        match protocol {
            Protocol::Json => {
                assert!(
                    !encoded.contains(&b'\n'),
                    "a JSON reply holds a newline: {}",
                    String::from_utf8_lossy(&encoded)
                );
                let back: Reply = serde_json::from_slice(&encoded).unwrap_or_else(|error| {
                    panic!("JSON reply does not parse ({error}): {}", String::from_utf8_lossy(&encoded))
                });
                assert_eq!(back.id, reply.id);
                assert_eq!(back.error, reply.error);
                if let Some(data) = reply_data(reply) {
                    assert_eq!(reply_data(&back).unwrap_or_default(), &json_form(data)[..], "data changed in JSON");
                }
            }
            Protocol::Protobuf => {
                let back = Reply::decode_length_delimited(&encoded[..]).expect("Protobuf reply decodes");
                assert_eq!(&back, reply);
            }
        }
        append_to_frame(protocol, &mut frame, &encoded);
    }
    if protocol == Protocol::Json && !replies.is_empty() {
        assert_eq!(frame.split(|&b| b == b'\n').count(), replies.len(), "one line per reply");
    }
}

fn count_nodes(node: &FilterNode) -> usize {
    1 + node.nodes.iter().map(count_nodes).sum::<usize>()
}

/// Leaves of a filter tree, in order.
fn leaves<'a>(node: &'a FilterNode, out: &mut Vec<&'a FilterNode>) {
    if node.op.is_empty() {
        out.push(node);
    }
    for child in &node.nodes {
        leaves(child, out);
    }
}

fn check_filter(node: &FilterNode, header_maps: &[&HashMap<String, String>]) {
    let compiled = match TagsFilter::compile(node, MAX_FILTER_NODES) {
        Ok(compiled) => compiled,
        Err(error) => {
            let _ = error.to_string();
            return;
        }
    };
    assert!(count_nodes(node) <= MAX_FILTER_NODES, "a filter over the node limit compiled");

    // Tag maps likely to make leaves match and not match: each leaf's key set to its value,
    // to its value with a byte before or after, to a listed value, and the frame's headers.
    let mut leaf_nodes = Vec::new();
    leaves(node, &mut leaf_nodes);
    let mut maps: Vec<HashMap<String, String>> = vec![HashMap::new()];
    for variant in 0..5 {
        let mut tags = HashMap::new();
        for (i, leaf) in leaf_nodes.iter().enumerate() {
            let listed = leaf.vals.get(i % leaf.vals.len().max(1)).cloned().unwrap_or_default();
            let value = match variant {
                0 => leaf.val.clone(),
                1 => format!("x{}", leaf.val),
                2 => format!("{}9", leaf.val),
                3 => listed,
                _ if i % 2 == 0 => continue,
                _ => leaf.val.clone(),
            };
            tags.insert(leaf.key.clone(), value);
        }
        maps.push(tags);
    }
    maps.extend(header_maps.iter().map(|&m| m.clone()));
    for tags in &maps {
        assert_eq!(compiled.matches(tags), reference_matches(node, tags), "filter {node:?} on tags {tags:?}");
    }

    // Numbers: filter::Decimal against an independent comparison.
    let mut numbers: Vec<&str> = Vec::new();
    for leaf in &leaf_nodes {
        numbers.push(&leaf.val);
        numbers.extend(leaf.vals.iter().map(String::as_str));
    }
    for tags in &maps {
        numbers.extend(tags.values().map(String::as_str));
    }
    numbers.truncate(32);
    for a in &numbers {
        assert_eq!(Decimal::parse(a).is_some(), ReferenceDecimal::parse(a).is_some(), "parse {a:?}");
        for b in &numbers {
            if let (Some(x), Some(y)) = (Decimal::parse(a), Decimal::parse(b)) {
                let expected = ReferenceDecimal::parse(a).expect("a").cmp(&ReferenceDecimal::parse(b).expect("b"));
                assert_eq!(x.cmp(&y), expected, "{a:?} vs {b:?}");
            }
        }
    }
}

/// The filter rules as `filter.rs` documents them, read directly off the (valid) tree.
fn reference_matches(node: &FilterNode, tags: &HashMap<String, String>) -> bool {
    match node.op.as_str() {
        "and" => node.nodes.iter().all(|n| reference_matches(n, tags)),
        "or" => node.nodes.iter().any(|n| reference_matches(n, tags)),
        "not" => !reference_matches(&node.nodes[0], tags),
        _ => {
            let tag = tags.get(&node.key).map(String::as_str);
            // A missing tag reads as the empty string.
            let value = tag.unwrap_or_default();
            let val = node.val.as_str();
            let number = |accept: &[Ordering]| {
                let bound = ReferenceDecimal::parse(val).expect("compiled filters hold numbers");
                tag.and_then(ReferenceDecimal::parse).is_some_and(|n| accept.contains(&n.cmp(&bound)))
            };
            match node.cmp.as_str() {
                "eq" => tag == Some(val),
                "neq" => tag != Some(val),
                "in" => node.vals.iter().any(|v| v == value),
                "nin" => !node.vals.iter().any(|v| v == value),
                "ex" => tag.is_some(),
                "nex" => tag.is_none(),
                "sw" => tag.is_some_and(|t| t.starts_with(val)),
                "ew" => tag.is_some_and(|t| t.ends_with(val)),
                "ct" => tag.is_some_and(|t| t.contains(val)),
                "gt" => number(&[Ordering::Greater]),
                "gte" => number(&[Ordering::Greater, Ordering::Equal]),
                "lt" => number(&[Ordering::Less]),
                "lte" => number(&[Ordering::Less, Ordering::Equal]),
                other => panic!("compiled a filter with comparison {other:?}"),
            }
        }
    }
}

/// `[+-]digits[.digits]` (at most 19 fraction digits, 200 characters), compared by padding both
/// numbers to the same digit positions.
#[derive(PartialEq, Eq)]
struct ReferenceDecimal {
    negative: bool,
    int: Vec<u8>,
    frac: Vec<u8>,
}

impl ReferenceDecimal {
    fn parse(text: &str) -> Option<ReferenceDecimal> {
        if text.is_empty() || text.len() > 200 {
            return None;
        }
        let bytes = text.as_bytes();
        let (negative, body) = match bytes[0] {
            b'-' => (true, &bytes[1..]),
            b'+' => (false, &bytes[1..]),
            _ => (false, bytes),
        };
        let dot = body.iter().position(|&b| b == b'.');
        let (int, frac) = match dot {
            Some(at) => (&body[..at], &body[at + 1..]),
            None => (body, &b""[..]),
        };
        if int.is_empty() || (dot.is_some() && (frac.is_empty() || frac.len() > 19)) {
            return None;
        }
        if !int.iter().chain(frac).all(u8::is_ascii_digit) {
            return None;
        }
        Some(ReferenceDecimal { negative, int: int.to_vec(), frac: frac.to_vec() })
    }

    fn is_zero(&self) -> bool {
        self.int.iter().chain(&self.frac).all(|&d| d == b'0')
    }

    /// Compare magnitudes digit by digit after padding to the same widths.
    fn cmp_magnitude(&self, other: &Self) -> Ordering {
        let width = self.int.len().max(other.int.len());
        let frac_width = self.frac.len().max(other.frac.len());
        let digits = |d: &Self| -> Vec<u8> {
            let mut out = vec![b'0'; width - d.int.len()];
            out.extend_from_slice(&d.int);
            out.extend_from_slice(&d.frac);
            out.resize(width + frac_width, b'0');
            out
        };
        digits(self).cmp(&digits(other))
    }

    fn cmp(&self, other: &Self) -> Ordering {
        let negative = |d: &Self| d.negative && !d.is_zero();
        match (negative(self), negative(other)) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
        }
    }
}

fn fossil_pair(body: &[u8]) {
    let (split, rest) = match body {
        [a, b, rest @ ..] => (usize::from(u16::from_be_bytes([*a, *b])) % (rest.len() + 1), rest),
        _ => return,
    };
    let (base, other) = rest.split_at(split);

    // `other` as a delta from a client or a corrupted store: errors only.
    if let Err(error) = fossil::apply(base, other) {
        let _ = error.to_string();
    }

    // `other` as the next payload.
    let delta = fossil::delta(base, other);
    assert_eq!(fossil::apply(base, &delta).as_deref(), Ok(other), "delta does not apply back");
    let delta_utf8 = fossil::delta_utf8(base, other);
    assert_eq!(fossil::apply(base, &delta_utf8).as_deref(), Ok(other), "delta_utf8 does not apply back");
    if other.is_ascii() {
        assert_eq!(delta_utf8, delta, "delta_utf8 differs from delta for an ASCII target");
    }
    let utf8 = std::str::from_utf8(base).is_ok() && std::str::from_utf8(other).is_ok();
    if std::str::from_utf8(other).is_ok() {
        assert!(std::str::from_utf8(&delta_utf8).is_ok(), "delta_utf8 of a UTF-8 target is not UTF-8");
    }

    for protocol in [Protocol::Protobuf, Protocol::Json] {
        let first = delta_publication_data(protocol, None, other);
        assert!(!first.delta);
        let next = delta_publication_data(protocol, Some(base), other);
        match protocol {
            Protocol::Protobuf => {
                assert_eq!(&first.data[..], other);
                if next.delta {
                    assert!(next.data.len() < other.len(), "a delta not smaller than the payload was chosen");
                    assert_eq!(fossil::apply(base, &next.data).as_deref(), Ok(other));
                } else {
                    assert_eq!(&next.data[..], other);
                }
            }
            // The SDKs JSON.parse `data` and apply the UTF-8 bytes of the string; that can only
            // give the payload back when the payloads are UTF-8 themselves.
            Protocol::Json if utf8 => {
                let full: String = serde_json::from_slice(&first.data).expect("full data is a JSON string");
                assert_eq!(full.as_bytes(), other);
                let text: String = serde_json::from_slice(&next.data).expect("delta data is a JSON string");
                if next.delta {
                    assert_eq!(fossil::apply(base, text.as_bytes()).as_deref(), Ok(other));
                } else {
                    assert_eq!(text.as_bytes(), other);
                }
            }
            Protocol::Json => {
                let _: String = serde_json::from_slice(&next.data).expect("data is a JSON string");
            }
        }
    }
}
