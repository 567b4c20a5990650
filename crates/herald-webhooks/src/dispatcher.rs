//! The dispatcher: claims due deliveries, sends them through a bounded worker pool, and settles
//! each attempt in the store.
//!
//! # Design
//!
//! One loop claims work; one task per claimed delivery does the rest.
//!
//! - **Waking.** The loop claims when woken by [`DispatcherHandle::notify`] (the publish path
//!   calls it after a message commits, so delivery starts within milliseconds), when a delivery
//!   settles (the next message of an in-order endpoint only becomes claimable then), when a
//!   retry scheduled here falls due sooner than the next poll, and every `poll_interval`
//!   (later retries, other nodes' expired leases).
//! - **Bounds.** At most `2 * workers` deliveries are held in memory (claimed, not settled), and
//!   at most `workers` HTTP requests are in flight. The loop claims no more than the free room,
//!   so a slow or throttled endpoint cannot make it claim without bound. The extra room lets
//!   deliveries wait for their endpoint's concurrency or rate limit without idling the pool.
//! - **Per endpoint.** A semaphore of `max_concurrency` per endpoint (the store already hands out
//!   only one delivery at a time to in-order endpoints, those with `max_concurrency` 1), and a
//!   `governor` limiter keyed by endpoint id for `rate_limit` (one keyed limiter per distinct
//!   rate, since a keyed limiter has one quota). A delivery held back waits in memory.
//! - **Leases.** A claim lasts `lease`. A delivery that cannot start its request before
//!   `lease - request_timeout - 1s` (less for short leases) has passed is dropped from memory
//!   with nothing recorded: the lease runs out and it is claimed again, so nothing is sent after
//!   another node may have claimed it. The same happens to waiting deliveries at shutdown.
//! - **Settling.** No store transaction is open during the HTTP call: the attempt and the
//!   delivery's next state are one `record_attempt` call after it. Endpoint health is written
//!   only when it changes: `Healthy` after a success only if the claimed endpoint was failing,
//!   `Failing` on the first failure of a streak, `Disabled` on 410 Gone or when the streak is
//!   older than `disable_after`.
//! - **Shutdown.** On cancellation the loop stops claiming, waiting deliveries are dropped
//!   (their leases bring them back), and requests in flight finish (bounded by
//!   `request_timeout`) and are recorded before [`Dispatcher::run`] returns.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock as _;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use herald_core::config::WebhooksConfig;
use herald_store::{
    AttemptStatus, ClaimedDelivery, DeliveryNext, EndpointHealth, ErrorClass, NewAttempt, Store, StoreError, now_ms,
};
use parking_lot::Mutex;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::retry::{AttemptResult, RetryPolicy, Verdict};
use crate::sender::{SendOutcome, Sender, SenderError};
use crate::ssrf::{Guard, SsrfError};

/// Time kept free at the end of a lease, after the request timeout, for recording the attempt
/// (at most half of what the lease leaves after the request timeout).
const LEASE_MARGIN: Duration = Duration::from_secs(1);
/// How often idle per-endpoint state (semaphores, rate limiter keys) is dropped.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(60);
/// Tries of `record_attempt` before giving up (the lease then brings the delivery back).
const RECORD_TRIES: u32 = 3;

/// Why the dispatcher could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DispatcherError {
    #[error("invalid webhooks.allow_networks: {0}")]
    AllowNetworks(#[from] SsrfError),
    #[error(transparent)]
    Sender(#[from] SenderError),
    #[error("invalid webhooks config: {0}")]
    Config(&'static str),
}

/// Register the dispatcher's metrics with their help texts (call once, after installing the
/// recorder).
pub fn describe_metrics() {
    metrics::describe_counter!(
        "herald_webhook_attempts_total",
        "Webhook delivery attempts, by result: success, receiver_error, network_error, our_error."
    );
    metrics::describe_histogram!(
        "herald_webhook_attempt_duration_seconds",
        metrics::Unit::Seconds,
        "Duration of webhook attempts, from building the request to reading the response prefix."
    );
    metrics::describe_counter!(
        "herald_webhook_deliveries_dead_total",
        "Webhook deliveries given up on (schedule used up, final answer, or endpoint disabled)."
    );
    metrics::describe_counter!("herald_webhook_endpoints_disabled_total", "Webhook endpoints disabled by Herald.");
    metrics::describe_counter!(
        "herald_webhook_deliveries_deferred_total",
        "Claimed webhook deliveries dropped before sending because their endpoint's limits held them past the lease."
    );
}

/// Wakes the dispatcher. Cheap to clone; calls before [`Dispatcher::run`] are not lost.
#[derive(Clone, Debug)]
pub struct DispatcherHandle {
    wake: Arc<Notify>,
}

impl DispatcherHandle {
    /// Look for due deliveries now (call after a message commits).
    pub fn notify(&self) {
        self.wake.notify_one();
    }
}

/// The webhook dispatcher; see the module comment.
pub struct Dispatcher {
    shared: Arc<Shared>,
}

impl Dispatcher {
    /// A dispatcher over `store`, with the limits, timeouts, retry schedule and address policy
    /// (`allow_networks`) of `config`. Builds the HTTP client; does not start anything.
    pub fn new(store: Arc<dyn Store>, config: WebhooksConfig) -> Result<Dispatcher, DispatcherError> {
        if config.workers == 0 || config.claim_batch == 0 {
            return Err(DispatcherError::Config("workers and claim_batch must be at least 1"));
        }
        if config.lease <= config.request_timeout {
            return Err(DispatcherError::Config("lease must be longer than request_timeout"));
        }
        let guard = Arc::new(Guard::new(&config.allow_networks)?);
        let sender = Sender::new(&config, guard)?;
        let policy = RetryPolicy::from_config(&config);
        let held_max = config.workers.saturating_mul(2).min(Semaphore::MAX_PERMITS);
        Ok(Dispatcher {
            shared: Arc::new(Shared {
                store,
                sender,
                policy,
                workers: Arc::new(Semaphore::new(config.workers.min(Semaphore::MAX_PERMITS))),
                held: Arc::new(Semaphore::new(held_max)),
                endpoints: Mutex::new(HashMap::new()),
                limiters: Mutex::new(HashMap::new()),
                wake: Arc::new(Notify::new()),
                retry_due: Mutex::new(None),
                config,
            }),
        })
    }

    /// A handle to wake this dispatcher.
    pub fn handle(&self) -> DispatcherHandle {
        DispatcherHandle { wake: Arc::clone(&self.shared.wake) }
    }

    /// Claim and deliver until `shutdown` is cancelled, then let requests in flight finish and
    /// return.
    pub async fn run(self, shutdown: CancellationToken) {
        let shared = self.shared;
        let tracker = TaskTracker::new();
        let mut housekeeping = tokio::time::interval_at(Instant::now() + HOUSEKEEPING_INTERVAL, HOUSEKEEPING_INTERVAL);
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::info!(workers = shared.config.workers, "Webhook dispatcher started.");
        // Work committed by other nodes (a shared store's notifications) wakes this one too.
        if let Some(remote) = shared.store.work_notify() {
            let wake = Arc::clone(&shared.wake);
            let shutdown = shutdown.clone();
            tracker.spawn(async move {
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = remote.notified() => wake.notify_one(),
                    }
                }
            });
        }
        while !shutdown.is_cancelled() {
            claim_round(&shared, &tracker, &shutdown).await;
            let next_poll = shared.next_poll();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = housekeeping.tick() => shared.housekeep(),
                _ = shared.wake.notified() => {}
                _ = tokio::time::sleep_until(next_poll) => {}
            }
        }
        tracker.close();
        tracing::info!(in_flight = tracker.len(), "Webhook dispatcher stopping; waiting for requests in flight.");
        tracker.wait().await;
        tracing::info!("Webhook dispatcher stopped.");
    }
}

struct Shared {
    store: Arc<dyn Store>,
    config: WebhooksConfig,
    sender: Sender,
    policy: RetryPolicy,
    /// Requests in flight.
    workers: Arc<Semaphore>,
    /// Deliveries claimed and not yet settled or dropped.
    held: Arc<Semaphore>,
    /// Concurrency limit per endpoint id.
    endpoints: Mutex<HashMap<String, EndpointSlot>>,
    /// Rate limiters by deliveries per second, keyed by endpoint id.
    limiters: Mutex<HashMap<NonZeroU32, Arc<DefaultKeyedRateLimiter<String>>>>,
    wake: Arc<Notify>,
    /// The earliest retry that falls due before the next poll: the claim loop sleeps until
    /// then instead of a whole `poll_interval`.
    retry_due: Mutex<Option<Instant>>,
}

struct EndpointSlot {
    max_concurrency: usize,
    semaphore: Arc<Semaphore>,
}

/// Claim batches while there is room and the store has due work.
async fn claim_round(shared: &Arc<Shared>, tracker: &TaskTracker, shutdown: &CancellationToken) {
    let lease_ms = i64::try_from(shared.config.lease.as_millis()).unwrap_or(i64::MAX);
    loop {
        // Wait for room for at least one delivery, then take what else is free up to a batch.
        let mut room = tokio::select! {
            permit = Arc::clone(&shared.held).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            _ = shutdown.cancelled() => return,
        };
        let extra = shared.held.available_permits().min(shared.config.claim_batch - 1);
        if let Ok(extra) = u32::try_from(extra)
            && extra > 0
            && let Ok(more) = Arc::clone(&shared.held).try_acquire_many_owned(extra)
        {
            room.merge(more);
        }
        let limit = room.num_permits();
        // The lease starts when the store claims, so deadlines count from before the call.
        let claimed_at = Instant::now();
        let claimed = match shared.store.claim_due_deliveries(now_ms(), limit, lease_ms).await {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(error = %error, "Cannot claim due webhook deliveries.");
                return;
            }
        };
        let full = claimed.len() >= limit;
        for delivery in claimed {
            let Some(held) = room.split(1) else {
                // The store returned more than asked; the extra ones come back when their lease ends.
                tracing::warn!(delivery_id = delivery.delivery.id, "The store returned more deliveries than asked.");
                continue;
            };
            let span = tracing::info_span!(
                "webhook_delivery",
                delivery_id = delivery.delivery.id,
                msg_id = %delivery.message.id,
                endpoint_id = %delivery.endpoint.id,
                attempt = delivery.delivery.attempts + 1,
            );
            tracker.spawn(deliver(Arc::clone(shared), delivery, held, claimed_at, shutdown.clone()).instrument(span));
        }
        if !full || shutdown.is_cancelled() {
            return;
        }
    }
}

/// Wait for the endpoint's concurrency and rate limits and a worker, then attempt the delivery.
async fn deliver(
    shared: Arc<Shared>,
    claimed: ClaimedDelivery,
    _held: OwnedSemaphorePermit,
    claimed_at: Instant,
    shutdown: CancellationToken,
) {
    let config = &shared.config;
    // The request must be over before the lease ends, with a margin for recording it (smaller
    // when the lease is barely longer than the request timeout).
    let spare = config.lease.saturating_sub(config.request_timeout);
    let deadline = claimed_at + spare.saturating_sub(LEASE_MARGIN.min(spare / 2));

    let endpoint_slot = shared.endpoint_semaphore(&claimed);
    let Some(_endpoint_permit) = wait_for(endpoint_slot.acquire_owned(), deadline, &shutdown).await else {
        return defer(&shutdown, "endpoint concurrency");
    };
    if let Some(rate) = claimed.endpoint.rate_limit.and_then(NonZeroU32::new) {
        let limiter = shared.limiter(rate);
        while let Err(not_until) = limiter.check_key(&claimed.endpoint.id) {
            let wait = not_until.wait_time_from(limiter.clock().now());
            if Instant::now() + wait > deadline {
                return defer(&shutdown, "endpoint rate limit");
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => return defer(&shutdown, "endpoint rate limit"),
            }
        }
    }
    let Some(_worker) = wait_for(Arc::clone(&shared.workers).acquire_owned(), deadline, &shutdown).await else {
        return defer(&shutdown, "a free worker");
    };
    // From here on shutdown does not interrupt: the request is bounded by request_timeout, and
    // its outcome is recorded.
    shared.attempt(&claimed).await;
    shared.wake.notify_one();
}

/// Await a semaphore permit unless the deadline passes or shutdown starts first.
async fn wait_for(
    acquire: impl Future<Output = Result<OwnedSemaphorePermit, tokio::sync::AcquireError>>,
    deadline: Instant,
    shutdown: &CancellationToken,
) -> Option<OwnedSemaphorePermit> {
    tokio::select! {
        // Shutdown first: nothing new starts once it has begun. Then a permit that is free now
        // wins over a deadline that has also passed.
        biased;
        _ = shutdown.cancelled() => None,
        permit = acquire => permit.ok(),
        _ = tokio::time::sleep_until(deadline) => None,
    }
}

/// Drop a delivery that could not start in time; its lease brings it back.
fn defer(shutdown: &CancellationToken, waiting_for: &'static str) {
    if !shutdown.is_cancelled() {
        metrics::counter!("herald_webhook_deliveries_deferred_total").increment(1);
        tracing::debug!(waiting_for, "Delivery could not start within its lease; it will be claimed again.");
    }
}

impl Shared {
    fn endpoint_semaphore(&self, claimed: &ClaimedDelivery) -> Arc<Semaphore> {
        let max_concurrency = usize::try_from(claimed.endpoint.max_concurrency.max(1)).unwrap_or(1);
        let mut endpoints = self.endpoints.lock();
        match endpoints.get(&claimed.endpoint.id) {
            Some(slot) if slot.max_concurrency == max_concurrency => Arc::clone(&slot.semaphore),
            // New, or its limit changed: holders of the old semaphore finish under the old limit.
            _ => {
                let semaphore = Arc::new(Semaphore::new(max_concurrency.min(Semaphore::MAX_PERMITS)));
                endpoints.insert(
                    claimed.endpoint.id.clone(),
                    EndpointSlot { max_concurrency, semaphore: Arc::clone(&semaphore) },
                );
                semaphore
            }
        }
    }

    fn limiter(&self, rate: NonZeroU32) -> Arc<DefaultKeyedRateLimiter<String>> {
        let mut limiters = self.limiters.lock();
        Arc::clone(limiters.entry(rate).or_insert_with(|| Arc::new(RateLimiter::keyed(Quota::per_second(rate)))))
    }

    /// Drop per-endpoint state nobody uses.
    fn housekeep(&self) {
        self.endpoints.lock().retain(|_, slot| Arc::strong_count(&slot.semaphore) > 1);
        self.limiters.lock().retain(|_, limiter| {
            limiter.retain_recent();
            limiter.shrink_to_fit();
            !limiter.is_empty() || Arc::strong_count(limiter) > 1
        });
    }

    /// Send one attempt and record it with the delivery's next state and the endpoint's health.
    async fn attempt(&self, claimed: &ClaimedDelivery) {
        let started_at = now_ms();
        let outcome = if claimed.endpoint.disabled {
            // The store should not hand these out; if it does, settle them instead of sending.
            SendOutcome {
                result: AttemptResult::Request,
                response: "the endpoint is disabled".to_owned(),
                retry_after: None,
                duration: Duration::ZERO,
            }
        } else {
            self.sender.send(claimed, started_at).await
        };
        let finished_at = now_ms();
        let verdict = if claimed.endpoint.disabled {
            Verdict::Final(ErrorClass::Ours)
        } else {
            self.policy.classify(outcome.result)
        };
        let (next, health) = self.decide(claimed, verdict, outcome.retry_after, finished_at);

        metrics::counter!("herald_webhook_attempts_total", "result" => result_label(verdict)).increment(1);
        metrics::histogram!("herald_webhook_attempt_duration_seconds").record(outcome.duration.as_secs_f64());
        match verdict {
            Verdict::Success => tracing::debug!(status = ?outcome.result, "Webhook delivered."),
            _ => tracing::info!(result = ?outcome.result, next = ?next, "Webhook attempt failed."),
        }

        let attempt = NewAttempt {
            url: claimed.endpoint.url.clone(),
            status: if verdict == Verdict::Success { AttemptStatus::Success } else { AttemptStatus::Fail },
            response_status_code: match outcome.result {
                AttemptResult::Status(code) => code,
                _ => 0,
            },
            response: truncate(outcome.response, self.config.response_body_max_bytes),
            response_duration_ms: i64::try_from(outcome.duration.as_millis()).unwrap_or(i64::MAX),
            error_class: verdict.error_class(),
            trigger: claimed.delivery.trigger,
            created_at: started_at,
        };
        // A disabling verdict is recorded first: recording the attempt frees an ordered
        // endpoint's next delivery, which must not be claimed for the endpoint meanwhile.
        let health = match health {
            Some(health @ EndpointHealth::Disabled { .. }) => {
                self.record_health(&claimed.endpoint.id, health).await;
                None
            }
            other => other,
        };
        if !self.record(claimed.delivery.id, attempt, next).await {
            return;
        }
        if let DeliveryNext::RetryAt(at) = next {
            // Wake the claim loop when this retry falls due rather than at the next poll: short
            // retry delays (and ordered endpoints, whose later messages wait behind this one)
            // would otherwise wait up to `poll_interval`.
            let delay = Duration::from_millis(u64::try_from(at.saturating_sub(now_ms())).unwrap_or(0));
            if delay < self.config.poll_interval {
                self.retry_due_in(delay);
            }
        }
        if next == DeliveryNext::Dead {
            metrics::counter!("herald_webhook_deliveries_dead_total").increment(1);
        }
        if let Some(health) = health {
            self.record_health(&claimed.endpoint.id, health).await;
        }
    }

    async fn record_health(&self, endpoint_id: &str, health: EndpointHealth) {
        let disabled = matches!(health, EndpointHealth::Disabled { .. });
        if let EndpointHealth::Disabled { reason, .. } = &health {
            tracing::warn!(reason = %reason, "Disabling the webhook endpoint.");
        }
        match self.store.set_endpoint_health(endpoint_id, health).await {
            Ok(()) if disabled => metrics::counter!("herald_webhook_endpoints_disabled_total").increment(1),
            Ok(()) => {}
            Err(error) => tracing::warn!(error = %error, "Cannot record the endpoint's health."),
        }
    }

    /// Note a retry due after `delay`; the claim loop wakes to recompute its sleep when this is
    /// the earliest one.
    fn retry_due_in(&self, delay: Duration) {
        // A millisecond late rather than early: the store's due times are whole milliseconds.
        let at = Instant::now() + delay + Duration::from_millis(1);
        let mut due = self.retry_due.lock();
        if due.is_none_or(|earlier| at < earlier) {
            *due = Some(at);
            drop(due);
            self.wake.notify_one();
        }
    }

    /// When the claim loop next looks for due work without being woken: at the next poll, or
    /// earlier when a retry falls due before it. A due time that has passed is forgotten (the
    /// claim round just run has taken it).
    fn next_poll(&self) -> Instant {
        let now = Instant::now();
        let poll = now + self.config.poll_interval;
        let mut due = self.retry_due.lock();
        match *due {
            Some(at) if at <= now => {
                *due = None;
                poll
            }
            Some(at) => at.min(poll),
            None => poll,
        }
    }

    /// The delivery's next state and the endpoint health to record, if it changes.
    fn decide(
        &self,
        claimed: &ClaimedDelivery,
        verdict: Verdict,
        retry_after: Option<Duration>,
        now: i64,
    ) -> (DeliveryNext, Option<EndpointHealth>) {
        let failing_since = claimed.endpoint.failing_since;
        if claimed.endpoint.disabled {
            // Not sent at all: nothing to learn about the endpoint's health.
            return (DeliveryNext::Dead, None);
        }
        match verdict {
            Verdict::Success => (DeliveryNext::Succeeded, failing_since.map(|_| EndpointHealth::Healthy)),
            Verdict::Gone => (
                DeliveryNext::Dead,
                Some(EndpointHealth::Disabled { reason: "the endpoint answered 410 Gone".to_owned(), at: now }),
            ),
            Verdict::Retry(_) | Verdict::Final(_) => {
                let disable_after_ms = i64::try_from(self.config.disable_after.as_millis()).unwrap_or(i64::MAX);
                if let Some(since) = failing_since
                    && now.saturating_sub(since) >= disable_after_ms
                {
                    let reason = format!(
                        "the endpoint has been failing for longer than {}s",
                        self.config.disable_after.as_secs()
                    );
                    return (DeliveryNext::Dead, Some(EndpointHealth::Disabled { reason, at: now }));
                }
                let health = failing_since.is_none().then_some(EndpointHealth::Failing { at: now });
                let next = match verdict {
                    Verdict::Retry(_) => {
                        let attempt_number = claimed.delivery.attempts.saturating_add(1);
                        match self.policy.next_delay(attempt_number, retry_after, &mut rand::rng()) {
                            Some(delay) => DeliveryNext::RetryAt(
                                now.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
                            ),
                            None => DeliveryNext::Dead,
                        }
                    }
                    _ => DeliveryNext::Dead,
                };
                (next, health)
            }
        }
    }

    /// Record an attempt, retrying transient store errors briefly. `false` when it was not
    /// recorded (the lease then brings the delivery back, and it is sent again).
    async fn record(&self, delivery_id: i64, attempt: NewAttempt, next: DeliveryNext) -> bool {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.store.record_attempt(delivery_id, attempt.clone(), next).await {
                Ok(_) => return true,
                Err(StoreError::NotFound(what)) => {
                    tracing::info!(what = %what, "The delivery is gone (its app or endpoint was deleted).");
                    return false;
                }
                Err(error) if tries < RECORD_TRIES => {
                    tracing::warn!(error = %error, "Cannot record the webhook attempt; trying again.");
                    tokio::time::sleep(Duration::from_millis(100) * 2u32.pow(tries)).await;
                }
                Err(error) => {
                    tracing::error!(error = %error, "Cannot record the webhook attempt; it will be sent again.");
                    return false;
                }
            }
        }
    }
}

fn result_label(verdict: Verdict) -> &'static str {
    match verdict.error_class() {
        None => "success",
        Some(ErrorClass::Receiver) => "receiver_error",
        Some(ErrorClass::Network) => "network_error",
        Some(ErrorClass::Ours) => "our_error",
    }
}

/// At most `max` bytes of `text`, cut on a character boundary.
fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("héllo".to_owned(), 2), "h");
        assert_eq!(truncate("héllo".to_owned(), 3), "hé");
        assert_eq!(truncate("abc".to_owned(), 10), "abc");
    }

    #[test]
    fn result_labels_name_whose_fault() {
        assert_eq!(result_label(Verdict::Success), "success");
        assert_eq!(result_label(Verdict::Gone), "receiver_error");
        assert_eq!(result_label(Verdict::Retry(ErrorClass::Network)), "network_error");
        assert_eq!(result_label(Verdict::Final(ErrorClass::Ours)), "our_error");
    }
}
