//! Durable channels: stored before acknowledged, recoverable across a restart.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{TestApp, base_config};

#[tokio::test]
async fn durable_history_and_recovery_survive_a_restart() {
    let app = TestApp::start().await;
    let mut client = app.client("alice").await;
    let reply = client.call(json!({ "subscribe": { "channel": "durable:orders", "recoverable": true } })).await;
    let epoch = reply["subscribe"]["epoch"]
        .as_str()
        .unwrap_or_else(|| panic!("durable channels are positioned: {reply}"))
        .to_owned();

    let first = app.publish("durable:orders", json!({ "n": 1 })).await;
    assert_eq!(first["offset"], json!(1));
    assert_eq!(first["epoch"], json!(epoch));
    assert_eq!(client.next_pub("durable:orders").await["data"], json!({ "n": 1 }));
    drop(client);

    // Restart on the same data; publish while the client is away.
    let data_dir = app.stop().await;
    let app = TestApp::start_in(base_config(), data_dir).await;
    for n in 2..=4 {
        let result = app.publish("durable:orders", json!({ "n": n })).await;
        assert_eq!(result["epoch"], json!(epoch), "the epoch survives the restart");
        assert_eq!(result["offset"], json!(n));
    }

    let mut client = app.client("alice").await;
    let reply = client
        .call(json!({ "subscribe": { "channel": "durable:orders", "recoverable": true, "recover": true, "epoch": epoch, "offset": 1 } }))
        .await;
    let sub = &reply["subscribe"];
    assert_eq!(sub["recovered"], json!(true), "{reply}");
    let data: Vec<_> = sub["publications"].as_array().expect("pubs").iter().map(|p| p["data"].clone()).collect();
    assert_eq!(data, vec![json!({ "n": 2 }), json!({ "n": 3 }), json!({ "n": 4 })]);

    // Live publications continue in order after the recovered ones.
    app.publish("durable:orders", json!({ "n": 5 })).await;
    let live = client.next_pub("durable:orders").await;
    assert_eq!(live["offset"], json!(5));

    let (_, body) = app.api("history", json!({ "channel": "durable:orders", "limit": -1 })).await;
    let offsets: Vec<u64> = body["result"]["publications"]
        .as_array()
        .expect("pubs")
        .iter()
        .map(|p| p["offset"].as_u64().expect("offset"))
        .collect();
    assert_eq!(offsets, vec![1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn concurrent_durable_publishes_reach_subscribers_in_offset_order() {
    let app = TestApp::start().await;
    let mut client = app.client("alice").await;
    client.call(json!({ "subscribe": { "channel": "durable:race" } })).await;
    let mut tasks = Vec::new();
    for publisher in 0..8 {
        let http = app.http.clone();
        let url = format!("http://{}/api/publish", app.addr);
        tasks.push(tokio::spawn(async move {
            for n in 0..25 {
                let body = json!({ "channel": "durable:race", "data": { "p": publisher, "n": n } });
                let response = http
                    .post(&url)
                    .header("X-API-Key", crate::helpers::API_KEY)
                    .json(&body)
                    .send()
                    .await
                    .expect("publish");
                assert!(response.status().is_success());
            }
        }));
    }
    for task in tasks {
        task.await.expect("publisher");
    }
    for expected in 1..=200u64 {
        let publication = client.next_pub("durable:race").await;
        assert_eq!(publication["offset"], json!(expected));
    }
}

#[tokio::test]
async fn client_publish_to_a_durable_channel_is_stored() {
    let app = TestApp::start().await;
    let mut client = app.client("alice").await;
    client.call(json!({ "subscribe": { "channel": "durable:chat" } })).await;
    let reply = client.call(json!({ "publish": { "channel": "durable:chat", "data": { "text": "kept" } } })).await;
    assert!(reply.get("publish").is_some(), "{reply}");
    let data_dir = app.stop().await;
    let app = TestApp::start_in(base_config(), data_dir).await;
    let (_, body) = app.api("history", json!({ "channel": "durable:chat", "limit": -1 })).await;
    let publications = body["result"]["publications"].as_array().expect("pubs");
    assert_eq!(publications.len(), 1, "{body}");
    assert_eq!(publications[0]["data"], json!({ "text": "kept" }));
    assert_eq!(publications[0]["info"]["user"], json!("alice"));
}

#[tokio::test]
async fn a_command_waiting_on_the_store_does_not_hold_up_pushes() {
    let app = TestApp::start().await;
    let mut client = app.client("alice").await;
    client.call(json!({ "subscribe": { "channel": "news" } })).await;
    // Subscribers may publish to the durable namespace (as in `base_config`).
    client.call(json!({ "subscribe": { "channel": "durable:slow" } })).await;

    // Another process holds the database's write lock: the durable publish below waits for it.
    let lock = rusqlite::Connection::open(app.data_dir.join("herald.db")).expect("open the database");
    lock.execute_batch("BEGIN IMMEDIATE").expect("take the write lock");
    client.send_text(r#"{"id":900,"publish":{"channel":"durable:slow","data":{"n":1}}}"#).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Meanwhile a publication to another channel reaches the same connection at once.
    app.publish("news", json!({ "breaking": true })).await;
    let push = tokio::time::timeout(Duration::from_secs(2), client.next_pub("news"))
        .await
        .expect("the push is not held up by the command waiting on the store");
    assert_eq!(push["data"], json!({ "breaking": true }));
    assert!(
        !client.backlog.iter().any(|m| m.get("id") == Some(&json!(900))),
        "the durable publish answered before the lock was released: {:?}",
        client.backlog
    );

    // Once the lock goes, the durable publish completes and is answered.
    lock.execute_batch("ROLLBACK").expect("release the lock");
    let reply = client.wait_for(|m| m.get("id") == Some(&json!(900))).await;
    assert!(reply.get("error").is_none(), "{reply}");
    let (_, body) = app.api("history", json!({ "channel": "durable:slow", "limit": -1 })).await;
    assert_eq!(body["result"]["publications"][0]["data"], json!({ "n": 1 }), "{body}");
}
