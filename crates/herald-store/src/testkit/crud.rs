//! Round trips of the configuration side: apps, event types, endpoints, idempotency keys,
//! messages and pagination; migrations and error mapping.

use super::Harness;
use std::collections::BTreeMap;

use crate::roles::*;
use crate::{
    EndpointHealth, EndpointUpdate, IdempotentResponse, MessageFilter, NewApp, NewEventType, Order, PageRequest,
    StoreError, now_ms,
};
use bytes::Bytes;

use super::common::{app, endpoint, endpoint_spec, message};

pub async fn apps_round_trip_by_id_and_uid<H: Harness>() {
    let db = H::open().await;
    let store = db.store();
    let mut metadata = BTreeMap::new();
    metadata.insert("team".to_owned(), "payments".to_owned());
    let created = store
        .create_app(NewApp { uid: Some("acme".to_owned()), name: "Acme".to_owned(), metadata, rate_limit: Some(10) })
        .await
        .expect("create");
    assert!(created.id.starts_with("app_"));
    assert_eq!(store.get_app(&created.id).await.expect("get").as_ref(), Some(&created));
    assert_eq!(store.get_app("acme").await.expect("get by uid").as_ref(), Some(&created));
    assert_eq!(store.get_app("nope").await.expect("get missing"), None);

    let duplicate = store.create_app(NewApp { uid: Some("acme".to_owned()), ..NewApp::default() }).await;
    assert!(matches!(duplicate, Err(StoreError::Conflict(_))), "{duplicate:?}");

    let updated = store
        .update_app("acme", NewApp { uid: Some("acme2".to_owned()), name: "Acme 2".to_owned(), ..NewApp::default() })
        .await
        .expect("update");
    assert_eq!(updated.id, created.id);
    assert_eq!(updated.name, "Acme 2");
    assert_eq!(updated.rate_limit, None);
    assert!(updated.updated_at >= created.updated_at);
    assert_eq!(store.get_app("acme").await.expect("old uid"), None);

    store.delete_app(&created.id).await.expect("delete");
    assert_eq!(store.get_app(&created.id).await.expect("get deleted"), None);
    assert!(matches!(store.delete_app(&created.id).await, Err(StoreError::NotFound(_))));
    assert!(matches!(store.update_app(&created.id, NewApp::default()).await, Err(StoreError::NotFound(_))));
}

pub async fn deleting_an_app_removes_everything_under_it<H: Harness>() {
    let db = H::open().await;
    let store = db.store();
    let doomed = app(store, None).await;
    let kept = app(store, None).await;
    for owner in [&doomed, &kept] {
        endpoint(store, &owner.id, endpoint_spec("https://example.com/a")).await;
        store.create_message(message(&owner.id, "user.created")).await.expect("message");
    }
    assert_eq!(store.delivery_counts().await.expect("counts").pending, 2);
    store.delete_app(&doomed.id).await.expect("delete");
    assert_eq!(store.delivery_counts().await.expect("counts").pending, 1);
    let page = PageRequest::first(10, Order::Ascending);
    assert!(matches!(store.list_endpoints(&doomed.id, page.clone()).await, Err(StoreError::NotFound(_))));
    assert_eq!(store.list_endpoints(&kept.id, page.clone()).await.expect("list").data.len(), 1);
    assert_eq!(store.list_messages(&kept.id, page, MessageFilter::default()).await.expect("list").data.len(), 1);
}

pub async fn pagination_walks_forward_backward_and_reports_done<H: Harness>() {
    let db = H::open().await;
    let store = db.store();
    let mut ids = Vec::new();
    for _ in 0..7 {
        ids.push(app(store, None).await.id);
    }
    // Ids made in a row sort in creation order.
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, ids);

    let first = store.list_apps(PageRequest::first(3, Order::Ascending)).await.expect("page 1");
    assert_eq!(first.data.iter().map(|a| a.id.clone()).collect::<Vec<_>>(), ids[0..3]);
    assert!(!first.done);
    assert_eq!(first.prev_iterator.as_deref(), Some(ids[0].as_str()));
    let second = store
        .list_apps(PageRequest { limit: 3, iterator: first.iterator.clone(), prev: false, order: Order::Ascending })
        .await
        .expect("page 2");
    assert_eq!(second.data.iter().map(|a| a.id.clone()).collect::<Vec<_>>(), ids[3..6]);
    assert!(!second.done);
    let third = store
        .list_apps(PageRequest { limit: 3, iterator: second.iterator.clone(), prev: false, order: Order::Ascending })
        .await
        .expect("page 3");
    assert_eq!(third.data.iter().map(|a| a.id.clone()).collect::<Vec<_>>(), ids[6..7]);
    assert!(third.done);
    // Back from the third page: the second again, in ascending order.
    let back = store
        .list_apps(PageRequest { limit: 3, iterator: third.prev_iterator.clone(), prev: true, order: Order::Ascending })
        .await
        .expect("prev page");
    assert_eq!(back.data, second.data);
    // An empty page keeps the caller's place.
    let empty = store
        .list_apps(PageRequest { limit: 3, iterator: third.iterator.clone(), prev: false, order: Order::Ascending })
        .await
        .expect("empty page");
    assert!(empty.data.is_empty() && empty.done);
    assert_eq!(empty.iterator, third.iterator);

    let newest = store.list_apps(PageRequest::first(2, Order::Descending)).await.expect("descending");
    assert_eq!(newest.data.iter().map(|a| a.id.clone()).collect::<Vec<_>>(), vec![ids[6].clone(), ids[5].clone()]);
    let older = store
        .list_apps(PageRequest { limit: 10, iterator: newest.iterator, prev: false, order: Order::Descending })
        .await
        .expect("descending page 2");
    assert_eq!(older.data.len(), 5);
    assert_eq!(older.data[0].id, ids[4]);
    assert!(older.done);
}

pub async fn event_types_archive_and_expunge<H: Harness>() {
    let db = H::open().await;
    let store = db.store();
    for name in ["invoice.paid", "user.created", "user.deleted"] {
        store
            .create_event_type(NewEventType {
                name: name.to_owned(),
                description: format!("{name} happened"),
                schemas: Some(serde_json::json!({"1": {"type": "object"}})),
                ..NewEventType::default()
            })
            .await
            .expect("create");
    }
    let duplicate =
        store.create_event_type(NewEventType { name: "user.created".to_owned(), ..Default::default() }).await;
    assert!(matches!(duplicate, Err(StoreError::Conflict(_))), "{duplicate:?}");

    let fetched = store.get_event_type("user.created").await.expect("get").expect("exists");
    assert_eq!(fetched.schemas, Some(serde_json::json!({"1": {"type": "object"}})));

    let updated = store
        .update_event_type(
            "user.created",
            NewEventType {
                name: "ignored".to_owned(),
                description: "new".to_owned(),
                feature_flag: Some("beta".to_owned()),
                ..Default::default()
            },
        )
        .await
        .expect("update");
    assert_eq!((updated.name.as_str(), updated.description.as_str()), ("user.created", "new"));
    assert_eq!(updated.schemas, None);

    store.delete_event_type("user.deleted", false).await.expect("archive");
    let listed = store.list_event_types(PageRequest::first(10, Order::Ascending), false).await.expect("list");
    assert_eq!(listed.data.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["invoice.paid", "user.created"]);
    let with_archived = store.list_event_types(PageRequest::first(2, Order::Ascending), true).await.expect("list");
    assert_eq!(with_archived.data.len(), 2);
    assert_eq!(with_archived.iterator.as_deref(), Some("user.created"));
    let rest = store
        .list_event_types(
            PageRequest { limit: 2, iterator: with_archived.iterator, prev: false, order: Order::Ascending },
            true,
        )
        .await
        .expect("list");
    assert_eq!(rest.data.len(), 1);
    assert!(rest.data[0].archived);
    assert!(rest.done);

    store.delete_event_type("user.deleted", true).await.expect("expunge");
    assert_eq!(store.get_event_type("user.deleted").await.expect("get"), None);
    assert!(matches!(store.delete_event_type("user.deleted", true).await, Err(StoreError::NotFound(_))));
}

pub async fn endpoints_round_trip_update_rotate_and_health<H: Harness>() {
    let db = H::open().await;
    let store = db.store();
    let owner = app(store, Some("owner")).await;
    let mut spec = endpoint_spec("https://example.com/hook");
    spec.uid = Some("main".to_owned());
    spec.event_types = Some(vec!["user.created".to_owned()]);
    spec.channels = Some(vec!["eu".to_owned()]);
    spec.headers.insert("x-extra".to_owned(), "1".to_owned());
    let created = store.create_endpoint("owner", spec.clone()).await.expect("create");
    assert!(created.id.starts_with("ep_"));
    assert_eq!(created.app_id, owner.id);
    assert_eq!(store.get_endpoint(&owner.id, "main").await.expect("by uid").as_ref(), Some(&created));
    assert_eq!(store.get_endpoint("owner", &created.id).await.expect("by id").as_ref(), Some(&created));
    // A uid is unique within an app only.
    assert!(matches!(store.create_endpoint(&owner.id, spec.clone()).await, Err(StoreError::Conflict(_))));
    let other = app(store, None).await;
    store.create_endpoint(&other.id, spec.clone()).await.expect("same uid, other app");
    assert!(matches!(store.create_endpoint("missing-app", spec).await, Err(StoreError::NotFound(_))));

    let update = EndpointUpdate {
        uid: Some("main".to_owned()),
        url: "https://example.com/v2".to_owned(),
        description: "second".to_owned(),
        version: 2,
        disabled: false,
        event_types: None,
        channels: None,
        headers: BTreeMap::new(),
        rate_limit: Some(5),
        max_concurrency: 4,
        metadata: BTreeMap::new(),
    };
    let updated = store.update_endpoint(&owner.id, "main", update.clone()).await.expect("update");
    assert_eq!(updated.url, "https://example.com/v2");
    assert_eq!(updated.secret, created.secret, "the secret survives updates");
    assert_eq!((updated.event_types.clone(), updated.max_concurrency), (None, 4));

    let expires = now_ms() + 60_000;
    let rotated =
        store.rotate_endpoint_secret(&owner.id, &created.id, "whsec_bmV3".to_owned(), expires).await.expect("rotate");
    assert_eq!(rotated.secret, "whsec_bmV3");
    assert_eq!(rotated.previous_secrets.len(), 1);
    assert_eq!(rotated.previous_secrets[0].secret, created.secret);
    assert_eq!(rotated.previous_secrets[0].expires_at, expires);

    store.set_endpoint_health(&created.id, EndpointHealth::Failing { at: 100 }).await.expect("failing");
    store.set_endpoint_health(&created.id, EndpointHealth::Failing { at: 200 }).await.expect("still failing");
    let failing = store.get_endpoint(&owner.id, &created.id).await.expect("get").expect("exists");
    assert_eq!(failing.failing_since, Some(100), "the streak starts at the first failure");
    store.set_endpoint_health(&created.id, EndpointHealth::Healthy).await.expect("healthy");
    assert_eq!(store.get_endpoint(&owner.id, &created.id).await.expect("get").expect("exists").failing_since, None);
    store
        .set_endpoint_health(&created.id, EndpointHealth::Disabled { reason: "410 Gone".to_owned(), at: 300 })
        .await
        .expect("disable");
    let disabled = store.get_endpoint(&owner.id, &created.id).await.expect("get").expect("exists");
    assert!(disabled.disabled);
    assert_eq!(disabled.disabled_reason.as_deref(), Some("410 Gone"));
    // A user enabling it again clears Herald's reason.
    let enabled = store.update_endpoint(&owner.id, &created.id, update).await.expect("enable");
    assert!(!enabled.disabled);
    assert_eq!(enabled.disabled_reason, None);
    assert!(matches!(
        store.set_endpoint_health("ep_missing", EndpointHealth::Healthy).await,
        Err(StoreError::NotFound(_))
    ));

    let listed = store.list_endpoints(&owner.id, PageRequest::first(10, Order::Ascending)).await.expect("list");
    assert_eq!(listed.data.len(), 1);
    store.delete_endpoint(&owner.id, "main").await.expect("delete");
    assert_eq!(store.get_endpoint(&owner.id, &created.id).await.expect("get"), None);
}

pub async fn idempotency_keys_first_writer_wins_and_prune<H: Harness>() {
    let db = H::open().await;
    let store = db.store();
    let first = IdempotentResponse {
        request_hash: "h1".to_owned(),
        status: 201,
        body: Bytes::from_static(b"{}"),
        created_at: 1_000,
    };
    let second = IdempotentResponse {
        request_hash: "h2".to_owned(),
        status: 200,
        body: Bytes::from_static(b"[]"),
        created_at: 5_000,
    };
    assert_eq!(store.idempotency_get("k").await.expect("get"), None);
    store.idempotency_put("k", first.clone()).await.expect("put");
    store.idempotency_put("k", second.clone()).await.expect("put again");
    assert_eq!(store.idempotency_get("k").await.expect("get"), Some(first));
    store.idempotency_put("k2", second.clone()).await.expect("put k2");
    assert_eq!(store.idempotency_prune(2_000).await.expect("prune"), 1);
    assert_eq!(store.idempotency_get("k").await.expect("get"), None);
    assert_eq!(store.idempotency_get("k2").await.expect("get"), Some(second));
}

pub async fn messages_by_event_id_and_filtered_listing<H: Harness>() {
    let db = H::open().await;
    let store = db.store();
    let owner = app(store, None).await;
    let mut first = message(&owner.id, "user.created");
    first.event_id = Some("evt-1".to_owned());
    first.channels = Some(vec!["eu".to_owned(), "vip".to_owned()]);
    let (created, fresh) = store.create_message(first.clone()).await.expect("create");
    assert!(fresh);
    assert_eq!(store.get_message(&owner.id, "evt-1").await.expect("by event id").as_ref(), Some(&created));
    assert_eq!(store.get_message(&owner.id, &created.id).await.expect("by id").as_ref(), Some(&created));
    let other = app(store, None).await;
    assert_eq!(store.get_message(&other.id, &created.id).await.expect("other app"), None);
    // The same event id in another app is another message.
    first.app_id = other.id.clone();
    assert!(store.create_message(first).await.expect("other app").1);

    store.create_message(message(&owner.id, "user.deleted")).await.expect("create");
    let mut third = message(&owner.id, "user.created");
    third.channels = Some(vec!["us".to_owned()]);
    store.create_message(third).await.expect("create");

    let page = PageRequest::first(10, Order::Descending);
    let all = store.list_messages(&owner.id, page.clone(), MessageFilter::default()).await.expect("list");
    assert_eq!(all.data.len(), 3);
    assert_eq!(all.data[2].id, created.id, "newest first");
    let created_only = MessageFilter { event_types: Some(vec!["user.created".to_owned()]), ..Default::default() };
    assert_eq!(store.list_messages(&owner.id, page.clone(), created_only).await.expect("list").data.len(), 2);
    let eu = MessageFilter { channel: Some("eu".to_owned()), ..Default::default() };
    let eu_page = store.list_messages(&owner.id, page.clone(), eu).await.expect("list");
    assert_eq!(eu_page.data.iter().map(|m| m.id.clone()).collect::<Vec<_>>(), vec![created.id.clone()]);
    let none = MessageFilter { before: Some(created.created_at), ..Default::default() };
    assert!(store.list_messages(&owner.id, page.clone(), none).await.expect("list").data.is_empty());
    let after = MessageFilter { after: Some(created.created_at - 1), ..Default::default() };
    assert_eq!(store.list_messages(&owner.id, page, after).await.expect("list").data.len(), 3);
}
