//! History and recovery.

use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn history_command_with_limit_reverse_and_since() {
    let app = TestApp::start().await;
    let mut epoch = String::new();
    for i in 1..=5 {
        epoch = app.publish("chat:h", json!(i)).await["epoch"].as_str().expect("epoch").to_owned();
    }
    let mut client = app.client("alice").await;
    client.call(json!({ "subscribe": { "channel": "chat:h" } })).await;

    let reply = client.call(json!({ "history": { "channel": "chat:h", "limit": 3 } })).await;
    let data: Vec<_> =
        reply["history"]["publications"].as_array().expect("pubs").iter().map(|p| p["data"].clone()).collect();
    assert_eq!(data, vec![json!(1), json!(2), json!(3)], "{reply}");
    assert_eq!(reply["history"]["offset"], json!(5));
    assert_eq!(reply["history"]["epoch"], json!(epoch));

    let reply = client.call(json!({ "history": { "channel": "chat:h", "limit": 2, "reverse": true } })).await;
    let offsets: Vec<_> =
        reply["history"]["publications"].as_array().expect("pubs").iter().map(|p| p["offset"].clone()).collect();
    assert_eq!(offsets, vec![json!(5), json!(4)], "{reply}");

    let reply = client
        .call(json!({ "history": { "channel": "chat:h", "limit": -1, "since": { "offset": 3, "epoch": epoch } } }))
        .await;
    let offsets: Vec<_> =
        reply["history"]["publications"].as_array().expect("pubs").iter().map(|p| p["offset"].clone()).collect();
    assert_eq!(offsets, vec![json!(4), json!(5)], "{reply}");

    let reply = client
        .call(json!({ "history": { "channel": "chat:h", "limit": -1, "since": { "offset": 3, "epoch": "gone" } } }))
        .await;
    assert_eq!(reply["error"]["code"], json!(112), "{reply}");

    // Channels without history say so.
    client.call(json!({ "subscribe": { "channel": "news" } })).await;
    let reply = client.call(json!({ "history": { "channel": "news", "limit": 1 } })).await;
    assert_eq!(reply["error"]["code"], json!(108), "{reply}");
}

#[tokio::test]
async fn history_size_bounds_what_is_kept() {
    let app = TestApp::start().await;
    for i in 1..=15 {
        app.publish("chat:bounded", json!(i)).await;
    }
    let (_, body) = app.api("history", json!({ "channel": "chat:bounded", "limit": -1 })).await;
    let offsets: Vec<u64> = body["result"]["publications"]
        .as_array()
        .expect("pubs")
        .iter()
        .map(|p| p["offset"].as_u64().expect("offset"))
        .collect();
    assert_eq!(offsets, (6..=15).collect::<Vec<_>>(), "history_size is 10: {body}");
}

#[tokio::test]
async fn recovery_after_reconnect_returns_exactly_the_missed_publications() {
    let app = TestApp::start().await;
    let mut client = app.client("alice").await;
    let reply = client.call(json!({ "subscribe": { "channel": "chat:rec", "recoverable": true } })).await;
    let sub = &reply["subscribe"];
    assert_eq!(sub["recoverable"], json!(true), "{reply}");
    let epoch = sub["epoch"].as_str().expect("epoch").to_owned();

    app.publish("chat:rec", json!("seen")).await;
    let seen = client.next_pub("chat:rec").await;
    let offset = seen["offset"].as_u64().expect("offset");
    drop(client);

    for i in 0..3 {
        app.publish("chat:rec", json!({ "missed": i })).await;
    }
    let mut client = app.client("alice").await;
    let reply = client
        .call(json!({ "subscribe": { "channel": "chat:rec", "recoverable": true, "recover": true, "epoch": epoch, "offset": offset } }))
        .await;
    let sub = &reply["subscribe"];
    assert_eq!(sub["was_recovering"], json!(true), "{reply}");
    assert_eq!(sub["recovered"], json!(true), "{reply}");
    let data: Vec<_> = sub["publications"].as_array().expect("pubs").iter().map(|p| p["data"].clone()).collect();
    assert_eq!(data, vec![json!({ "missed": 0 }), json!({ "missed": 1 }), json!({ "missed": 2 })]);
    assert_eq!(sub["offset"], json!(offset + 3));

    // Live publications continue after the recovered ones.
    app.publish("chat:rec", json!("live")).await;
    let live = client.next_pub("chat:rec").await;
    assert_eq!(live["offset"], json!(offset + 4));
}

#[tokio::test]
async fn recovery_is_all_or_nothing() {
    let app = TestApp::start().await;
    let first = app.publish("chat:gap", json!(0)).await;
    let epoch = first["epoch"].as_str().expect("epoch").to_owned();
    // history_size is 10: after 12 more, offset 1 is no longer enough to recover from.
    for i in 1..=12 {
        app.publish("chat:gap", json!(i)).await;
    }
    let mut client = app.client("alice").await;
    let reply = client
        .call(json!({ "subscribe": { "channel": "chat:gap", "recoverable": true, "recover": true, "epoch": epoch, "offset": 1 } }))
        .await;
    let sub = &reply["subscribe"];
    assert_eq!(sub["was_recovering"], json!(true), "{reply}");
    assert!(sub.get("recovered").is_none(), "not recovered: {reply}");
    assert!(sub.get("publications").is_none(), "no partial recovery: {reply}");
    assert_eq!(sub["offset"], json!(13));

    // A wrong epoch is not recoverable either.
    let mut other = app.client("bob").await;
    let reply = other
        .call(json!({ "subscribe": { "channel": "chat:gap", "recoverable": true, "recover": true, "epoch": "nope", "offset": 12 } }))
        .await;
    assert!(reply["subscribe"].get("recovered").is_none(), "{reply}");
}

/// Subscribe flag bit 2 (the SDKs set it when a `getState` callback is configured): a position
/// that cannot be recovered is refused with 112 and the client is not subscribed, so it can
/// reload its state and subscribe again on the same connection.
#[tokio::test]
async fn reject_unrecovered_flag_answers_112_and_leaves_no_subscription() {
    let app = TestApp::start().await;
    let first = app.publish("chat:state", json!(0)).await;
    let epoch = first["epoch"].as_str().expect("epoch").to_owned();
    for i in 1..=12 {
        app.publish("chat:state", json!(i)).await;
    }
    let mut client = app.client("alice").await;
    let gone = json!({ "subscribe": { "channel": "chat:state", "recoverable": true, "recover": true,
        "epoch": epoch, "offset": 1, "flag": 3 } });
    let reply = client.call(gone.clone()).await;
    assert_eq!(reply["error"]["code"], json!(112), "{reply}");
    assert_eq!(reply["error"]["message"], json!("unrecoverable position"), "{reply}");
    assert!(reply.get("subscribe").is_none(), "{reply}");
    // Not subscribed: publications do not reach it, and a new subscribe is not 105.
    app.publish("chat:state", json!("not for alice")).await;
    client.expect_silence(std::time::Duration::from_millis(200)).await;
    let (_, stats) = app.api("presence_stats", json!({ "channel": "chat:state" })).await;
    assert_eq!(stats["result"]["num_clients"], json!(0), "{stats}");
    // The reloaded state's position recovers what came after it.
    let reply = client
        .call(json!({ "subscribe": { "channel": "chat:state", "recoverable": true, "recover": true,
            "epoch": epoch, "offset": 12, "flag": 3 } }))
        .await;
    assert_eq!(reply["subscribe"]["recovered"], json!(true), "{reply}");
    let recovered: Vec<_> = reply["subscribe"]["publications"].as_array().expect("publications").clone();
    assert_eq!(recovered.iter().map(|p| p["data"].clone()).collect::<Vec<_>>(), [json!(12), json!("not for alice")]);

    // Without the flag the same position is answered `recovered: false`, subscribed.
    let mut bob = app.client("bob").await;
    let mut plain = gone.clone();
    plain["subscribe"]["flag"] = json!(1);
    let reply = bob.call(plain).await;
    assert_eq!(reply["subscribe"]["was_recovering"], json!(true), "{reply}");
    assert!(reply["subscribe"].get("recovered").is_none(), "{reply}");
}

/// An empty epoch with an offset recovers in whatever epoch the stream has (centrifuge-python
/// sends it after `get_state` returned a position without an epoch).
#[tokio::test]
async fn empty_epoch_recovers_from_the_offset() {
    let app = TestApp::start().await;
    for i in 1..=3 {
        app.publish("chat:noepoch", json!(i)).await;
    }
    let mut client = app.client("alice").await;
    let reply = client
        .call(json!({ "subscribe": { "channel": "chat:noepoch", "recoverable": true, "recover": true,
            "epoch": "", "offset": 0, "flag": 3 } }))
        .await;
    let sub = &reply["subscribe"];
    assert_eq!(sub["recovered"], json!(true), "{reply}");
    let data: Vec<_> =
        sub["publications"].as_array().expect("publications").iter().map(|p| p["data"].clone()).collect();
    assert_eq!(data, [json!(1), json!(2), json!(3)]);
}

#[tokio::test]
async fn api_history_remove_and_idempotent_publish() {
    let app = TestApp::start().await;
    let (_, first) = app.api("publish", json!({ "channel": "chat:idem", "data": 1, "idempotency_key": "k1" })).await;
    let (_, again) = app.api("publish", json!({ "channel": "chat:idem", "data": 1, "idempotency_key": "k1" })).await;
    assert_eq!(first["result"]["offset"], json!(1));
    assert_eq!(again["result"], first["result"], "same key, same result, no second publication");
    let (_, body) = app.api("history", json!({ "channel": "chat:idem", "limit": -1 })).await;
    assert_eq!(body["result"]["publications"].as_array().map(Vec::len), Some(1), "{body}");

    let (_, body) = app.api("history_remove", json!({ "channel": "chat:idem" })).await;
    assert_eq!(body, json!({ "result": {} }));
    let (_, body) = app.api("history", json!({ "channel": "chat:idem", "limit": -1 })).await;
    assert!(body["result"].get("publications").is_none_or(|p| p.as_array().is_some_and(Vec::is_empty)), "{body}");
    assert_eq!(body["result"]["offset"], json!(1), "position survives history_remove");
}
