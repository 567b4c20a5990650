//! One webhook attempt: build the signed request for a claimed delivery, send it through a pooled
//! HTTP client that cannot be steered into internal networks, and report what came back.
//!
//! # Request
//!
//! `POST <endpoint url>` with `content-type: application/json`, the message payload bytes exactly
//! as stored (never re-serialized: the signature covers these bytes), and the headers
//! `webhook-id` (the message id, the same on every retry), `webhook-timestamp` (this attempt's
//! time, Unix seconds) and `webhook-signature` (`svix-*` with `header_style = "svix"`). The
//! endpoint's custom headers are added first and can never replace the signature headers or the
//! framing headers.
//!
//! The signature list holds the endpoint's current secret, then every previous secret whose
//! `expires_at` is still ahead, so receivers keep verifying through a rotation.
//!
//! # Client
//!
//! reqwest with rustls on the `ring` provider and the platform's roots (the bundled Mozilla roots
//! where the platform has none), HTTP/1.1 or HTTP/2 by
//! ALPN, connections pooled per host, no proxy, no redirects, a connect timeout and a whole-request
//! timeout (which also bounds reading the response body prefix), and the SSRF guard's resolver.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::BytesMut;
use herald_core::config::{HeaderStyle, WebhooksConfig};
use herald_store::{ClaimedDelivery, Timestamp};
use http::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::Url;
use rustls_platform_verifier::BuilderVerifierExt as _;

use crate::retry::{AttemptResult, parse_retry_after};
use crate::signing;
use crate::ssrf::{Guard, Host, SsrfError, literal_host};

/// `User-Agent` of webhook requests, unless an endpoint's custom headers set another.
pub const USER_AGENT: &str = concat!("Herald-Webhooks/", env!("CARGO_PKG_VERSION"));

/// Headers a custom endpoint header may not set: the signature headers of both styles, and the
/// ones that frame the request.
const RESERVED_HEADERS: &[&str] = &[
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "content-type",
    "content-length",
    "transfer-encoding",
    "host",
    "connection",
    "te",
    "upgrade",
];

/// Why the HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// What one attempt came back with.
#[derive(Clone, Debug, PartialEq)]
pub struct SendOutcome {
    pub result: AttemptResult,
    /// A prefix of the response body (at most `response_body_max_bytes`, lossily decoded), or a
    /// description of the error when no response came.
    pub response: String,
    /// The receiver's `Retry-After`, when it sent one that parses.
    pub retry_after: Option<Duration>,
    /// From just before the request was built to the end of reading the response prefix.
    pub duration: Duration,
}

/// Sends webhook attempts. Cheap to share: hold it in an `Arc`.
#[derive(Clone, Debug)]
pub struct Sender {
    client: reqwest::Client,
    guard: Arc<Guard>,
    header_names: [HeaderName; 3],
    response_body_max_bytes: usize,
}

impl Sender {
    /// A sender with its own pooled client, using `guard` at connect time.
    pub fn new(config: &WebhooksConfig, guard: Arc<Guard>) -> Result<Sender, SenderError> {
        let tls = tls_config()?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .dns_resolver(guard.resolver())
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .user_agent(USER_AGENT)
            .build()?;
        let header_names = match config.header_style {
            HeaderStyle::Webhook => ["webhook-id", "webhook-timestamp", "webhook-signature"],
            HeaderStyle::Svix => ["svix-id", "svix-timestamp", "svix-signature"],
        }
        .map(HeaderName::from_static);
        Ok(Sender { client, guard, header_names, response_body_max_bytes: config.response_body_max_bytes })
    }

    /// Send one attempt of `claimed` at `now` (milliseconds since the epoch; the timestamp header
    /// and the choice of previous secrets follow it). Never fails: every problem is an outcome.
    pub async fn send(&self, claimed: &ClaimedDelivery, now: Timestamp) -> SendOutcome {
        let started = Instant::now();
        let request = match self.build(claimed, now) {
            Ok(request) => request,
            Err((result, detail)) => return failure(result, detail, started),
        };
        let mut response = match self.client.execute(request).await {
            Ok(response) => response,
            Err(error) => {
                let (result, detail) = describe_error(&error);
                return failure(result, detail, started);
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, SystemTime::now()));
        let body = self.read_prefix(&mut response).await;
        SendOutcome {
            result: AttemptResult::Status(status),
            response: String::from_utf8_lossy(&body).into_owned(),
            retry_after,
            duration: started.elapsed(),
        }
    }

    fn build(&self, claimed: &ClaimedDelivery, now: Timestamp) -> Result<reqwest::Request, (AttemptResult, String)> {
        let endpoint = &claimed.endpoint;
        let message = &claimed.message;
        let url =
            Url::parse(&endpoint.url).map_err(|error| (AttemptResult::Request, format!("invalid URL: {error}")))?;
        // Resolvers are skipped for IP literals, so check those here.
        match literal_host(&url) {
            Ok(Host::Ip(ip)) => {
                self.guard.check_ip(&ip.to_string(), ip).map_err(|error| (AttemptResult::Blocked, error.to_string()))?
            }
            Ok(Host::Name(_)) => {}
            Err(error) => return Err((AttemptResult::Request, error.to_string())),
        }

        let mut secrets = vec![endpoint.secret.as_str()];
        secrets.extend(endpoint.previous_secrets.iter().filter(|p| p.expires_at > now).map(|p| p.secret.as_str()));
        let timestamp = now.div_euclid(1000);
        let signature = signing::sign(&message.id, timestamp, &message.payload, &secrets)
            .map_err(|error| (AttemptResult::Request, format!("cannot sign: {error}")))?;

        let mut headers = HeaderMap::with_capacity(endpoint.headers.len() + 4);
        for (name, value) in &endpoint.headers {
            if RESERVED_HEADERS.iter().any(|reserved| name.eq_ignore_ascii_case(reserved)) {
                continue;
            }
            match (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
                (Ok(name), Ok(value)) => {
                    headers.append(name, value);
                }
                _ => tracing::warn!(endpoint_id = %endpoint.id, header = %name, "Skipping an invalid custom header."),
            }
        }
        let invalid = |what: &str| (AttemptResult::Request, format!("invalid {what} header value"));
        let [id_name, timestamp_name, signature_name] = self.header_names.clone();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(id_name, HeaderValue::from_str(&message.id).map_err(|_| invalid("id"))?);
        headers.insert(timestamp_name, HeaderValue::from(timestamp));
        headers.insert(signature_name, HeaderValue::from_str(&signature).map_err(|_| invalid("signature"))?);

        self.client
            .post(url)
            .headers(headers)
            .body(message.payload.clone())
            .build()
            .map_err(|error| (AttemptResult::Request, format!("cannot build the request: {error}")))
    }

    /// Read at most `response_body_max_bytes` of the body. A body that fails or times out part way
    /// keeps what arrived: the status already decided the attempt.
    async fn read_prefix(&self, response: &mut reqwest::Response) -> BytesMut {
        let max = self.response_body_max_bytes;
        let mut body = BytesMut::new();
        while body.len() < max {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk[..chunk.len().min(max - body.len())]),
                Ok(None) | Err(_) => break,
            }
        }
        body
    }
}

/// rustls on the `ring` provider, verifying with the platform's roots, or with the bundled
/// Mozilla roots where the platform has none (minimal container images).
fn tls_config() -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions()?;
    let mut tls = match builder.clone().with_platform_verifier() {
        Ok(builder) => builder.with_no_client_auth(),
        Err(error) => {
            tracing::warn!(error = %error, "No usable system CA certificates; verifying webhook TLS with bundled roots.");
            let roots: rustls::RootCertStore = webpki_roots::TLS_SERVER_ROOTS.iter().cloned().collect();
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    // A preconfigured TLS config gets no ALPN from reqwest: offer HTTP/2 and HTTP/1.1.
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tls)
}

fn failure(result: AttemptResult, detail: String, started: Instant) -> SendOutcome {
    SendOutcome { result, response: detail, retry_after: None, duration: started.elapsed() }
}

/// Classify a client error, with a one-line description for the attempt record.
fn describe_error(error: &reqwest::Error) -> (AttemptResult, String) {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(err) = source {
        if let Some(refused) = err.downcast_ref::<SsrfError>() {
            let result = match refused {
                SsrfError::Blocked { .. } => AttemptResult::Blocked,
                _ => AttemptResult::Connect,
            };
            return (result, refused.to_string());
        }
        source = err.source();
    }
    let result = if error.is_timeout() {
        AttemptResult::Timeout
    } else if error.is_connect() {
        AttemptResult::Connect
    } else if error.is_builder() {
        AttemptResult::Request
    } else {
        AttemptResult::Transport
    };
    (result, error_chain(error))
}

/// `error: cause: cause`, which reqwest's `Display` alone does not show.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(err) = source {
        let cause = err.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
        source = err.source();
    }
    text
}
