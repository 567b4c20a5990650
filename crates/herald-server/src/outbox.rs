//! A connection's bounded outgoing queue.
//!
//! Everything a connection sends goes through its outbox: command replies, pushes from the hub
//! and control requests from the server API. Producers never wait: [`Outbox::push`] appends an
//! already-encoded message (shared `Bytes`, encoded once per publication) and wakes the
//! connection's task. When the queue would pass its byte or message bound, the outbox closes
//! itself with disconnect 3008 ("slow") and drops what it held, so a slow subscriber costs the
//! hub one failed push and never slows anyone else.
//!
//! The connection task drains everything queued at once ([`Outbox::take`]), so a burst of
//! messages leaves in one frame and one flush. Producers wake the task only when the queue goes
//! from empty to non-empty: a task with messages waiting has been woken already.
//!
//! An idle outbox holds no heap memory: the `VecDeque` allocates on first use and is shrunk
//! back when a burst has passed.

use std::collections::VecDeque;

use bytes::Bytes;
use parking_lot::{Mutex, MutexGuard};
use tokio::sync::Notify;

use crate::disconnect::Disconnect;

/// A request from outside the connection task, applied by the task itself because it owns the
/// connection's subscription state.
#[derive(Clone, Debug)]
pub enum Control {
    /// Subscribe the connection to a channel on the server's behalf (server API `subscribe`).
    Subscribe { channel: String, info: Option<Bytes>, data: Option<Bytes> },
    /// Unsubscribe the connection from a channel (server API `unsubscribe`).
    Unsubscribe { channel: String },
    /// Change when the connection expires (server API `refresh`); `None` never expires.
    Refresh { expire_at: Option<i64>, expired: bool },
}

/// One queued item.
#[derive(Debug)]
pub enum Item {
    /// An encoded reply or push, in the connection's protocol.
    Message(Bytes),
    Control(Box<Control>),
}

/// Bounds of one outbox, from `client.queue_max_bytes` and `client.queue_max_messages`.
#[derive(Clone, Copy, Debug)]
pub struct OutboxLimits {
    pub max_bytes: usize,
    pub max_messages: usize,
}

/// Why a push was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum PushError {
    /// The outbox is closing; the message is dropped along with the connection.
    Closed,
    /// This push overflowed the bounds; the outbox is now closing with 3008.
    Overflow,
}

pub struct Outbox {
    inner: Mutex<Inner>,
    notify: Notify,
    /// Woken when the outbox starts closing, for a writer blocked on a slow socket.
    close_notify: Notify,
    limits: OutboxLimits,
}

struct Inner {
    items: VecDeque<Item>,
    bytes: usize,
    closing: Option<Disconnect>,
}

impl Outbox {
    pub fn new(limits: OutboxLimits) -> Self {
        Self {
            inner: Mutex::new(Inner { items: VecDeque::new(), bytes: 0, closing: None }),
            notify: Notify::new(),
            close_notify: Notify::new(),
            limits,
        }
    }

    /// Queue an encoded message. Never waits.
    pub fn push(&self, message: Bytes) -> Result<(), PushError> {
        let len = message.len();
        {
            let mut inner = self.inner.lock();
            if inner.closing.is_some() {
                return Err(PushError::Closed);
            }
            if inner.items.len() >= self.limits.max_messages || inner.bytes + len > self.limits.max_bytes {
                return Err(self.overflow(inner));
            }
            let was_empty = inner.items.is_empty();
            inner.items.push_back(Item::Message(message));
            inner.bytes += len;
            if !was_empty {
                // The connection was woken when the queue became non-empty and has not drained
                // it yet; it will take this message with the others. Saves a wake per message
                // when a connection is behind, which is exactly when fan-out is busiest.
                return Ok(());
            }
        }
        self.notify.notify_one();
        Ok(())
    }

    /// Queue a message ahead of everything queued so far. Used for the connect reply, which
    /// must reach the client before pushes for its server-side subscriptions. Not bounded: it is
    /// one message per connection.
    pub fn push_front(&self, message: Bytes) {
        {
            let mut inner = self.inner.lock();
            if inner.closing.is_some() {
                return;
            }
            inner.bytes += message.len();
            inner.items.push_front(Item::Message(message));
        }
        self.notify.notify_one();
    }

    /// Queue a control request. Control requests are small and rare; they count against the
    /// message bound only, and overflowing it closes the connection as slow, like a push.
    pub fn control(&self, control: Control) -> Result<(), PushError> {
        {
            let mut inner = self.inner.lock();
            if inner.closing.is_some() {
                return Err(PushError::Closed);
            }
            if inner.items.len() >= self.limits.max_messages {
                return Err(self.overflow(inner));
            }
            inner.items.push_back(Item::Control(Box::new(control)));
        }
        self.notify.notify_one();
        Ok(())
    }

    /// The queue is full: drop the backlog and close the connection as slow (3008). A client
    /// that cannot keep up is never waited for.
    fn overflow(&self, mut inner: MutexGuard<'_, Inner>) -> PushError {
        inner.items = VecDeque::new();
        inner.bytes = 0;
        inner.closing = Some(Disconnect::SLOW);
        drop(inner);
        self.notify.notify_one();
        self.close_notify.notify_waiters();
        PushError::Overflow
    }

    /// Ask the connection to close with `disconnect`. The first close wins; what was queued
    /// before is still sent unless the close is for slowness.
    pub fn close(&self, disconnect: Disconnect) {
        {
            let mut inner = self.inner.lock();
            if inner.closing.is_some() {
                return;
            }
            inner.closing = Some(disconnect);
        }
        self.notify.notify_one();
        self.close_notify.notify_waiters();
    }

    /// Whether the outbox is closing, and why.
    pub fn closing(&self) -> Option<Disconnect> {
        self.inner.lock().closing.clone()
    }

    /// Wait until something is queued or the outbox closes.
    pub async fn ready(&self) {
        self.notify.notified().await;
    }

    /// Wait until the outbox starts closing and return why.
    pub async fn closed(&self) -> Disconnect {
        loop {
            let notified = self.close_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(disconnect) = self.closing() {
                return disconnect;
            }
            notified.await;
        }
    }

    /// Wake the connection task as if something had been queued.
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    /// Take everything queued, in order, into `spare` (an empty queue whose capacity the
    /// outbox takes over), and return the close request, if any. The lock is held for a swap;
    /// a busy connection's two queues trade places without allocating.
    pub fn take(&self, spare: &mut VecDeque<Item>) -> Option<Disconnect> {
        debug_assert!(spare.is_empty());
        let mut inner = self.inner.lock();
        std::mem::swap(&mut inner.items, spare);
        inner.bytes = 0;
        inner.closing.clone()
    }

    /// Free the queue's memory if nothing is queued: an idle connection holds none. Returns
    /// whether the queue was empty.
    pub fn release_if_empty(&self) -> bool {
        let mut inner = self.inner.lock();
        if !inner.items.is_empty() {
            return false;
        }
        inner.items = VecDeque::new();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox(max_bytes: usize, max_messages: usize) -> Outbox {
        Outbox::new(OutboxLimits { max_bytes, max_messages })
    }

    #[test]
    fn overflow_by_messages_closes_as_slow() {
        let outbox = outbox(1 << 20, 2);
        assert_eq!(outbox.push(Bytes::from_static(b"a")), Ok(()));
        assert_eq!(outbox.push(Bytes::from_static(b"b")), Ok(()));
        assert_eq!(outbox.push(Bytes::from_static(b"c")), Err(PushError::Overflow));
        assert_eq!(outbox.push(Bytes::from_static(b"d")), Err(PushError::Closed));
        let mut items = VecDeque::new();
        assert_eq!(outbox.take(&mut items), Some(Disconnect::SLOW));
        assert!(items.is_empty(), "a slow client's backlog is dropped, not sent");
    }

    #[test]
    fn control_overflow_closes_as_slow_too() {
        let outbox = outbox(100, 2);
        outbox.push(Bytes::from_static(b"a")).expect("fits");
        outbox.control(Control::Unsubscribe { channel: "x".into() }).expect("fits");
        assert_eq!(outbox.control(Control::Unsubscribe { channel: "y".into() }), Err(PushError::Overflow));
        assert_eq!(outbox.closing(), Some(Disconnect::SLOW), "a full queue closes whatever overflows it");
        let mut items = VecDeque::new();
        assert_eq!(outbox.take(&mut items), Some(Disconnect::SLOW));
        assert!(items.is_empty());
    }

    #[test]
    fn overflow_by_bytes_closes_as_slow() {
        let outbox = outbox(10, 100);
        assert_eq!(outbox.push(Bytes::from_static(b"12345678")), Ok(()));
        assert_eq!(outbox.push(Bytes::from_static(b"123")), Err(PushError::Overflow));
        assert_eq!(outbox.closing(), Some(Disconnect::SLOW));
    }

    #[test]
    fn drain_takes_everything_in_order_and_frees_budget() {
        let outbox = outbox(10, 100);
        outbox.push(Bytes::from_static(b"12345")).expect("fits");
        outbox.control(Control::Unsubscribe { channel: "x".into() }).expect("fits");
        outbox.push(Bytes::from_static(b"6789")).expect("fits");
        let mut items = VecDeque::new();
        assert_eq!(outbox.take(&mut items), None);
        assert_eq!(items.len(), 3);
        assert!(matches!(&items[0], Item::Message(m) if m.as_ref() == b"12345"));
        assert!(matches!(&items[1], Item::Control(c) if matches!(**c, Control::Unsubscribe { .. })));
        // The byte budget is free again after a drain; an empty queue can give its memory back.
        outbox.push(Bytes::from_static(b"1234567890")).expect("fits again");
        assert!(!outbox.release_if_empty());
        outbox.take(&mut VecDeque::new());
        assert!(outbox.release_if_empty());
        assert_eq!(outbox.inner.lock().items.capacity(), 0);
    }

    #[test]
    fn first_close_wins() {
        let outbox = outbox(10, 10);
        outbox.close(Disconnect::SHUTDOWN);
        outbox.close(Disconnect::SLOW);
        assert_eq!(outbox.closing(), Some(Disconnect::SHUTDOWN));
    }
}
