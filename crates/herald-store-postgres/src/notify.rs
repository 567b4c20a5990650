//! Wake-ups across nodes: one dedicated connection per node LISTENs on the schema's channel
//! and wakes the store's `work_notify` on every notification. The writer sends them with
//! `pg_notify` inside the batches that create delivery work, so they arrive only after commit.
//!
//! The connection reconnects by itself, with a growing pause (100 ms to 5 s) while the
//! database is away. Notifications sent while it was down are lost, so a fresh LISTEN wakes
//! the dispatchers once: they claim whatever became due meanwhile.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls};

use super::stable_hash;

/// The notification channel of a schema: its own name, so two schemas (two clusters on one
/// database) never wake each other. Identifiers stop at 63 bytes: a longer name is hashed.
pub(crate) fn channel_name(schema: &str) -> String {
    let plain = format!("{schema}_work");
    if plain.len() <= 63 { plain } else { format!("herald_work_{:016x}", stable_hash(schema)) }
}

fn wake(notify: &Notify) {
    notify.notify_waiters();
    notify.notify_one();
}

/// The listener task; runs until aborted (when the store goes).
pub(crate) async fn listen(
    pg_config: tokio_postgres::Config,
    connect_timeout: Duration,
    channel: String,
    notify: Arc<Notify>,
) {
    const MIN_PAUSE: Duration = Duration::from_millis(100);
    const MAX_PAUSE: Duration = Duration::from_secs(5);
    let mut pause = MIN_PAUSE;
    loop {
        match tokio::time::timeout(connect_timeout, pg_config.connect(NoTls)).await {
            Ok(Ok((client, mut connection))) => {
                let forward = notify.clone();
                // The connection is driven here; notifications come out of it.
                let driver = tokio::spawn(async move {
                    loop {
                        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                            Some(Ok(AsyncMessage::Notification(_))) => wake(&forward),
                            Some(Ok(_)) => {}
                            Some(Err(error)) => return Some(error),
                            None => return None,
                        }
                    }
                });
                match client.batch_execute(&format!("LISTEN {channel}")).await {
                    Ok(()) => {
                        pause = MIN_PAUSE;
                        // Whatever was notified before this LISTEN is not lost work.
                        wake(&notify);
                        if let Ok(Some(error)) = driver.await {
                            tracing::warn!(error = %error, "The PostgreSQL LISTEN connection was lost; reconnecting.");
                        }
                    }
                    Err(error) => {
                        tracing::warn!(error = %error, "LISTEN failed on PostgreSQL; reconnecting.");
                        driver.abort();
                    }
                }
                drop(client);
            }
            Ok(Err(error)) => {
                tracing::warn!(error = %error, "Cannot connect to PostgreSQL for LISTEN; retrying.");
            }
            Err(_) => tracing::warn!("Connecting to PostgreSQL for LISTEN timed out; retrying."),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}
