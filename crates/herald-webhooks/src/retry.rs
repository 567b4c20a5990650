//! Retry decisions: how an attempt's result is classified (success, retry, final failure,
//! endpoint gone) and when the next attempt is due.
//!
//! # Rules
//!
//! Following the Standard Webhooks delivery guidance:
//! - 2xx is a success.
//! - 410 Gone: the receiver wants no more webhooks; the endpoint is disabled and the delivery is
//!   final.
//! - 3xx is a failure (redirects are never followed; the user should fix the URL) and is retried
//!   like a 5xx.
//! - 408, 409, 425, 429 and every 5xx are retried, as are timeouts, connection errors and
//!   resets.
//! - Other 4xx are final unless `webhooks.retry_client_errors` is set.
//! - Failures on Herald's side (the SSRF guard refused the address, the request could not be
//!   built) are retried too: DNS answers and endpoint settings can change before the schedule
//!   runs out.
//!
//! The delay before attempt `n + 1` is `retry_schedule[n - 1]` plus up to `retry_jitter` of it,
//! chosen at random so that endpoints failing together do not retry together. A `Retry-After`
//! answer (delta-seconds or an HTTP date) pushes the next attempt to at least that far out,
//! capped at `retry_after_max`; it never brings an attempt forward. When the schedule is used up
//! the delivery is dead.

use std::time::{Duration, SystemTime};

use herald_core::config::WebhooksConfig;
use herald_store::ErrorClass;
use rand::Rng;

/// What one attempt came back with, as far as the retry decision cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptResult {
    /// The receiver answered with this status code.
    Status(u16),
    /// No complete answer within the request timeout.
    Timeout,
    /// No connection could be made (DNS failure, refused, unreachable, TLS handshake).
    Connect,
    /// The connection broke during the exchange (reset, closed early, protocol error).
    Transport,
    /// The SSRF guard refused every address of the endpoint.
    Blocked,
    /// Herald could not build the request (bad URL, secret or header).
    Request,
}

/// What to do after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Success,
    /// Try again later, if the schedule allows.
    Retry(ErrorClass),
    /// No more tries for this delivery.
    Final(ErrorClass),
    /// 410 Gone: no more tries, and disable the endpoint.
    Gone,
}

impl Verdict {
    /// Whose fault the failure was; `None` for a success.
    pub fn error_class(self) -> Option<ErrorClass> {
        match self {
            Verdict::Success => None,
            Verdict::Retry(class) | Verdict::Final(class) => Some(class),
            Verdict::Gone => Some(ErrorClass::Receiver),
        }
    }
}

/// The retry schedule and classification rules from `WebhooksConfig`.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    schedule: Vec<Duration>,
    jitter: f64,
    retry_after_max: Duration,
    retry_client_errors: bool,
}

impl RetryPolicy {
    pub fn from_config(config: &WebhooksConfig) -> RetryPolicy {
        RetryPolicy {
            schedule: config.retry_schedule.clone(),
            jitter: config.retry_jitter.clamp(0.0, 1.0),
            retry_after_max: config.retry_after_max,
            retry_client_errors: config.retry_client_errors,
        }
    }

    /// Attempts a delivery gets at most: the first plus one per schedule entry.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.schedule.len()).unwrap_or(u32::MAX).saturating_add(1)
    }

    /// The delay before the next attempt after attempt number `attempt_number` (1 for the first
    /// attempt) failed, or `None` when the schedule is used up and the delivery is dead.
    pub fn next_delay(
        &self,
        attempt_number: u32,
        retry_after: Option<Duration>,
        rng: &mut impl Rng,
    ) -> Option<Duration> {
        let idx = usize::try_from(attempt_number.checked_sub(1)?).ok()?;
        let base = *self.schedule.get(idx)?;
        let spread = if self.jitter > 0.0 { rng.random_range(0.0..=self.jitter) } else { 0.0 };
        let extra = Duration::try_from_secs_f64(base.as_secs_f64() * spread).unwrap_or(Duration::MAX);
        let delay = base.saturating_add(extra);
        Some(match retry_after {
            Some(retry_after) => delay.max(retry_after.min(self.retry_after_max)),
            None => delay,
        })
    }

    /// Classify an attempt's result; see the module comment for the rules.
    pub fn classify(&self, result: AttemptResult) -> Verdict {
        match result {
            AttemptResult::Status(code) => match code {
                200..=299 => Verdict::Success,
                410 => Verdict::Gone,
                408 | 409 | 425 | 429 => Verdict::Retry(ErrorClass::Receiver),
                400..=499 if !self.retry_client_errors => Verdict::Final(ErrorClass::Receiver),
                // 3xx, 5xx, retried 4xx, and anything odd (1xx should never reach us).
                _ => Verdict::Retry(ErrorClass::Receiver),
            },
            AttemptResult::Timeout | AttemptResult::Connect | AttemptResult::Transport => {
                Verdict::Retry(ErrorClass::Network)
            }
            AttemptResult::Blocked | AttemptResult::Request => Verdict::Retry(ErrorClass::Ours),
        }
    }
}

/// Parse a `Retry-After` value: delta-seconds (`120`) or an HTTP date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`), relative to `now`. A date in the past is zero.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Saturate absurdly long numbers instead of rejecting them; the cap applies later.
        return Some(Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn policy(jitter: f64) -> RetryPolicy {
        let config = WebhooksConfig { retry_jitter: jitter, ..WebhooksConfig::default() };
        RetryPolicy::from_config(&config)
    }

    #[test]
    fn follows_the_schedule_then_dies() {
        let policy = policy(0.0);
        let mut rng = StdRng::seed_from_u64(1);
        let expected = [5, 300, 1800, 7200, 18_000, 36_000, 36_000].map(Duration::from_secs);
        for (idx, want) in expected.iter().enumerate() {
            let attempt = u32::try_from(idx + 1).expect("small");
            assert_eq!(policy.next_delay(attempt, None, &mut rng), Some(*want), "after attempt {attempt}");
        }
        assert_eq!(policy.next_delay(8, None, &mut rng), None);
        assert_eq!(policy.next_delay(0, None, &mut rng), None);
        assert_eq!(policy.max_attempts(), 8);
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let policy = policy(0.2);
        let mut rng = StdRng::seed_from_u64(7);
        let mut distinct = std::collections::HashSet::new();
        for _ in 0..1000 {
            let delay = policy.next_delay(2, None, &mut rng).expect("scheduled");
            assert!(delay >= Duration::from_secs(300) && delay <= Duration::from_secs(360), "{delay:?}");
            distinct.insert(delay);
        }
        assert!(distinct.len() > 100, "jitter spreads delays");
    }

    #[test]
    fn retry_after_pushes_later_within_the_cap() {
        let policy = policy(0.0);
        let mut rng = StdRng::seed_from_u64(3);
        let minute = Duration::from_secs(60);
        // Later than the schedule: honoured.
        assert_eq!(policy.next_delay(1, Some(minute), &mut rng), Some(minute));
        // Sooner than the schedule: the schedule wins.
        assert_eq!(policy.next_delay(2, Some(minute), &mut rng), Some(Duration::from_secs(300)));
        // Beyond retry_after_max (1 h): capped.
        assert_eq!(policy.next_delay(1, Some(Duration::from_secs(86_400)), &mut rng), Some(Duration::from_secs(3600)));
        // Not when the schedule is used up.
        assert_eq!(policy.next_delay(8, Some(minute), &mut rng), None);
    }

    #[test]
    fn classifies_statuses() {
        let strict = policy(0.0);
        let receiver_retry = Verdict::Retry(ErrorClass::Receiver);
        let receiver_final = Verdict::Final(ErrorClass::Receiver);
        let table = [
            (200, Verdict::Success),
            (201, Verdict::Success),
            (204, Verdict::Success),
            (299, Verdict::Success),
            (301, receiver_retry),
            (302, receiver_retry),
            (307, receiver_retry),
            (400, receiver_final),
            (401, receiver_final),
            (404, receiver_final),
            (408, receiver_retry),
            (409, receiver_retry),
            (410, Verdict::Gone),
            (413, receiver_final),
            (425, receiver_retry),
            (429, receiver_retry),
            (500, receiver_retry),
            (502, receiver_retry),
            (503, receiver_retry),
            (504, receiver_retry),
        ];
        for (code, verdict) in table {
            assert_eq!(strict.classify(AttemptResult::Status(code)), verdict, "{code}");
        }
        let lenient =
            RetryPolicy::from_config(&WebhooksConfig { retry_client_errors: true, ..WebhooksConfig::default() });
        assert_eq!(lenient.classify(AttemptResult::Status(404)), receiver_retry);
        assert_eq!(lenient.classify(AttemptResult::Status(410)), Verdict::Gone);
    }

    #[test]
    fn classifies_failures_without_a_response() {
        let policy = policy(0.0);
        for result in [AttemptResult::Timeout, AttemptResult::Connect, AttemptResult::Transport] {
            assert_eq!(policy.classify(result), Verdict::Retry(ErrorClass::Network), "{result:?}");
        }
        for result in [AttemptResult::Blocked, AttemptResult::Request] {
            assert_eq!(policy.classify(result), Verdict::Retry(ErrorClass::Ours), "{result:?}");
        }
        assert_eq!(Verdict::Gone.error_class(), Some(ErrorClass::Receiver));
        assert_eq!(Verdict::Success.error_class(), None);
    }

    #[test]
    fn parses_retry_after() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").expect("date");
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("99999999999999999999999", now), Some(Duration::from_secs(u64::MAX)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:30:30 GMT", now), Some(Duration::from_secs(150)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), Some(Duration::ZERO));
        // The obsolete RFC 850 and asctime forms are HTTP dates too.
        assert_eq!(parse_retry_after("Wednesday, 21-Oct-15 07:29:00 GMT", now), Some(Duration::from_secs(60)));
        assert_eq!(parse_retry_after("Wed Oct 21 07:29:00 2015", now), Some(Duration::from_secs(60)));
        for bad in ["", "-5", "1.5", "soon", "Wed, 21 Oct 2015"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    /// Retry delays are plain durations the dispatcher sleeps on; with a paused clock the whole
    /// schedule runs instantly and each step is exactly its delay.
    #[tokio::test(start_paused = true)]
    async fn schedule_runs_on_a_paused_clock() {
        let policy = policy(0.0);
        let mut rng = StdRng::seed_from_u64(9);
        let start = tokio::time::Instant::now();
        let mut attempt = 1;
        while let Some(delay) = policy.next_delay(attempt, None, &mut rng) {
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
        assert_eq!(attempt, policy.max_attempts());
        // 5s + 5m + 30m + 2h + 5h + 10h + 10h.
        assert_eq!(start.elapsed(), Duration::from_secs(5 + 300 + 1800 + 7200 + 18_000 + 36_000 + 36_000));
    }
}
