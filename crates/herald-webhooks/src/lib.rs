//! Herald's webhook dispatcher: claims due deliveries from the [`herald_store::Store`], signs
//! them the Standard Webhooks way, sends them over HTTP, and records each attempt and what
//! happens next (success, a retry at a later time, or a dead letter).
//!
//! # Design
//!
//! The store owns all durable state; this crate holds only what is in flight. A delivery is
//! claimed with a lease ([`herald_store::Store::claim_due_deliveries`]), sent with no store
//! transaction open, and settled with one [`herald_store::Store::record_attempt`] call. A
//! process that dies in between leaves the delivery to become due again when its lease ends, so
//! delivery is at least once; receivers deduplicate on `webhook-id`, which is the message id
//! and stays the same on every retry.
//!
//! Modules, from the bottom up:
//! - [`signing`]: `whsec_` (HMAC-SHA256, `v1`) and `whsk_` (ed25519, `v1a`) secrets, signatures
//!   over `{id}.{timestamp}.{body}`, and a verifier for tests and tools.
//! - [`ssrf`]: which addresses an endpoint may reach; checked when an endpoint is created and
//!   again at connect time through a DNS resolver installed in the HTTP client.
//! - [`retry`]: how an attempt's result is classified and when the next attempt is due.
//! - [`sender`]: one HTTP attempt, from a claimed delivery to a [`sender::SendOutcome`].
//! - [`dispatcher`]: the claim loop, the worker pool, per-endpoint concurrency and rate limits,
//!   endpoint health, and shutdown.

pub mod dispatcher;
pub mod retry;
pub mod sender;
pub mod signing;
pub mod ssrf;

pub use dispatcher::{Dispatcher, DispatcherError, DispatcherHandle, describe_metrics};
pub use retry::{AttemptResult, RetryPolicy, Verdict};
pub use sender::{SendOutcome, Sender, SenderError};
pub use ssrf::{Guard, SsrfError};

/// Install `ring` as the process-wide rustls crypto provider, once. reqwest is built with
/// `rustls-no-provider` (to keep aws-lc out of the build), so any reqwest client in the process,
/// not only the dispatcher's, needs a provider installed before it is built.
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
