//! The sender against a real HTTP receiver: request shape, signatures, classification of what
//! came back, and the SSRF guard at send time.

use std::sync::Arc;
use std::time::Duration;

use herald_core::config::{HeaderStyle, WebhooksConfig};
use herald_store::now_ms;
use herald_webhooks::signing;
use herald_webhooks::{AttemptResult, Guard, Sender};

use crate::support::{Reply, SECRET, TestReceiver, claimed, previous, test_config};

fn sender(config: &WebhooksConfig) -> Sender {
    let guard = Arc::new(Guard::new(&config.allow_networks).expect("valid networks"));
    Sender::new(config, guard).expect("builds")
}

// Whitespace and non-ASCII text: the body must arrive byte for byte, never re-serialized.
const PAYLOAD: &[u8] = "{ \"type\" : \"user.created\",\n  \"name\": \"Zoë ✓\" }".as_bytes();

#[tokio::test]
async fn sends_the_payload_signed_with_current_and_unexpired_previous_secrets() {
    let receiver = TestReceiver::start([Reply::Body(200, "thanks".to_owned())]).await;
    let sender = sender(&test_config());
    let now = now_ms();
    let old = signing::generate_hmac_secret();
    let expired = signing::generate_hmac_secret();
    let mut delivery = claimed(&receiver.url(), PAYLOAD);
    delivery.endpoint.previous_secrets = vec![previous(&old, now + 60_000), previous(&expired, now - 1)];
    delivery.endpoint.headers.insert("X-Tenant".to_owned(), "acme".to_owned());
    delivery.endpoint.headers.insert("Webhook-Signature".to_owned(), "v1,forged".to_owned());
    delivery.endpoint.headers.insert("content-type".to_owned(), "text/plain".to_owned());
    delivery.endpoint.headers.insert("bad header".to_owned(), "x".to_owned());

    let outcome = sender.send(&delivery, now).await;
    assert_eq!(outcome.result, AttemptResult::Status(200));
    assert_eq!(outcome.response, "thanks");
    assert!(outcome.duration > Duration::ZERO);

    let received = receiver.received();
    assert_eq!(received.len(), 1);
    let request = &received[0];
    assert_eq!(request.path, "/hook");
    assert_eq!(&request.body[..], PAYLOAD);
    assert_eq!(request.header("content-type"), "application/json");
    assert_eq!(request.header("x-tenant"), "acme");
    assert!(request.header("user-agent").starts_with("Herald-Webhooks/"));
    let msg_id = request.header("webhook-id");
    assert_eq!(msg_id, delivery.message.id);
    let timestamp: i64 = request.header("webhook-timestamp").parse().expect("integer seconds");
    assert_eq!(timestamp, now / 1000);
    let signature = request.header("webhook-signature");
    assert_eq!(request.headers.get_all("webhook-signature").iter().count(), 1);
    assert_eq!(signature.split(' ').count(), 2, "current and unexpired previous secret: {signature}");
    for key in [SECRET, old.as_str()] {
        signing::verify(msg_id, timestamp, &request.body, signature, &[key], now / 1000).expect("verifies");
    }
    assert!(signing::verify(msg_id, timestamp, &request.body, signature, &[&expired], now / 1000).is_err());
}

#[tokio::test]
async fn svix_header_style() {
    let receiver = TestReceiver::start([]).await;
    let config = WebhooksConfig { header_style: HeaderStyle::Svix, ..test_config() };
    let delivery = claimed(&receiver.url(), b"{}");
    let now = now_ms();
    assert_eq!(sender(&config).send(&delivery, now).await.result, AttemptResult::Status(200));
    let request = &receiver.received()[0];
    assert!(request.headers.get("webhook-id").is_none());
    let timestamp: i64 = request.header("svix-timestamp").parse().expect("integer seconds");
    signing::verify(
        request.header("svix-id"),
        timestamp,
        b"{}",
        request.header("svix-signature"),
        &[SECRET],
        now / 1000,
    )
    .expect("verifies");
}

#[tokio::test]
async fn ed25519_endpoints_sign_v1a() {
    let receiver = TestReceiver::start([]).await;
    let secret = signing::generate_ed25519_secret();
    let public = signing::public_key(&secret).expect("public key");
    let mut delivery = claimed(&receiver.url(), b"{\"a\":1}");
    delivery.endpoint.secret = secret;
    let now = now_ms();
    sender(&test_config()).send(&delivery, now).await;
    let request = &receiver.received()[0];
    let signature = request.header("webhook-signature");
    assert!(signature.starts_with("v1a,"), "{signature}");
    let timestamp: i64 = request.header("webhook-timestamp").parse().expect("integer seconds");
    signing::verify(request.header("webhook-id"), timestamp, &request.body, signature, &[&public], now / 1000)
        .expect("verifies with the public key");
}

#[tokio::test]
async fn keeps_a_bounded_prefix_of_the_response_and_reads_retry_after() {
    let long = "x".repeat(10_000);
    let receiver = TestReceiver::start([
        Reply::Body(500, long),
        Reply::Header(503, "retry-after", "30".to_owned()),
        Reply::Header(
            429,
            "retry-after",
            httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(120)),
        ),
    ])
    .await;
    let config = WebhooksConfig { response_body_max_bytes: 100, ..test_config() };
    let sender = sender(&config);
    let delivery = claimed(&receiver.url(), b"{}");

    let outcome = sender.send(&delivery, now_ms()).await;
    assert_eq!(outcome.result, AttemptResult::Status(500));
    assert_eq!(outcome.response.len(), 100);
    assert_eq!(outcome.retry_after, None);

    let outcome = sender.send(&delivery, now_ms()).await;
    assert_eq!(outcome.result, AttemptResult::Status(503));
    assert_eq!(outcome.retry_after, Some(Duration::from_secs(30)));

    let outcome = sender.send(&delivery, now_ms()).await;
    assert_eq!(outcome.result, AttemptResult::Status(429));
    let retry_after = outcome.retry_after.expect("an HTTP date parses");
    assert!(retry_after > Duration::from_secs(110) && retry_after <= Duration::from_secs(120), "{retry_after:?}");
}

#[tokio::test]
async fn does_not_follow_redirects() {
    let receiver =
        TestReceiver::start([Reply::Header(302, "location", "http://127.0.0.1:1/elsewhere".to_owned())]).await;
    let outcome = sender(&test_config()).send(&claimed(&receiver.url(), b"{}"), now_ms()).await;
    assert_eq!(outcome.result, AttemptResult::Status(302));
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn loopback_is_refused_without_allow_networks() {
    let receiver = TestReceiver::start([]).await;
    let strict = WebhooksConfig { allow_networks: Vec::new(), ..test_config() };
    let sender = sender(&strict);

    // An IP literal skips DNS resolvers, so the sender checks it itself.
    let outcome = sender.send(&claimed(&receiver.url(), b"{}"), now_ms()).await;
    assert_eq!(outcome.result, AttemptResult::Blocked, "{}", outcome.response);
    assert!(outcome.response.contains("loopback"), "{}", outcome.response);

    // A name goes through the guarded resolver.
    let by_name = format!("http://localhost:{}/hook", receiver.port);
    let outcome = sender.send(&claimed(&by_name, b"{}"), now_ms()).await;
    assert_eq!(outcome.result, AttemptResult::Blocked, "{}", outcome.response);

    // IPv4-mapped IPv6 is the same address.
    let mapped = format!("http://[::ffff:127.0.0.1]:{}/hook", receiver.port);
    let outcome = sender.send(&claimed(&mapped, b"{}"), now_ms()).await;
    assert_eq!(outcome.result, AttemptResult::Blocked, "{}", outcome.response);

    assert!(receiver.received().is_empty());
}

#[tokio::test]
async fn loopback_by_name_is_reached_when_allowed() {
    let receiver = TestReceiver::start([]).await;
    let by_name = format!("http://localhost:{}/hook", receiver.port);
    let outcome = sender(&test_config()).send(&claimed(&by_name, b"{}"), now_ms()).await;
    assert_eq!(outcome.result, AttemptResult::Status(200), "{}", outcome.response);
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn a_hanging_receiver_times_out() {
    let receiver = TestReceiver::start([Reply::Hang]).await;
    let config = WebhooksConfig { request_timeout: Duration::from_millis(300), ..test_config() };
    let outcome = sender(&config).send(&claimed(&receiver.url(), b"{}"), now_ms()).await;
    assert_eq!(outcome.result, AttemptResult::Timeout, "{}", outcome.response);
    assert!(outcome.duration >= Duration::from_millis(300) && outcome.duration < Duration::from_secs(2));
}

#[tokio::test]
async fn connection_refused_is_a_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    let url = format!("http://127.0.0.1:{port}/hook");
    let outcome = sender(&test_config()).send(&claimed(&url, b"{}"), now_ms()).await;
    assert_eq!(outcome.result, AttemptResult::Connect, "{}", outcome.response);
}

#[tokio::test]
async fn bad_urls_and_secrets_are_our_errors() {
    let sender = sender(&test_config());
    for url in ["not a url", "ftp://127.0.0.1/x"] {
        let outcome = sender.send(&claimed(url, b"{}"), now_ms()).await;
        assert_eq!(outcome.result, AttemptResult::Request, "{url}: {}", outcome.response);
    }
    let receiver = TestReceiver::start([]).await;
    let mut delivery = claimed(&receiver.url(), b"{}");
    delivery.endpoint.secret = "whsec_!!".to_owned();
    let outcome = sender.send(&delivery, now_ms()).await;
    assert_eq!(outcome.result, AttemptResult::Request, "{}", outcome.response);
    assert!(!outcome.response.contains("!!"), "no secret in the record: {}", outcome.response);
    assert!(receiver.received().is_empty());
}

#[tokio::test]
async fn https_uses_rustls() {
    // The receiver speaks plain HTTP, so the TLS handshake fails: a connect error, not a panic
    // about a missing crypto provider.
    let receiver = TestReceiver::start([]).await;
    let url = format!("https://127.0.0.1:{}/hook", receiver.port);
    let outcome = sender(&test_config()).send(&claimed(&url, b"{}"), now_ms()).await;
    assert_eq!(outcome.result, AttemptResult::Connect, "{}", outcome.response);
}
