//! Prometheus metrics: the recorder, the names, and handles for the hot paths.
//!
//! Names carry units and counters end in `_total`. Queue depth is the pair
//! `herald_queued_messages_total` / `herald_sent_messages_total` plus the
//! connection gauges. Hot paths (fan-out, frame writes) use pre-registered handles so they never
//! hash a metric key per delivery.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Install the process-wide recorder once and return its handle. Several servers in one process
/// (tests) share it.
pub fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_duration_seconds".to_owned()),
                    &[0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0],
                )
                .expect("static bucket list is not empty");
            match builder.install_recorder() {
                Ok(handle) => handle,
                // Another recorder is already installed (an embedding application's); keep a
                // private one so /metrics still answers.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}

/// Run the recorder's upkeep (histogram compaction) periodically until cancelled.
pub async fn upkeep(handle: PrometheusHandle, shutdown: tokio_util::sync::CancellationToken) {
    let mut interval = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => handle.run_upkeep(),
        }
    }
}

/// Handles for metrics touched per message.
#[derive(Clone)]
pub struct Metrics {
    pub connections: Gauge,
    pub connections_opened: Counter,
    pub subscriptions: Gauge,
    pub channels: Gauge,
    pub publications: Counter,
    pub deliveries: Counter,
    pub frames_sent: Counter,
    pub bytes_sent: Counter,
    pub bytes_received: Counter,
    pub slow_disconnects: Counter,
    pub messages_queued: Counter,
}

impl Metrics {
    pub fn new() -> Self {
        describe();
        Self {
            connections: gauge!("herald_connections"),
            connections_opened: counter!("herald_connections_opened_total"),
            subscriptions: gauge!("herald_subscriptions"),
            channels: gauge!("herald_channels"),
            publications: counter!("herald_publications_total"),
            deliveries: counter!("herald_deliveries_total"),
            frames_sent: counter!("herald_frames_sent_total"),
            bytes_sent: counter!("herald_sent_bytes_total"),
            bytes_received: counter!("herald_received_bytes_total"),
            slow_disconnects: counter!("herald_slow_disconnects_total"),
            messages_queued: counter!("herald_queued_messages_total"),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Count one client command and its latency.
pub fn command(method: &'static str, result: &'static str, elapsed: Duration) {
    counter!("herald_commands_total", "method" => method, "result" => result).increment(1);
    histogram_for(method).record(elapsed.as_secs_f64());
}

/// Count one server API call.
pub fn api_call(method: &'static str, result: &'static str, elapsed: Duration) {
    counter!("herald_api_requests_total", "method" => method, "result" => result).increment(1);
    histogram!("herald_api_duration_seconds", "method" => method).record(elapsed.as_secs_f64());
}

/// Count bad input of some kind (malformed frame, oversized body, unknown method ...).
pub fn bad_input(kind: &'static str) {
    counter!("herald_bad_input_total", "kind" => kind).increment(1);
}

/// Count a disconnect by code.
pub fn disconnect(code: u16) {
    counter!("herald_disconnects_total", "code" => code.to_string()).increment(1);
}

fn histogram_for(method: &'static str) -> Histogram {
    histogram!("herald_command_duration_seconds", "method" => method)
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!("herald_connections", "Client connections currently open.");
    describe_counter!("herald_connections_opened_total", "Client connections accepted.");
    describe_gauge!("herald_subscriptions", "Channel subscriptions currently held by all connections.");
    describe_gauge!("herald_channels", "Channels currently known to the hub.");
    describe_counter!("herald_publications_total", "Publications accepted by the hub.");
    describe_counter!("herald_deliveries_total", "Publications queued to subscribers.");
    describe_counter!("herald_frames_sent_total", "WebSocket frames written to clients.");
    describe_counter!("herald_sent_bytes_total", Unit::Bytes, "Payload bytes written to clients.");
    describe_counter!("herald_received_bytes_total", Unit::Bytes, "Payload bytes read from clients.");
    describe_counter!("herald_slow_disconnects_total", "Clients disconnected because their queue overflowed (3008).");
    describe_counter!("herald_queued_messages_total", "Messages queued to client connections.");
    describe_counter!("herald_commands_total", "Client protocol commands by method and result.");
    describe_histogram!("herald_command_duration_seconds", Unit::Seconds, "Client command handling latency.");
    describe_counter!("herald_api_requests_total", "Server API calls by method and result.");
    describe_histogram!("herald_api_duration_seconds", Unit::Seconds, "Server API call latency.");
    describe_counter!("herald_bad_input_total", "Rejected malformed or oversized input, by kind.");
    describe_counter!("herald_disconnects_total", "Client disconnects by code.");
}
