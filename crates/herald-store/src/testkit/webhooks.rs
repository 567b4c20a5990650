//! The webhook queue: fan-out, event id dedupe, claims with leases and the ordering rule,
//! attempts, resend, recovery and dead letters.

use super::Harness;
use std::collections::BTreeSet;

use crate::roles::*;
use crate::{
    AttemptFilter, AttemptStatus, ClaimedDelivery, DeliveryNext, DeliveryStatus, Endpoint, EndpointHealth,
    EndpointUpdate, Order, PageRequest, Store, StoreError, TriggerType, now_ms,
};

use super::common::{app, attempt, endpoint, endpoint_spec, message};

/// A claim time safely after every delivery created so far.
fn later() -> i64 {
    now_ms() + 1_000
}

/// An endpoint that takes up to `max_concurrency` deliveries at once (0: no limit).
async fn unordered_endpoint(store: &impl Store, app_id: &str, url: &str, max_concurrency: u32) -> Endpoint {
    let mut spec = endpoint_spec(url);
    spec.max_concurrency = max_concurrency;
    endpoint(store, app_id, spec).await
}

/// Record an attempt with `status` and `code` on a claimed delivery.
async fn record(store: &impl Store, delivery_id: i64, status: AttemptStatus, code: u16, next: DeliveryNext) {
    store.record_attempt(delivery_id, attempt(status, code), next).await.expect("record");
}

async fn claim(store: &impl Store, now: i64, limit: usize, lease_ms: i64) -> Vec<ClaimedDelivery> {
    store.claim_due_deliveries(now, limit, lease_ms).await.expect("claim")
}

async fn claim_ids(store: &impl Store, now: i64, limit: usize, lease_ms: i64) -> Vec<i64> {
    claim(store, now, limit, lease_ms).await.iter().map(|c| c.delivery.id).collect()
}

pub async fn messages_fan_out_to_matching_enabled_endpoints_only<H: Harness>() {
    let db = H::open().await;
    let store = db.store();
    let owner = app(store, None).await;
    let all = endpoint(store, &owner.id, endpoint_spec("https://a.example")).await;
    let mut spec = endpoint_spec("https://typed.example");
    spec.event_types = Some(vec!["user.created".to_owned(), "user.deleted".to_owned()]);
    let typed = endpoint(store, &owner.id, spec).await;
    let mut spec = endpoint_spec("https://eu.example");
    spec.channels = Some(vec!["eu".to_owned(), "asia".to_owned()]);
    let eu = endpoint(store, &owner.id, spec).await;
    let mut spec = endpoint_spec("https://other-type.example");
    spec.event_types = Some(vec!["invoice.paid".to_owned()]);
    endpoint(store, &owner.id, spec).await;
    let mut spec = endpoint_spec("https://disabled.example");
    spec.disabled = true;
    endpoint(store, &owner.id, spec).await;
    let mut spec = endpoint_spec("https://us-typed.example");
    spec.channels = Some(vec!["us".to_owned()]);
    spec.event_types = Some(vec!["user.created".to_owned()]);
    endpoint(store, &owner.id, spec).await;
    // Another app's endpoint never sees this app's messages.
    let stranger = app(store, None).await;
    endpoint(store, &stranger.id, endpoint_spec("https://stranger.example")).await;

    let mut with_channels = message(&owner.id, "user.created");
    with_channels.channels = Some(vec!["eu".to_owned()]);
    let (msg, _) = store.create_message(with_channels).await.expect("create");
    let targets: BTreeSet<String> = store
        .list_deliveries_for_message(&owner.id, &msg.id)
        .await
        .expect("deliveries")
        .into_iter()
        .map(|d| d.endpoint_id)
        .collect();
    assert_eq!(targets, BTreeSet::from([all.id.clone(), typed.id.clone(), eu.id.clone()]));

    // Without channels, only endpoints without a channel filter match.
    let (msg, _) = store.create_message(message(&owner.id, "user.created")).await.expect("create");
    let deliveries = store.list_deliveries_for_message(&owner.id, &msg.id).await.expect("deliveries");
    let targets: BTreeSet<String> = deliveries.iter().map(|d| d.endpoint_id.clone()).collect();
    assert_eq!(targets, BTreeSet::from([all.id.clone(), typed.id.clone()]));
    for delivery in &deliveries {
        assert_eq!(delivery.status, DeliveryStatus::Pending);
        assert_eq!(delivery.attempts, 0);
        assert_eq!(delivery.trigger, TriggerType::Scheduled);
        assert_eq!(delivery.next_attempt_at, Some(msg.created_at));
        assert_eq!(delivery.msg_id, msg.id);
        assert_eq!(delivery.app_id, owner.id);
    }
    assert_eq!(store.delivery_counts().await.expect("counts").pending, 5);
}

pub async fn an_event_id_is_used_once_per_app<H: Harness>() {
    let db = H::open().await;
    let store = db.store();
    let owner = app(store, None).await;
    endpoint(store, &owner.id, endpoint_spec("https://a.example")).await;
    let mut new = message(&owner.id, "user.created");
    new.event_id = Some("evt-42".to_owned());
    let (first, fresh) = store.create_message(new.clone()).await.expect("create");
    assert!(fresh);
    new.payload = bytes::Bytes::from_static(b"{\"other\":true}");
    let (again, fresh) = store.create_message(new).await.expect("create again");
    assert!(!fresh);
    assert_eq!(again, first);
    assert_eq!(store.delivery_counts().await.expect("counts").pending, 1, "no second delivery");
    assert!(matches!(store.create_message(message("app_missing", "x")).await, Err(StoreError::NotFound(_))));
}

pub async fn an_ordered_endpoint_gets_one_delivery_at_a_time_in_message_order<H: Harness>() {
    let db = H::open().await;
    let store = db.store();
    let owner = app(store, None).await;
    let ordered = endpoint(store, &owner.id, endpoint_spec("https://ordered.example")).await;
    let mut msg_ids = Vec::new();
    for _ in 0..3 {
        msg_ids.push(store.create_message(message(&owner.id, "user.created")).await.expect("create").0.id);
    }
    let t = later();
    let claimed = claim(store, t, 10, 30_000).await;
    assert_eq!(claimed.len(), 1, "only the head of an ordered endpoint");
    let head = &claimed[0];
    assert_eq!(head.message.id, msg_ids[0]);
    assert_eq!(head.endpoint.id, ordered.id);
    assert_eq!(head.delivery.status, DeliveryStatus::Sending);
    assert_eq!(&head.message.payload[..], br#"{"hello":"world"}"#);
    assert!(claim_ids(store, t, 10, 30_000).await.is_empty(), "nothing while the head is in flight");

    record(store, head.delivery.id, AttemptStatus::Success, 200, DeliveryNext::Succeeded).await;
    let second = claim(store, t, 10, 30_000).await;
    assert_eq!(second.iter().map(|c| c.message.id.clone()).collect::<Vec<_>>(), vec![msg_ids[1].clone()]);

    // A retry later keeps the head in place: the third message waits behind it.
    record(store, second[0].delivery.id, AttemptStatus::Fail, 500, DeliveryNext::RetryAt(t + 5_000)).await;
    assert!(claim_ids(store, t + 4_999, 10, 30_000).await.is_empty());
    assert_eq!(claim_ids(store, t + 5_000, 10, 30_000).await, vec![second[0].delivery.id]);
    record(store, second[0].delivery.id, AttemptStatus::Fail, 500, DeliveryNext::Dead).await;
    let third = claim(store, t + 5_000, 10, 30_000).await;
    assert_eq!(third.iter().map(|c| c.message.id.clone()).collect::<Vec<_>>(), vec![msg_ids[2].clone()]);
}

pub async fn an_unordered_endpoint_gets_everything_due_at_once<H: Harness>() {
    let db = H::open().await;
    let store = db.store();
    let owner = app(store, None).await;
    unordered_endpoint(store, &owner.id, "https://parallel.example", 8).await;
    for _ in 0..5 {
        store.create_message(message(&owner.id, "user.created")).await.expect("create");
    }
    let t = later();
    assert_eq!(claim_ids(store, t, 3, 30_000).await.len(), 3, "the limit holds");
    assert_eq!(claim_ids(store, t, 10, 30_000).await.len(), 2, "the rest");
    assert!(claim_ids(store, t, 10, 30_000).await.is_empty());
    let counts = store.delivery_counts().await.expect("counts");
    assert_eq!((counts.pending, counts.sending), (0, 5));
}

pub async fn an_expired_lease_makes_a_delivery_claimable_again<H: Harness>() {
    let db = H::open().await;
    let store = db.store();
    let owner = app(store, None).await;
    endpoint(store, &owner.id, endpoint_spec("https://ordered.example")).await;
    store.create_message(message(&owner.id, "a")).await.expect("create");
    store.create_message(message(&owner.id, "b")).await.expect("create");
    let t = later();
    let first = claim_ids(store, t, 10, 1_000).await;
    assert_eq!(first.len(), 1);
    assert!(claim_ids(store, t + 999, 10, 1_000).await.is_empty(), "lease still live");
    // The worker died: once the lease ends the same delivery (still the head) is claimed again.
    assert_eq!(claim_ids(store, t + 1_000, 10, 1_000).await, first);
    let claimed = claim(store, t + 5_000, 10, 1_000).await;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].delivery.id, first[0]);
    assert_eq!(claimed[0].delivery.attempts, 0);
}

pub async fn record_attempt_moves_the_delivery_and_lists_attempts<H: Harness>() {
    let db = H::open().await;
    let store = db.store();
    let owner = app(store, None).await;
    let target = unordered_endpoint(store, &owner.id, "https://parallel.example", 0).await;
    let (msg, _) = store.create_message(message(&owner.id, "user.created")).await.expect("create");
    let t = later();
    let delivery_id = claim_ids(store, t, 1, 30_000).await[0];

    let mut failed = attempt(AttemptStatus::Fail, 503);
    failed.error_class = Some(crate::ErrorClass::Receiver);
    let recorded = store.record_attempt(delivery_id, failed, DeliveryNext::RetryAt(t + 10_000)).await.expect("record");
    assert!(recorded.id.starts_with("atmpt_"));
    assert_eq!((recorded.msg_id.as_str(), recorded.endpoint_id.as_str()), (msg.id.as_str(), target.id.as_str()));
    let delivery = store.list_deliveries_for_message(&owner.id, &msg.id).await.expect("list").remove(0);
    assert_eq!(delivery.status, DeliveryStatus::Pending);
    assert_eq!(delivery.attempts, 1);
    assert_eq!(delivery.next_attempt_at, Some(t + 10_000));
    assert!(claim_ids(store, t + 9_999, 10, 30_000).await.is_empty());
    assert_eq!(claim_ids(store, t + 10_000, 10, 30_000).await, vec![delivery_id]);

    record(store, delivery_id, AttemptStatus::Success, 204, DeliveryNext::Succeeded).await;
    let delivery = store.list_deliveries_for_message(&owner.id, &msg.id).await.expect("list").remove(0);
    assert_eq!((delivery.status, delivery.attempts, delivery.next_attempt_at), (DeliveryStatus::Success, 2, None));
    assert!(claim_ids(store, t + 60_000, 10, 30_000).await.is_empty(), "finished is never due");
    // A late report from a worker whose lease ran out is kept as an attempt, but does not undo
    // the success.
    store.record_attempt(delivery_id, attempt(AttemptStatus::Fail, 0), DeliveryNext::Dead).await.expect("late");
    let delivery = store.list_deliveries_for_message(&owner.id, &msg.id).await.expect("list").remove(0);
    assert_eq!((delivery.status, delivery.attempts), (DeliveryStatus::Success, 3));

    let by_endpoint = store
        .list_attempts(&owner.id, AttemptFilter::Endpoint(target.id.clone()), PageRequest::first(10, Order::Ascending))
        .await
        .expect("attempts");
    assert_eq!(by_endpoint.data.len(), 3);
    assert_eq!(by_endpoint.data[0].response_status_code, 0, "newest first");
    assert_eq!(by_endpoint.data[1].response_status_code, 204);
    assert_eq!(by_endpoint.data[2].error_class, Some(crate::ErrorClass::Receiver));
    let by_message = store
        .list_attempts(&owner.id, AttemptFilter::Message(msg.id.clone()), PageRequest::first(2, Order::Ascending))
        .await
        .expect("attempts");
    assert_eq!(by_message.data.len(), 2);
    assert!(!by_message.done);
    let rest = store
        .list_attempts(
            &owner.id,
            AttemptFilter::Message(msg.id.clone()),
            PageRequest { limit: 2, iterator: by_message.iterator, prev: false, order: Order::Ascending },
        )
        .await
        .expect("attempts");
    assert_eq!(rest.data[0].id, recorded.id);
    assert!(rest.done);
    assert!(matches!(
        store.record_attempt(999_999, attempt(AttemptStatus::Success, 200), DeliveryNext::Succeeded).await,
        Err(StoreError::NotFound(_))
    ));
    let counts = store.delivery_counts().await.expect("counts");
    assert_eq!((counts.succeeded, counts.pending, counts.sending, counts.failed), (1, 0, 0, 0));
}

async fn kill(store: &impl Store, now: i64) -> Vec<i64> {
    let ids = claim_ids(store, now, 100, 30_000).await;
    for id in &ids {
        record(store, *id, AttemptStatus::Fail, 500, DeliveryNext::Dead).await;
    }
    ids
}

pub async fn dead_letters_are_listed_and_replayed<H: Harness>() {
    let db = H::open().await;
    let store = db.store();
    let owner = app(store, None).await;
    let target = unordered_endpoint(store, &owner.id, "https://parallel.example", 10).await;
    let other_app = app(store, None).await;
    unordered_endpoint(store, &other_app.id, "https://other.example", 10).await;
    for _ in 0..3 {
        store.create_message(message(&owner.id, "x")).await.expect("create");
    }
    store.create_message(message(&other_app.id, "x")).await.expect("create");
    let t = later();
    let dead = kill(store, t).await;
    assert_eq!(dead.len(), 4);

    let listed = store.list_dead_letters(Some(&owner.id), PageRequest::first(2, Order::Ascending)).await.expect("list");
    assert_eq!(listed.data.len(), 2);
    assert!(listed.data[0].id > listed.data[1].id, "newest first");
    assert!(listed.data.iter().all(|d| d.status == DeliveryStatus::Failed && d.app_id == owner.id));
    let rest = store
        .list_dead_letters(
            Some(&owner.id),
            PageRequest { limit: 2, iterator: listed.iterator, prev: false, order: Order::Ascending },
        )
        .await
        .expect("list");
    assert_eq!(rest.data.len(), 1);
    assert!(rest.done);
    assert_eq!(
        store.list_dead_letters(None, PageRequest::first(10, Order::Ascending)).await.expect("all").data.len(),
        4
    );

    assert_eq!(store.replay_dead_letters(Some(&owner.id), Some(&target.id)).await.expect("replay"), 3);
    let replayed = claim(store, later(), 100, 30_000).await;
    assert_eq!(replayed.len(), 3);
    assert!(replayed.iter().all(|c| c.delivery.attempts == 0 && c.delivery.app_id == owner.id));
    assert_eq!(store.replay_dead_letters(None, None).await.expect("replay the rest"), 1);
    assert!(
        store.list_dead_letters(None, PageRequest::first(10, Order::Ascending)).await.expect("all").data.is_empty()
    );
}

pub async fn recover_and_resend_queue_fresh_manual_deliveries<H: Harness>() {
    let db = H::open().await;
    let store = db.store();
    let owner = app(store, None).await;
    let target = unordered_endpoint(store, &owner.id, "https://parallel.example", 10).await;
    let mut msgs = Vec::new();
    for _ in 0..4 {
        msgs.push(store.create_message(message(&owner.id, "x")).await.expect("create").0);
        // Distinct creation times, so a window can start between two messages.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let t = later();
    let claimed = claim(store, t, 10, 30_000).await;
    // The first two die, the last two succeed.
    for c in &claimed {
        let next = if c.message.id == msgs[0].id || c.message.id == msgs[1].id {
            DeliveryNext::Dead
        } else {
            DeliveryNext::Succeeded
        };
        record(store, c.delivery.id, AttemptStatus::Fail, 500, next).await;
    }

    // Only the window [msgs[1], ...) and only the dead: one message.
    let recovered =
        store.recover_endpoint(&owner.id, &target.id, msgs[1].created_at, None, false).await.expect("recover");
    assert_eq!(recovered, 1);
    let again = claim(store, later(), 10, 30_000).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].message.id, msgs[1].id);
    assert_eq!(again[0].delivery.trigger, TriggerType::Manual);
    record(store, again[0].delivery.id, AttemptStatus::Success, 200, DeliveryNext::Succeeded).await;
    // The replaced dead delivery is no dead letter any more; the first one still is.
    let dead = store.list_dead_letters(Some(&owner.id), PageRequest::first(10, Order::Ascending)).await.expect("list");
    assert_eq!(dead.data.iter().map(|d| d.msg_id.clone()).collect::<Vec<_>>(), vec![msgs[0].id.clone()]);

    // `all` takes every finished message of the window, in message order.
    let recovered = store.recover_endpoint(&owner.id, &target.id, 0, None, true).await.expect("recover all");
    assert_eq!(recovered, 4);
    let all = claim(store, later(), 10, 30_000).await;
    assert_eq!(
        all.iter().map(|c| c.message.id.clone()).collect::<Vec<_>>(),
        msgs.iter().map(|m| m.id.clone()).collect::<Vec<_>>()
    );
    // Nothing is finished now, so nothing is recovered, and an empty window recovers nothing.
    assert_eq!(store.recover_endpoint(&owner.id, &target.id, 0, None, true).await.expect("recover"), 0);

    store.resend(&owner.id, &msgs[3].id, &target.id).await.expect("resend");
    let resent = claim(store, later(), 10, 30_000).await;
    assert_eq!(resent.len(), 1);
    assert_eq!((resent[0].message.id.as_str(), resent[0].delivery.trigger), (msgs[3].id.as_str(), TriggerType::Manual));
    assert!(matches!(store.resend(&owner.id, "msg_missing", &target.id).await, Err(StoreError::NotFound(_))));
    assert!(matches!(store.resend(&owner.id, &msgs[0].id, "ep_missing").await, Err(StoreError::NotFound(_))));
}

pub async fn a_resend_to_an_ordered_endpoint_waits_behind_its_queue<H: Harness>() {
    let db = H::open().await;
    let store = db.store();
    let owner = app(store, None).await;
    let target = endpoint(store, &owner.id, endpoint_spec("https://ordered.example")).await;
    let (first, _) = store.create_message(message(&owner.id, "x")).await.expect("create");
    let (second, _) = store.create_message(message(&owner.id, "x")).await.expect("create");
    store.resend(&owner.id, &first.id, &target.id).await.expect("resend");
    let mut order = Vec::new();
    for _ in 0..3 {
        let claimed = claim(store, later(), 10, 30_000).await;
        assert_eq!(claimed.len(), 1);
        order.push(claimed[0].message.id.clone());
        record(store, claimed[0].delivery.id, AttemptStatus::Success, 200, DeliveryNext::Succeeded).await;
    }
    assert_eq!(order, vec![first.id.clone(), second.id, first.id]);
}

pub async fn a_disabled_endpoint_keeps_its_queue_until_enabled<H: Harness>() {
    let db = H::open().await;
    let store = db.store();
    let owner = app(store, None).await;
    let target = endpoint(store, &owner.id, endpoint_spec("https://flaky.example")).await;
    store.create_message(message(&owner.id, "x")).await.expect("create");
    store.create_message(message(&owner.id, "x")).await.expect("create");
    store
        .set_endpoint_health(&target.id, EndpointHealth::Disabled { reason: "failing for 5 days".to_owned(), at: 1 })
        .await
        .expect("disable");
    assert!(claim_ids(store, later(), 10, 30_000).await.is_empty());
    // Disabled endpoints get no new deliveries either.
    store.create_message(message(&owner.id, "x")).await.expect("create");
    assert_eq!(store.delivery_counts().await.expect("counts").pending, 2);

    let enable = EndpointUpdate {
        uid: None,
        url: target.url.clone(),
        description: String::new(),
        version: 1,
        disabled: false,
        event_types: None,
        channels: None,
        headers: Default::default(),
        rate_limit: None,
        max_concurrency: 1,
        metadata: Default::default(),
    };
    store.update_endpoint(&owner.id, &target.id, enable.clone()).await.expect("enable");
    assert_eq!(claim_ids(store, later(), 10, 30_000).await.len(), 1, "ordered again: the head only");
    // Switching to unordered releases the rest at once.
    store
        .update_endpoint(&owner.id, &target.id, EndpointUpdate { max_concurrency: 5, ..enable })
        .await
        .expect("update");
    assert_eq!(claim_ids(store, later(), 10, 30_000).await.len(), 1);
}

/// Many creations and attempt records at once land in shared group commits (on PostgreSQL,
/// runs of one statement per step): each still gets its own answer, an event id is used once
/// even within one batch, an unknown app fails alone, and an ordered endpoint keeps one head,
/// in message order, while another endpoint's attempts settle beside it.
pub async fn concurrent_messages_and_attempts_keep_the_queue_rules<H: Harness>() {
    let db = H::open().await;
    let store = std::sync::Arc::new(db.store().clone());
    let owner = app(&*store, None).await;
    let ordered = endpoint(&*store, &owner.id, endpoint_spec("https://ordered.example")).await;
    let parallel = unordered_endpoint(&*store, &owner.id, "https://parallel.example", 0).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..60 {
        let store = store.clone();
        let mut new = message(if i % 12 == 5 { "app_missing" } else { &owner.id }, "user.created");
        if i % 6 == 0 {
            new.event_id = Some("evt-shared".to_owned());
        }
        tasks.spawn(async move { store.create_message(new).await });
    }
    let (mut fresh, mut shared, mut missing) = (Vec::new(), BTreeSet::new(), 0);
    while let Some(done) = tasks.join_next().await {
        match done.expect("task") {
            Ok((msg, true)) => fresh.push(msg),
            Ok((msg, false)) => {
                assert_eq!(msg.event_id.as_deref(), Some("evt-shared"));
                shared.insert(msg.id);
            }
            Err(StoreError::NotFound(_)) => missing += 1,
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    assert_eq!(missing, 5);
    // 55 for the app, 10 of them with the shared event id: one fresh, nine answered with it.
    assert_eq!(fresh.len(), 46);
    let first_shared: Vec<&str> = fresh.iter().filter(|m| m.event_id.is_some()).map(|m| m.id.as_str()).collect();
    assert_eq!(first_shared.len(), 1);
    assert_eq!(shared.iter().map(String::as_str).collect::<Vec<_>>(), first_shared);
    fresh.sort_by(|a, b| a.id.cmp(&b.id));

    // Round after round: claim everything due, record every attempt at once.
    let mut heads = Vec::new();
    let mut parallel_done = 0;
    let mut twice: Option<crate::Delivery> = None;
    let mut t = later();
    loop {
        let claimed = claim(&*store, t, 1_000, 30_000).await;
        if claimed.is_empty() {
            break;
        }
        let on_ordered: Vec<&ClaimedDelivery> = claimed.iter().filter(|c| c.endpoint.id == ordered.id).collect();
        assert!(on_ordered.len() <= 1, "one delivery in flight on an ordered endpoint, got {}", on_ordered.len());
        heads.extend(on_ordered.iter().map(|c| c.message.id.clone()));
        parallel_done += claimed.iter().filter(|c| c.endpoint.id == parallel.id).count();
        let mut records = tokio::task::JoinSet::new();
        if twice.is_none() {
            // A second report on one delivery at once (a worker whose lease ran out): both count.
            let first = claimed[0].delivery.clone();
            let store = store.clone();
            records.spawn(async move {
                store.record_attempt(first.id, attempt(AttemptStatus::Success, 200), DeliveryNext::Succeeded).await
            });
            twice = Some(first);
        }
        for claimed in claimed {
            let store = store.clone();
            records.spawn(async move {
                let id = claimed.delivery.id;
                store.record_attempt(id, attempt(AttemptStatus::Success, 200), DeliveryNext::Succeeded).await
            });
        }
        while let Some(done) = records.join_next().await {
            done.expect("task").expect("record");
        }
        t += 1;
    }
    assert_eq!(parallel_done, fresh.len(), "every message reached the unordered endpoint once");
    assert_eq!(heads, fresh.iter().map(|m| m.id.clone()).collect::<Vec<_>>(), "the ordered endpoint, in order");
    let counts = store.delivery_counts().await.expect("counts");
    assert_eq!((counts.succeeded, counts.pending, counts.sending), (2 * fresh.len() as u64, 0, 0));
    let twice = twice.expect("a first round");
    let delivery = store
        .list_deliveries_for_message(&owner.id, &twice.msg_id)
        .await
        .expect("deliveries")
        .into_iter()
        .find(|d| d.id == twice.id)
        .expect("the delivery");
    assert_eq!((delivery.status, delivery.attempts), (DeliveryStatus::Success, 2));
}
