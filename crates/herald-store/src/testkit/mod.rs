//! The generic store test suite: every backend runs it unchanged, proptest models included.
//!
//! A backend implements [`Harness`] (how to get a store on fresh, private state, and how to
//! reopen it) and expands [`store_suite!`](crate::store_suite) in one of its integration
//! tests:
//!
//! ```ignore
//! struct Sqlite { /* a temp dir and the store */ }
//! impl herald_store::testkit::Harness for Sqlite { /* ... */ }
//! herald_store::store_suite!(Sqlite);
//! ```
//!
//! Each test here is an `async fn name<H: Harness>()`; the macro turns each into a `#[tokio::test]`
//! of the backend's test binary, and the two state-machine models (`model.rs`: the delivery
//! queue's claim and lease rules, durable streams with retention) into proptest tests. Tests
//! that only make sense for one backend (its schema, its files) stay in that backend's crate.

use std::future::Future;

use crate::Store;

pub mod channels;
pub mod common;
pub mod crud;
pub mod model;
pub mod webhooks;

pub use proptest;

/// A backend under test: a store on fresh state that no other test sees (its own database
/// file, database, schema or key prefix).
pub trait Harness: Send + Sized + 'static {
    type Store: Store + Clone;
    /// A store on fresh, private state. Panics when it cannot be had.
    fn open() -> impl Future<Output = Self> + Send;
    fn store(&self) -> &Self::Store;
    /// Close the store and open the same state again, as a restart does.
    fn reopen(&mut self) -> impl Future<Output = ()> + Send;
}

/// Expand the whole generic suite into tests of `$harness` (see the module docs).
#[macro_export]
macro_rules! store_suite {
    ($harness:ty) => {
        $crate::store_suite!(@tests $harness;
            channels::appends_number_each_channel_from_one,
            channels::an_unknown_channel_gets_a_stable_epoch,
            channels::history_reads_forward_backward_and_since,
            channels::removing_history_keeps_the_position,
            channels::retention_by_count_age_and_namespace,
            channels::retention_walks_many_channels_in_chunks,
            channels::concurrent_appends_get_contiguous_offsets,
            channels::reopening_keeps_streams_and_epochs,
            channels::a_failing_write_in_a_batch_fails_alone,
            crud::apps_round_trip_by_id_and_uid,
            crud::deleting_an_app_removes_everything_under_it,
            crud::pagination_walks_forward_backward_and_reports_done,
            crud::event_types_archive_and_expunge,
            crud::endpoints_round_trip_update_rotate_and_health,
            crud::idempotency_keys_first_writer_wins_and_prune,
            crud::messages_by_event_id_and_filtered_listing,
            webhooks::messages_fan_out_to_matching_enabled_endpoints_only,
            webhooks::an_event_id_is_used_once_per_app,
            webhooks::an_ordered_endpoint_gets_one_delivery_at_a_time_in_message_order,
            webhooks::an_unordered_endpoint_gets_everything_due_at_once,
            webhooks::an_expired_lease_makes_a_delivery_claimable_again,
            webhooks::record_attempt_moves_the_delivery_and_lists_attempts,
            webhooks::dead_letters_are_listed_and_replayed,
            webhooks::recover_and_resend_queue_fresh_manual_deliveries,
            webhooks::a_resend_to_an_ordered_endpoint_waits_behind_its_queue,
            webhooks::a_disabled_endpoint_keeps_its_queue_until_enabled,
            webhooks::concurrent_messages_and_attempts_keep_the_queue_rules
        );

        $crate::testkit::proptest::proptest! {
            #![proptest_config($crate::testkit::proptest::prelude::ProptestConfig {
                cases: 40,
                ..$crate::testkit::proptest::prelude::ProptestConfig::default()
            })]

            #[test]
            fn claims_follow_the_ordering_and_lease_rules(
                ops in $crate::testkit::proptest::collection::vec($crate::testkit::model::queue_op(), 1..40),
                ordered in $crate::testkit::proptest::prelude::any::<[bool; 3]>(),
            ) {
                $crate::testkit::model::runtime()
                    .block_on($crate::testkit::model::run_queue::<$harness>(ops, ordered))?;
            }

            #[test]
            fn streams_and_retention_match_the_model(
                ops in $crate::testkit::proptest::collection::vec($crate::testkit::model::stream_op(), 1..40),
            ) {
                $crate::testkit::model::runtime().block_on($crate::testkit::model::run_streams::<$harness>(ops))?;
            }
        }
    };
    (@tests $harness:ty; $($module:ident :: $name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::testkit::$module::$name::<$harness>().await;
            }
        )*
    };
}
