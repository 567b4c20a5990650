//! The request kinds the writer runs batch-wide (see `writer.rs`), apart from the writer so that
//! the modules implementing them (`messages.rs`, `deliveries.rs`) do not depend on it.

use std::future::Future;
use std::pin::Pin;

use super::rows::Conn;
use herald_store::{StoreResult, Timestamp};

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A write that is run together with the other requests of its kind in a batch (see the
/// module doc).
pub(crate) trait Batched: Send + Sized + 'static {
    type Output: Send + 'static;
    /// Runs `inputs` together. `Err` when a statement failed: the run's work is rolled back and
    /// its requests are redone one at a time. Otherwise each request's outcome, in order; a
    /// request that failed on its own (an unknown application) must have written nothing.
    fn run<'a>(
        conn: &'a Conn,
        inputs: Vec<&'a Self>,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<Vec<StoreResult<Self::Output>>>>;
    /// Whether the output created delivery work (the batch then notifies).
    fn wakes(output: &Self::Output) -> bool;
    /// Whether the run changes endpoint queues (it then needs the cluster's writer lock).
    const CHANGES_QUEUES: bool;
}
