//! Subscriptions, permissions, publications, presence, join/leave, delta, slow clients.

use std::time::Duration;

use herald_core::auth::MintClaims;
use serde_json::{Value, json};

use crate::helpers::{Client, Closed, TestApp, base_config};

#[tokio::test]
async fn subscribe_then_receive_publications_in_order() {
    let app = TestApp::start().await;
    let mut client = app.client("alice").await;
    let reply = client.call(json!({ "subscribe": { "channel": "chat:room" } })).await;
    assert!(reply.get("subscribe").is_some(), "{reply}");
    for i in 1..=5 {
        let result = app.publish("chat:room", json!({ "i": i })).await;
        assert_eq!(result["offset"], json!(i));
    }
    for i in 1..=5 {
        let publication = client.next_pub("chat:room").await;
        assert_eq!(publication["data"], json!({ "i": i }));
        assert_eq!(publication["offset"], json!(i));
    }
}

#[tokio::test]
async fn many_commands_in_one_frame_get_every_reply() {
    let app = TestApp::start().await;
    let mut client = app.client("alice").await;
    let frame = [
        json!({ "id": 10, "subscribe": { "channel": "a" } }),
        json!({ "id": 11, "subscribe": { "channel": "b" } }),
        json!({ "id": 12, "subscribe": { "channel": "c" } }),
    ]
    .iter()
    .map(|c| c.to_string())
    .collect::<Vec<_>>()
    .join("\n");
    client.send_text(&frame).await;
    for id in 10..=12 {
        let reply = client.wait_for(|v| v["id"] == json!(id)).await;
        assert!(reply.get("subscribe").is_some(), "{reply}");
    }
}

#[tokio::test]
async fn permissions_are_enforced() {
    let app = TestApp::start().await;
    let mut client = app.client("alice").await;
    // `secret` needs a subscription token.
    let reply = client.call(json!({ "subscribe": { "channel": "secret:x" } })).await;
    assert_eq!(reply["error"]["code"], json!(103), "{reply}");
    // Unknown namespace.
    let reply = client.call(json!({ "subscribe": { "channel": "nope:x" } })).await;
    assert_eq!(reply["error"]["code"], json!(102), "{reply}");
    // Already subscribed.
    client.call(json!({ "subscribe": { "channel": "chat:x" } })).await;
    let reply = client.call(json!({ "subscribe": { "channel": "chat:x" } })).await;
    assert_eq!(reply["error"]["code"], json!(105), "{reply}");
    // Publishing to a channel one is not subscribed to.
    let reply = client.call(json!({ "publish": { "channel": "chat:other", "data": {} } })).await;
    assert_eq!(reply["error"]["code"], json!(103), "{reply}");
    // A user-limited channel for someone else.
    let reply = client.call(json!({ "subscribe": { "channel": "dm:#bob,carol" } })).await;
    assert_eq!(reply["error"]["code"], json!(103), "{reply}");
    let reply = client.call(json!({ "subscribe": { "channel": "dm:#alice,bob" } })).await;
    assert!(reply.get("subscribe").is_some(), "{reply}");
}

#[tokio::test]
async fn anonymous_needs_the_anonymous_rule() {
    let app = TestApp::start().await;
    let mut client = app.client("").await;
    let reply = client.call(json!({ "subscribe": { "channel": "chat:x" } })).await;
    assert_eq!(reply["error"]["code"], json!(103), "{reply}");
    let reply = client.call(json!({ "subscribe": { "channel": "pub:x" } })).await;
    assert!(reply.get("subscribe").is_some(), "{reply}");
}

#[tokio::test]
async fn subscription_token_grants_a_protected_channel() {
    let app = TestApp::start().await;
    let mut client = app.client("alice").await;
    let token =
        app.token_with(MintClaims { sub: "alice".into(), channel: Some("secret:x".into()), ..Default::default() });
    let reply = client.call(json!({ "subscribe": { "channel": "secret:x", "token": token } })).await;
    assert!(reply.get("subscribe").is_some(), "{reply}");
    app.publish("secret:x", json!("psst")).await;
    assert_eq!(client.next_pub("secret:x").await["data"], json!("psst"));

    // A token that does not verify is a refused subscription (103), the connection stays.
    let forged = herald_core::auth::mint_hs256(
        "not-the-secret",
        &MintClaims { sub: "alice".into(), channel: Some("secret:y".into()), ..Default::default() },
    )
    .expect("mint");
    let reply = client.call(json!({ "subscribe": { "channel": "secret:y", "token": forged } })).await;
    assert_eq!(reply["error"]["code"], json!(103), "{reply}");

    // A valid token for another channel is a protocol violation.
    let wrong =
        app.token_with(MintClaims { sub: "alice".into(), channel: Some("secret:y".into()), ..Default::default() });
    client.send_text(&json!({ "id": 50, "subscribe": { "channel": "secret:z", "token": wrong } }).to_string()).await;
    assert_eq!(client.closed().await, Closed::Code(3500, "invalid token".into()));
}

#[tokio::test]
async fn client_publish_reaches_subscribers_with_publisher_info() {
    let app = TestApp::start().await;
    let mut alice = app.client("alice").await;
    let mut bob = app.client("bob").await;
    alice.call(json!({ "subscribe": { "channel": "chat:talk" } })).await;
    bob.call(json!({ "subscribe": { "channel": "chat:talk" } })).await;
    let reply = alice.call(json!({ "publish": { "channel": "chat:talk", "data": { "text": "hi" } } })).await;
    assert!(reply.get("publish").is_some(), "{reply}");
    let publication = bob.next_pub("chat:talk").await;
    assert_eq!(publication["data"], json!({ "text": "hi" }));
    assert_eq!(publication["info"]["user"], json!("alice"));
    assert_eq!(publication["info"]["client"], json!(alice.client_id));
}

#[tokio::test]
async fn presence_and_join_leave() {
    let app = TestApp::start().await;
    let mut alice = app.client("alice").await;
    let mut bob = app.client("bob").await;
    alice.call(json!({ "subscribe": { "channel": "chat:p", "join_leave": true } })).await;
    bob.call(json!({ "subscribe": { "channel": "chat:p" } })).await;

    let join = alice.wait_for(|v| v.pointer("/push/join/info/user") == Some(&json!("bob"))).await;
    assert_eq!(join["push"]["channel"], json!("chat:p"));

    let reply = alice.call(json!({ "presence": { "channel": "chat:p" } })).await;
    let presence = reply["presence"]["presence"].as_object().expect("presence map");
    assert_eq!(presence.len(), 2, "{reply}");
    assert_eq!(presence[&bob.client_id]["user"], json!("bob"));

    let reply = alice.call(json!({ "presence_stats": { "channel": "chat:p" } })).await;
    assert_eq!(reply["presence_stats"], json!({ "num_clients": 2, "num_users": 2 }));

    bob.call(json!({ "unsubscribe": { "channel": "chat:p" } })).await;
    let leave = alice.wait_for(|v| v.pointer("/push/leave/info/user") == Some(&json!("bob"))).await;
    assert_eq!(leave["push"]["channel"], json!("chat:p"));

    let (_, body) = app.api("presence_stats", json!({ "channel": "chat:p" })).await;
    assert_eq!(body["result"], json!({ "num_clients": 1, "num_users": 1 }));

    // Disconnecting sends leave too.
    drop(bob);
    let mut carol = app.client("carol").await;
    carol.call(json!({ "subscribe": { "channel": "chat:p" } })).await;
    drop(carol);
    alice.wait_for(|v| v.pointer("/push/leave/info/user") == Some(&json!("carol"))).await;
}

#[tokio::test]
async fn presence_not_available_without_the_option() {
    let app = TestApp::start().await;
    let mut client = app.client("alice").await;
    client.call(json!({ "subscribe": { "channel": "news" } })).await;
    let reply = client.call(json!({ "presence": { "channel": "news" } })).await;
    assert_eq!(reply["error"]["code"], json!(108), "{reply}");
}

#[tokio::test]
async fn fossil_delta_publications_apply_to_the_previous_payload() {
    fossil_deltas_apply_to_the_previous_payload("chat:delta").await;
}

#[tokio::test]
async fn fossil_deltas_on_a_durable_channel_apply_to_the_previous_payload() {
    // Durable publications reach the hub after their commit, through another path.
    fossil_deltas_apply_to_the_previous_payload("durable:delta").await;
}

async fn fossil_deltas_apply_to_the_previous_payload(channel: &str) {
    let app = TestApp::start().await;
    let mut client = app.client("alice").await;
    let reply = client.call(json!({ "subscribe": { "channel": channel, "delta": "fossil" } })).await;
    assert_eq!(reply["subscribe"]["delta"], json!(true), "{reply}");

    let sent: Vec<Value> = ["dog", "cat", "cow"]
        .iter()
        .enumerate()
        .map(|(n, animal)| json!({ "text": format!("the quick brown fox jumps over the lazy {animal}"), "n": n }))
        .collect();
    // Deltas are used for publications published with `delta: true`, as in Centrifugo.
    for data in &sent {
        let (_, body) = app.api("publish", json!({ "channel": channel, "data": data, "delta": true })).await;
        assert!(body.get("result").is_some(), "{body}");
    }
    let last = json!({ "text": "the quick brown fox jumps over the lazy cow", "n": 99 });
    app.publish(channel, last.clone()).await;

    // JSON delta framing: the payload is a JSON string; delta ones are fossil patches against
    // the payload before them.
    let p1 = client.next_pub(channel).await;
    assert!(p1.get("delta").is_none(), "first is full: {p1}");
    let mut current = p1["data"].as_str().expect("string-framed payload").as_bytes().to_vec();
    assert_eq!(serde_json::from_slice::<Value>(&current).expect("json"), sent[0]);
    for expected in &sent[1..] {
        let p = client.next_pub(channel).await;
        assert_eq!(p["delta"], json!(true), "{p}");
        let patch = p["data"].as_str().expect("patch string");
        current = herald_protocol::fossil::apply(&current, patch.as_bytes()).expect("patch applies");
        assert_eq!(&serde_json::from_slice::<Value>(&current).expect("json"), expected);
    }

    // Without the flag the payload goes whole (still string-framed for this subscription).
    let p = client.next_pub(channel).await;
    assert!(p.get("delta").is_none(), "{p}");
    let whole = p["data"].as_str().expect("string-framed payload");
    assert_eq!(serde_json::from_str::<Value>(whole).expect("json"), last);
}

/// `delta_publish`: every publication of the namespace goes out as a delta to subscribers that
/// negotiated deltas, without the publisher asking; others get plain payloads.
#[tokio::test]
async fn delta_publish_namespace_sends_deltas_without_the_publish_flag() {
    let app = TestApp::start().await;
    let mut delta = app.client("alice").await;
    let mut plain = app.client("bob").await;
    let reply = delta.call(json!({ "subscribe": { "channel": "feed:prices", "delta": "fossil" } })).await;
    assert_eq!(reply["subscribe"]["delta"], json!(true), "{reply}");
    plain.call(json!({ "subscribe": { "channel": "feed:prices" } })).await;
    let sent: Vec<Value> = (0..4)
        .map(|n| json!({ "symbol": "AAPL", "description": "a long description that stays the same", "n": n }))
        .collect();
    for (n, data) in sent.iter().enumerate() {
        // Neither flag (nor `delta: false`) opts out, as in Centrifugo.
        let body = if n == 1 {
            json!({ "channel": "feed:prices", "data": data, "delta": false })
        } else {
            json!({ "channel": "feed:prices", "data": data })
        };
        let (_, body) = app.api("publish", body).await;
        assert!(body.get("result").is_some(), "{body}");
    }
    let first = delta.next_pub("feed:prices").await;
    assert!(first.get("delta").is_none(), "{first}");
    let mut current = first["data"].as_str().expect("string-framed").as_bytes().to_vec();
    for expected in &sent[1..] {
        let p = delta.next_pub("feed:prices").await;
        assert_eq!(p["delta"], json!(true), "{p}");
        current =
            herald_protocol::fossil::apply(&current, p["data"].as_str().expect("patch").as_bytes()).expect("applies");
        assert_eq!(&serde_json::from_slice::<Value>(&current).expect("json"), expected);
    }
    for expected in &sent {
        let p = plain.next_pub("feed:prices").await;
        assert!(p.get("delta").is_none(), "{p}");
        assert_eq!(&p["data"], expected);
    }
}

/// Tags filters (`tf`): publications that do not match are dropped for that subscriber only,
/// live and in recovery; a filter is refused with 107 where the namespace does not allow it or
/// when it is invalid; a filtered subscription gets no deltas.
#[tokio::test]
async fn tags_filter_drops_non_matching_publications_for_that_subscriber() {
    let app = TestApp::start().await;
    let filter = json!({ "op": "and", "nodes": [
        { "key": "ticker", "cmp": "eq", "val": "AAPL" },
        { "key": "price", "cmp": "gte", "val": "100" },
    ] });
    let mut filtered = app.client("alice").await;
    let reply = filtered
        .call(json!({ "subscribe": { "channel": "feed:ticks", "tf": filter, "delta": "fossil", "recoverable": true } }))
        .await;
    assert!(reply["subscribe"].get("delta").is_none(), "no deltas with a filter: {reply}");
    let epoch = reply["subscribe"]["epoch"].as_str().expect("epoch").to_owned();
    let mut everything = app.client("bob").await;
    everything.call(json!({ "subscribe": { "channel": "feed:ticks" } })).await;

    let ticks = [("AAPL", "150", true), ("BTC", "150", false), ("AAPL", "99.5", false), ("AAPL", "100.0", true)];
    for (n, (ticker, price, _)) in ticks.iter().enumerate() {
        let (_, body) = app
            .api(
                "publish",
                json!({ "channel": "feed:ticks", "data": { "n": n }, "tags": { "ticker": ticker, "price": price } }),
            )
            .await;
        assert!(body.get("result").is_some(), "{body}");
    }
    let wanted: Vec<usize> = ticks.iter().enumerate().filter(|(_, t)| t.2).map(|(n, _)| n).collect();
    for n in &wanted {
        let p = filtered.next_pub("feed:ticks").await;
        assert_eq!(p["data"], json!({ "n": n }), "plain payloads, no delta framing: {p}");
    }
    for n in 0..ticks.len() {
        assert_eq!(everything.next_pub("feed:ticks").await["data"], json!({ "n": n }));
    }
    filtered.expect_silence(Duration::from_millis(200)).await;

    // Recovery: decided on the whole stream, then filtered.
    let mut late = app.client("carol").await;
    let reply = late
        .call(json!({ "subscribe": { "channel": "feed:ticks", "tf": filter, "recoverable": true, "recover": true,
            "epoch": epoch, "offset": 0 } }))
        .await;
    assert_eq!(reply["subscribe"]["recovered"], json!(true), "{reply}");
    let recovered: Vec<Value> = reply["subscribe"]["publications"]
        .as_array()
        .expect("publications")
        .iter()
        .map(|p| p["data"].clone())
        .collect();
    assert_eq!(recovered, wanted.iter().map(|n| json!({ "n": n })).collect::<Vec<_>>());
    assert_eq!(reply["subscribe"]["offset"], json!(4), "the position is the stream's: {reply}");

    // Refused with 107: a namespace without allow_tags_filter, an invalid filter.
    for (channel, tf) in [
        ("chat:ticks", json!({ "key": "ticker", "cmp": "eq", "val": "AAPL" })),
        ("feed:ticks2", json!({ "key": "ticker", "cmp": "eq", "val": "" })),
        ("feed:ticks2", json!({ "op": "not", "nodes": [] })),
        ("feed:ticks2", json!({ "key": "price", "cmp": "gt", "val": "1e3" })),
    ] {
        let reply = late.call(json!({ "subscribe": { "channel": channel, "tf": tf } })).await;
        assert_eq!(reply["error"]["code"], json!(107), "{channel} {tf}: {reply}");
    }
    // Too many nodes (client.max_tags_filter_nodes = 64).
    let wide = json!({ "op": "or", "nodes": (0..64).map(|i| json!({ "key": "k", "cmp": "eq", "val": i.to_string() })).collect::<Vec<_>>() });
    let reply = late.call(json!({ "subscribe": { "channel": "feed:wide", "tf": wide } })).await;
    assert_eq!(reply["error"]["code"], json!(107), "{reply}");
}

#[tokio::test]
async fn slow_subscriber_is_disconnected_with_3008_and_others_keep_up() {
    let mut config = base_config();
    config.client.queue_max_bytes = 64 * 1024;
    config.client.queue_max_messages = 256;
    let app = TestApp::start_with(config).await;
    let mut slow = app.client("slow").await;
    let mut fast = app.client("fast").await;
    slow.call(json!({ "subscribe": { "channel": "flood" } })).await;
    fast.call(json!({ "subscribe": { "channel": "flood" } })).await;
    let slow_id = slow.client_id.clone();

    // Publish big payloads until the slow client (which reads nothing) overflows its queue.
    let hub = &app.server().app().hub;
    let options = herald_core::ChannelOptions::default();
    let payload = bytes::Bytes::from(format!("\"{}\"", "x".repeat(16 * 1024)));
    // Lockstep with the fast client: it never has more than one message queued, while the slow
    // one (which reads nothing) fills its socket buffers and then its queue.
    let mut published = 0u64;
    while hub.client(&slow_id).is_some() && published < 5000 {
        hub.publish(herald_server::PublishSpec {
            channel: "flood",
            options: &options,
            data: payload.clone(),
            info: None,
            tags: Default::default(),
            skip_history: false,
            idempotency_key: None,
            delta: false,
        });
        published += 1;
        let publication = fast.next_pub("flood").await;
        assert!(publication["data"].is_string());
    }
    assert!(published < 5000, "the slow client was never dropped");
    // The fast client is still subscribed and served.
    app.publish("flood", json!("after")).await;
    assert_eq!(fast.next_pub("flood").await["data"], json!("after"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while hub.client(&slow_id).is_some() {
        assert!(tokio::time::Instant::now() < deadline, "slow client still registered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(slow.closed().await, Closed::Code(3008, "slow".into()));
}

#[tokio::test]
async fn server_api_subscribe_unsubscribe_and_disconnect() {
    let app = TestApp::start().await;
    let mut client = app.client("henry").await;

    let (_, body) = app.api("subscribe", json!({ "user": "henry", "channel": "chat:srv" })).await;
    assert_eq!(body, json!({ "result": {} }));
    let push = client.wait_for(|v| v.pointer("/push/subscribe").is_some()).await;
    assert_eq!(push["push"]["channel"], json!("chat:srv"));
    app.publish("chat:srv", json!(1)).await;
    assert_eq!(client.next_pub("chat:srv").await["data"], json!(1));

    app.api("unsubscribe", json!({ "user": "henry", "channel": "chat:srv" })).await;
    let push = client.wait_for(|v| v.pointer("/push/unsubscribe").is_some()).await;
    assert_eq!(push["push"]["unsubscribe"]["code"], json!(2000), "{push}");

    app.api("disconnect", json!({ "user": "henry", "disconnect": { "code": 4000, "reason": "go away" } })).await;
    assert_eq!(client.closed().await, Closed::Code(4000, "go away".into()));
}

#[tokio::test]
async fn channels_and_info_reflect_subscriptions() {
    let app = TestApp::start().await;
    let mut a = app.client("a").await;
    let mut b = app.client("b").await;
    a.call(json!({ "subscribe": { "channel": "chat:one" } })).await;
    b.call(json!({ "subscribe": { "channel": "chat:one" } })).await;
    b.call(json!({ "subscribe": { "channel": "news" } })).await;
    let (_, body) = app.api("channels", json!({})).await;
    assert_eq!(body["result"]["channels"]["chat:one"]["num_clients"], json!(2), "{body}");
    let (_, body) = app.api("channels", json!({ "pattern": "chat:*" })).await;
    assert_eq!(body["result"]["channels"].as_object().map(|m| m.len()), Some(1), "{body}");
    let (_, body) = app.api("info", json!({})).await;
    let node = &body["result"]["nodes"][0];
    assert_eq!(node["num_clients"], json!(2), "{body}");
    assert_eq!(node["num_users"], json!(2), "{body}");
    assert_eq!(node["num_subs"], json!(3), "{body}");
    let _ = Client::open;
}

#[tokio::test]
async fn map_and_shared_poll_subscriptions_are_refused_not_served_as_streams() {
    let app = TestApp::start().await;
    let mut client = app.client("alice").await;
    for kind in [1, 4] {
        let reply = client.call(json!({ "subscribe": { "channel": "chat:typed", "type": kind } })).await;
        assert_eq!(reply["error"]["code"], 108, "type {kind}: {reply}");
    }
    // The connection goes on, and a plain stream subscription works.
    let reply = client.call(json!({ "subscribe": { "channel": "chat:typed" } })).await;
    assert!(reply.get("subscribe").is_some(), "{reply}");
}
