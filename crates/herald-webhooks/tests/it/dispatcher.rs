//! End-to-end dispatcher scenarios: a store with an app, an endpoint pointing at a
//! `TestReceiver`, messages, and a running dispatcher. Each scenario takes the store as
//! `Arc<dyn Store>` so it runs against every backend (see `main.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use herald_core::config::WebhooksConfig;
use herald_store::{
    AttemptFilter, AttemptStatus, DeliveryStatus, Endpoint, EndpointHealth, ErrorClass, Message, NewApp, NewEndpoint,
    NewMessage, Order, PageRequest, Store, now_ms,
};
use herald_webhooks::{Dispatcher, DispatcherHandle, signing};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::support::{Reply, SECRET, TestReceiver, eventually, test_config};

const WAIT: Duration = Duration::from_secs(10);

struct Running {
    handle: DispatcherHandle,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    fn start(store: &Arc<dyn Store>, config: WebhooksConfig) -> Running {
        let dispatcher = Dispatcher::new(Arc::clone(store), config).expect("dispatcher builds");
        let handle = dispatcher.handle();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(dispatcher.run(shutdown.clone()));
        Running { handle, shutdown, task }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task).await.expect("stops in time").expect("does not panic");
    }
}

async fn app_and_endpoint(store: &Arc<dyn Store>, url: &str, tweak: impl FnOnce(&mut NewEndpoint)) -> Endpoint {
    let app = store.create_app(NewApp { name: "test app".to_owned(), ..NewApp::default() }).await.expect("app created");
    let mut new = NewEndpoint {
        uid: None,
        url: url.to_owned(),
        description: "test endpoint".to_owned(),
        version: 1,
        disabled: false,
        event_types: None,
        channels: None,
        secret: SECRET.to_owned(),
        headers: BTreeMap::new(),
        rate_limit: None,
        max_concurrency: 1,
        metadata: BTreeMap::new(),
    };
    tweak(&mut new);
    store.create_endpoint(&app.id, new).await.expect("endpoint created")
}

async fn publish(store: &Arc<dyn Store>, app_id: &str, n: usize) -> Vec<Message> {
    let mut messages = Vec::new();
    for idx in 0..n {
        let payload = format!("{{\"type\":\"order.created\",\"data\":{{\"seq\":{idx}}}}}");
        let (message, created) = store
            .create_message(NewMessage {
                app_id: app_id.to_owned(),
                event_id: None,
                event_type: "order.created".to_owned(),
                payload: Bytes::from(payload),
                channels: None,
            })
            .await
            .expect("message created");
        assert!(created);
        messages.push(message);
    }
    messages
}

async fn attempts_oldest_first(
    store: &Arc<dyn Store>,
    endpoint: &Endpoint,
    msg: &Message,
) -> Vec<herald_store::Attempt> {
    let page = store
        .list_attempts(
            &endpoint.app_id,
            AttemptFilter::Message(msg.id.clone()),
            PageRequest::first(50, Order::Descending),
        )
        .await
        .expect("attempts listed");
    let mut attempts = page.data;
    attempts.reverse();
    attempts
}

async fn delivery_status(store: &Arc<dyn Store>, msg: &Message) -> DeliveryStatus {
    let deliveries = store.list_deliveries_for_message(&msg.app_id, &msg.id).await.expect("deliveries listed");
    assert_eq!(deliveries.len(), 1);
    deliveries[0].status
}

async fn endpoint_now(store: &Arc<dyn Store>, endpoint: &Endpoint) -> Endpoint {
    store.get_endpoint(&endpoint.app_id, &endpoint.id).await.expect("readable").expect("exists")
}

/// Every message arrives once, signed, in publication order.
pub async fn delivers_in_order_signed(store: Arc<dyn Store>) {
    let receiver = TestReceiver::start([]).await;
    let endpoint = app_and_endpoint(&store, &receiver.url(), |_| {}).await;
    let messages = publish(&store, &endpoint.app_id, 5).await;
    let running = Running::start(&store, test_config());

    let received = receiver.wait_for(5, WAIT).await;
    let ids: Vec<&str> = received.iter().map(|r| r.header("webhook-id")).collect();
    let expected: Vec<&str> = messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, expected, "in publication order");
    for (request, message) in received.iter().zip(&messages) {
        assert_eq!(request.body, message.payload, "the exact payload bytes");
        let timestamp: i64 = request.header("webhook-timestamp").parse().expect("integer seconds");
        signing::verify(
            &message.id,
            timestamp,
            &request.body,
            request.header("webhook-signature"),
            &[SECRET],
            now_ms() / 1000,
        )
        .expect("signature verifies");
    }
    for message in &messages {
        eventually(WAIT, "the delivery is recorded as a success", || async {
            delivery_status(&store, message).await == DeliveryStatus::Success
        })
        .await;
        let attempts = attempts_oldest_first(&store, &endpoint, message).await;
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].status, AttemptStatus::Success);
        assert_eq!(attempts[0].response_status_code, 200);
        assert_eq!(attempts[0].error_class, None);
    }
    running.stop().await;
    assert_eq!(receiver.received().len(), 5, "nothing is sent twice");
}

/// 500, 500, then 200: three attempts recorded, the same webhook-id each time, and success; the
/// endpoint is failing after the first failure and healthy again after the success.
pub async fn retries_until_success(store: Arc<dyn Store>) {
    let receiver = TestReceiver::start([Reply::Status(500), Reply::Body(500, "oops".to_owned())]).await;
    let endpoint = app_and_endpoint(&store, &receiver.url(), |_| {}).await;
    let message = publish(&store, &endpoint.app_id, 1).await.remove(0);
    let running = Running::start(&store, test_config());

    let received = receiver.wait_for(3, WAIT).await;
    assert!(received.iter().all(|r| r.header("webhook-id") == message.id));
    // The retry schedule is 100 ms: each retry comes at least that long after the previous.
    for pair in received.windows(2) {
        assert!(pair[1].at - pair[0].at >= Duration::from_millis(90), "{:?}", pair[1].at - pair[0].at);
    }
    eventually(WAIT, "the delivery succeeds", || async {
        delivery_status(&store, &message).await == DeliveryStatus::Success
    })
    .await;
    let attempts = attempts_oldest_first(&store, &endpoint, &message).await;
    let summary: Vec<(AttemptStatus, u16)> = attempts.iter().map(|a| (a.status, a.response_status_code)).collect();
    assert_eq!(summary, [(AttemptStatus::Fail, 500), (AttemptStatus::Fail, 500), (AttemptStatus::Success, 200)]);
    assert_eq!(attempts[0].error_class, Some(ErrorClass::Receiver));
    assert_eq!(attempts[1].response, "oops");
    eventually(WAIT, "the endpoint is healthy again", || async {
        endpoint_now(&store, &endpoint).await.failing_since.is_none()
    })
    .await;
    running.stop().await;
}

/// The schedule runs out: the delivery is dead after 1 + retries attempts.
pub async fn dies_when_the_schedule_runs_out(store: Arc<dyn Store>) {
    let receiver = TestReceiver::start(std::iter::repeat_n(Reply::Status(503), 10)).await;
    let endpoint = app_and_endpoint(&store, &receiver.url(), |_| {}).await;
    let message = publish(&store, &endpoint.app_id, 1).await.remove(0);
    let config = WebhooksConfig { retry_schedule: vec![Duration::from_millis(50); 2], ..test_config() };
    let running = Running::start(&store, config);

    eventually(WAIT, "the delivery is dead", || async {
        delivery_status(&store, &message).await == DeliveryStatus::Failed
    })
    .await;
    assert_eq!(attempts_oldest_first(&store, &endpoint, &message).await.len(), 3);
    let endpoint_after = endpoint_now(&store, &endpoint).await;
    assert!(endpoint_after.failing_since.is_some(), "failing, not yet disabled");
    assert!(!endpoint_after.disabled);
    running.stop().await;
    assert_eq!(receiver.received().len(), 3);
}

/// 410 Gone disables the endpoint after one attempt; its other deliveries are not sent.
pub async fn gone_disables_the_endpoint(store: Arc<dyn Store>) {
    let receiver = TestReceiver::start([Reply::Status(410)]).await;
    let endpoint = app_and_endpoint(&store, &receiver.url(), |_| {}).await;
    let mut messages = publish(&store, &endpoint.app_id, 2).await;
    let (message, later) = (messages.remove(0), messages.remove(0));
    let running = Running::start(&store, test_config());

    // The endpoint is disabled before the attempt is recorded, so that the next message is
    // never claimed for it in between.
    eventually(WAIT, "the endpoint is disabled and the attempt recorded", || async {
        endpoint_now(&store, &endpoint).await.disabled
            && delivery_status(&store, &message).await == DeliveryStatus::Failed
    })
    .await;
    let disabled = endpoint_now(&store, &endpoint).await;
    assert!(disabled.disabled_reason.as_deref().unwrap_or("").contains("410"), "{:?}", disabled.disabled_reason);
    assert_eq!(delivery_status(&store, &message).await, DeliveryStatus::Failed);
    let attempts = attempts_oldest_first(&store, &endpoint, &message).await;
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].response_status_code, 410);
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.stop().await;
    assert_eq!(receiver.received().len(), 1);
    assert!(attempts_oldest_first(&store, &endpoint, &later).await.is_empty());
    assert_eq!(delivery_status(&store, &later).await, DeliveryStatus::Pending);
}

/// A final 4xx is not retried (with the default `retry_client_errors = false`).
pub async fn client_errors_are_final(store: Arc<dyn Store>) {
    let receiver = TestReceiver::start([Reply::Status(400)]).await;
    let endpoint = app_and_endpoint(&store, &receiver.url(), |_| {}).await;
    let message = publish(&store, &endpoint.app_id, 1).await.remove(0);
    let running = Running::start(&store, test_config());

    eventually(WAIT, "the delivery is dead", || async {
        delivery_status(&store, &message).await == DeliveryStatus::Failed
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(attempts_oldest_first(&store, &endpoint, &message).await.len(), 1);
    running.stop().await;
}

/// A receiver that never answers times out; the retry succeeds.
pub async fn hanging_receiver_times_out_and_retries(store: Arc<dyn Store>) {
    let receiver = TestReceiver::start([Reply::Hang]).await;
    let endpoint = app_and_endpoint(&store, &receiver.url(), |_| {}).await;
    let message = publish(&store, &endpoint.app_id, 1).await.remove(0);
    let config =
        WebhooksConfig { request_timeout: Duration::from_millis(300), lease: Duration::from_secs(3), ..test_config() };
    let running = Running::start(&store, config);

    eventually(WAIT, "the delivery succeeds", || async {
        delivery_status(&store, &message).await == DeliveryStatus::Success
    })
    .await;
    let attempts = attempts_oldest_first(&store, &endpoint, &message).await;
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].status, AttemptStatus::Fail);
    assert_eq!(attempts[0].response_status_code, 0);
    assert_eq!(attempts[0].error_class, Some(ErrorClass::Network));
    assert!(attempts[0].response_duration_ms >= 300, "{}", attempts[0].response_duration_ms);
    assert_eq!(attempts[1].status, AttemptStatus::Success);
    running.stop().await;
}

/// An endpoint failing for longer than `disable_after` is disabled at its next failure.
pub async fn failing_too_long_disables(store: Arc<dyn Store>) {
    let receiver = TestReceiver::start([Reply::Status(500)]).await;
    let endpoint = app_and_endpoint(&store, &receiver.url(), |_| {}).await;
    store
        .set_endpoint_health(&endpoint.id, EndpointHealth::Failing { at: now_ms() - 10_000 })
        .await
        .expect("health recorded");
    let message = publish(&store, &endpoint.app_id, 1).await.remove(0);
    let config = WebhooksConfig { disable_after: Duration::from_secs(5), ..test_config() };
    let running = Running::start(&store, config);

    // Disabled first, then the attempt recorded (see gone_disables_the_endpoint).
    eventually(WAIT, "the endpoint is disabled and the delivery failed", || async {
        endpoint_now(&store, &endpoint).await.disabled
            && delivery_status(&store, &message).await == DeliveryStatus::Failed
    })
    .await;
    running.stop().await;
    assert_eq!(receiver.received().len(), 1);
}

/// `notify` starts a delivery right away, long before the poll interval.
pub async fn notify_wakes_the_dispatcher(store: Arc<dyn Store>) {
    let receiver = TestReceiver::start([]).await;
    let endpoint = app_and_endpoint(&store, &receiver.url(), |_| {}).await;
    let config = WebhooksConfig { poll_interval: Duration::from_secs(60), ..test_config() };
    let running = Running::start(&store, config);
    // Let the first (empty) claim pass, so only a notification can find the message.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let published = Instant::now();
    publish(&store, &endpoint.app_id, 3).await;
    running.handle.notify();
    let received = receiver.wait_for(3, Duration::from_secs(5)).await;
    // Settling each in-order delivery wakes the loop for the next one, too.
    assert!(received[2].at - published < Duration::from_secs(2), "{:?}", received[2].at - published);
    running.stop().await;
}

/// At most `max_concurrency` requests to one endpoint at a time.
pub async fn per_endpoint_concurrency(store: Arc<dyn Store>) {
    let receiver = TestReceiver::start(std::iter::repeat_n(Reply::Slow(Duration::from_millis(200)), 6)).await;
    let endpoint = app_and_endpoint(&store, &receiver.url(), |e| e.max_concurrency = 2).await;
    let messages = publish(&store, &endpoint.app_id, 6).await;
    let running = Running::start(&store, test_config());

    receiver.wait_for(6, WAIT).await;
    for message in &messages {
        eventually(WAIT, "delivered", || async { delivery_status(&store, message).await == DeliveryStatus::Success })
            .await;
    }
    assert_eq!(receiver.max_in_flight(), 2);
    running.stop().await;
}

/// At most `rate_limit` deliveries per second to one endpoint; held-back deliveries are sent
/// later, none is lost or failed.
pub async fn per_endpoint_rate_limit(store: Arc<dyn Store>) {
    let receiver = TestReceiver::start([]).await;
    let endpoint = app_and_endpoint(&store, &receiver.url(), |e| {
        e.max_concurrency = 10;
        e.rate_limit = Some(4);
    })
    .await;
    let messages = publish(&store, &endpoint.app_id, 8).await;
    let running = Running::start(&store, test_config());

    let received = receiver.wait_for(8, WAIT).await;
    // A burst of 4, then one every 250 ms: the 8th comes at least ~1 s after the first.
    let spread = received[7].at - received[0].at;
    assert!(spread >= Duration::from_millis(900), "{spread:?}");
    for message in &messages {
        eventually(WAIT, "delivered", || async { delivery_status(&store, message).await == DeliveryStatus::Success })
            .await;
        assert_eq!(attempts_oldest_first(&store, &endpoint, message).await.len(), 1);
    }
    running.stop().await;
}

/// Shutdown waits for the request in flight and records it.
pub async fn shutdown_finishes_requests_in_flight(store: Arc<dyn Store>) {
    let receiver = TestReceiver::start([Reply::Slow(Duration::from_millis(500))]).await;
    let endpoint = app_and_endpoint(&store, &receiver.url(), |_| {}).await;
    let message = publish(&store, &endpoint.app_id, 1).await.remove(0);
    let running = Running::start(&store, test_config());

    receiver.wait_for(1, WAIT).await;
    let stopping = Instant::now();
    running.stop().await;
    assert!(stopping.elapsed() >= Duration::from_millis(300), "waited for the request: {:?}", stopping.elapsed());
    assert_eq!(delivery_status(&store, &message).await, DeliveryStatus::Success);
}

/// Without `allow_networks`, a loopback endpoint is refused at send time: the attempt is recorded
/// as our error and nothing reaches the receiver.
pub async fn refuses_loopback_without_allow_networks(store: Arc<dyn Store>) {
    let receiver = TestReceiver::start([]).await;
    let endpoint = app_and_endpoint(&store, &receiver.url(), |_| {}).await;
    let message = publish(&store, &endpoint.app_id, 1).await.remove(0);
    let config = WebhooksConfig { allow_networks: Vec::new(), retry_schedule: Vec::new(), ..test_config() };
    let running = Running::start(&store, config);

    eventually(WAIT, "the delivery is dead", || async {
        delivery_status(&store, &message).await == DeliveryStatus::Failed
    })
    .await;
    let attempts = attempts_oldest_first(&store, &endpoint, &message).await;
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].error_class, Some(ErrorClass::Ours));
    assert!(attempts[0].response.contains("loopback"), "{}", attempts[0].response);
    running.stop().await;
    assert!(receiver.received().is_empty());
}

/// Deliveries the rate limit would hold past their lease are dropped from memory unsent, and
/// claimed again when the lease ends: each message still arrives exactly once.
pub async fn rate_limited_past_the_lease_are_deferred(store: Arc<dyn Store>) {
    let receiver = TestReceiver::start([]).await;
    let endpoint = app_and_endpoint(&store, &receiver.url(), |e| {
        e.max_concurrency = 10;
        e.rate_limit = Some(2);
    })
    .await;
    let messages = publish(&store, &endpoint.app_id, 4).await;
    // A delivery must start within (lease - request_timeout) / 2 = 450 ms of its claim; the
    // third and fourth would wait 500 ms and 1 s for the rate limit.
    let config = WebhooksConfig {
        lease: Duration::from_millis(1200),
        request_timeout: Duration::from_millis(300),
        ..test_config()
    };
    let running = Running::start(&store, config);

    let received = receiver.wait_for(4, WAIT).await;
    // Two at once (the burst), two after the lease of the deferred ones ran out.
    assert!(received[2].at - received[0].at >= Duration::from_millis(1000), "{:?}", received[2].at - received[0].at);
    for message in &messages {
        eventually(WAIT, "delivered", || async { delivery_status(&store, message).await == DeliveryStatus::Success })
            .await;
        assert_eq!(attempts_oldest_first(&store, &endpoint, message).await.len(), 1);
    }
    running.stop().await;
    let mut ids: Vec<String> = receiver.received().iter().map(|r| r.header("webhook-id").to_owned()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "each message exactly once");
    assert_eq!(receiver.received().len(), 4);
}
