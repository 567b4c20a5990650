//! A channel's in-memory stream: an epoch, a monotonically increasing offset, and the last
//! `history_size` publications for `history_ttl`.
//!
//! Recovery is all or nothing: a client that was at `(epoch, offset)` gets every publication
//! after `offset`, in order, or is told it cannot recover. It can recover only when the epoch is
//! unchanged (the stream was not lost) and the first missing publication is still kept. A
//! partial answer would let the client believe it has seen everything when it has not.
//!
//! The epoch changes whenever the stream is created anew (first publish after the channel was
//! forgotten, or a restart of this in-memory store), which tells returning clients that their
//! offsets mean nothing here.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A position in a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    pub epoch: Arc<str>,
    pub offset: u64,
}

/// The position asked for is gone: another epoch, or publications after it were dropped.
#[derive(Debug, PartialEq, Eq)]
pub struct Unrecoverable;

pub struct Stream<T> {
    epoch: Arc<str>,
    offset: u64,
    entries: VecDeque<Entry<T>>,
    max_size: usize,
    ttl: Duration,
    last_publish: Instant,
}

struct Entry<T> {
    offset: u64,
    expires_at: Instant,
    value: T,
}

impl<T: Clone> Stream<T> {
    pub fn new(max_size: usize, ttl: Duration, now: Instant) -> Self {
        Self { epoch: new_epoch(), offset: 0, entries: VecDeque::new(), max_size, ttl, last_publish: now }
    }

    /// A stream rebuilt from durable storage: its epoch, its top offset, and the kept
    /// publications (oldest first) with their ages.
    pub fn restore(
        max_size: usize,
        ttl: Duration,
        epoch: Arc<str>,
        offset: u64,
        entries: impl IntoIterator<Item = (u64, T, Duration)>,
        now: Instant,
    ) -> Self {
        let mut stream = Self { epoch, offset, entries: VecDeque::new(), max_size, ttl, last_publish: now };
        for (entry_offset, value, age) in entries {
            let expires_at = (now + ttl).checked_sub(age).unwrap_or(now);
            stream.entries.push_back(Entry { offset: entry_offset, expires_at, value });
        }
        while stream.entries.len() > max_size {
            stream.entries.pop_front();
        }
        stream.prune(now);
        stream
    }

    /// Keep a publication whose offset was assigned elsewhere (the store). Offsets must
    /// arrive in order; the stream's offset becomes `offset`.
    pub fn insert(&mut self, now: Instant, offset: u64, value: T) {
        self.offset = self.offset.max(offset);
        self.last_publish = now;
        if self.max_size > 0 {
            self.entries.push_back(Entry { offset, expires_at: now + self.ttl, value });
            while self.entries.len() > self.max_size {
                self.entries.pop_front();
            }
        }
        self.prune(now);
    }

    pub fn epoch(&self) -> &Arc<str> {
        &self.epoch
    }

    pub fn position(&self) -> Position {
        Position { epoch: self.epoch.clone(), offset: self.offset }
    }

    /// Time of the last publish, for forgetting idle channels.
    pub fn last_publish(&self) -> Instant {
        self.last_publish
    }

    /// Number of publications currently kept.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Take the next offset. With `keep`, the publication `make(offset)` builds is kept for
    /// history; without, only the offset advances (`skip_history`).
    pub fn append(&mut self, now: Instant, keep: bool, make: impl FnOnce(u64) -> T) -> (u64, T) {
        self.offset += 1;
        self.last_publish = now;
        let value = make(self.offset);
        if keep && self.max_size > 0 {
            self.entries.push_back(Entry { offset: self.offset, expires_at: now + self.ttl, value: value.clone() });
            while self.entries.len() > self.max_size {
                self.entries.pop_front();
            }
        }
        self.prune(now);
        (self.offset, value)
    }

    /// Drop expired publications.
    pub fn prune(&mut self, now: Instant) {
        while self.entries.front().is_some_and(|e| e.expires_at <= now) {
            self.entries.pop_front();
        }
    }

    /// Forget all kept publications; the position stays (`history_remove`).
    pub fn clear(&mut self) {
        self.entries = VecDeque::new();
    }

    /// Everything after `since`, in order, or `Unrecoverable`. At most `max` publications may be
    /// missing for recovery to be attempted.
    /// Whether a client's epoch names this stream; an empty one matches any (Centrifugo's rule:
    /// the SDKs send it when they know an offset but no epoch).
    fn epoch_matches(&self, epoch: &str) -> bool {
        epoch.is_empty() || *epoch == *self.epoch
    }

    pub fn recover(&mut self, since: &Position, max: usize, now: Instant) -> Result<Vec<T>, Unrecoverable> {
        self.prune(now);
        if !self.epoch_matches(&since.epoch) || since.offset > self.offset {
            return Err(Unrecoverable);
        }
        let missing = self.offset - since.offset;
        if missing == 0 {
            return Ok(Vec::new());
        }
        if missing > max as u64 {
            return Err(Unrecoverable);
        }
        let first_needed = since.offset + 1;
        match self.entries.front() {
            Some(first) if first.offset <= first_needed => {}
            _ => return Err(Unrecoverable),
        }
        Ok(self.entries.iter().filter(|e| e.offset >= first_needed).map(|e| e.value.clone()).collect())
    }

    /// History as the API and the history command read it: up to `limit` publications (after
    /// `since` when given), oldest first, or newest first with `reverse`.
    pub fn read(
        &mut self,
        since: Option<&Position>,
        limit: usize,
        reverse: bool,
        now: Instant,
    ) -> Result<Vec<T>, Unrecoverable> {
        self.prune(now);
        let after = match since {
            Some(since) => {
                if !self.epoch_matches(&since.epoch) || since.offset > self.offset {
                    return Err(Unrecoverable);
                }
                since.offset
            }
            None => 0,
        };
        let iter = self.entries.iter().filter(|e| e.offset > after);
        let values: Vec<T> = if reverse {
            iter.rev().take(limit).map(|e| e.value.clone()).collect()
        } else {
            iter.take(limit).map(|e| e.value.clone()).collect()
        };
        Ok(values)
    }
}

fn new_epoch() -> Arc<str> {
    // Short random epochs, as Centrifugo's memory engine uses.
    let bytes: [u8; 4] = rand::random();
    Arc::from(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(size: usize, ttl_secs: u64) -> (Stream<u64>, Instant) {
        let now = Instant::now();
        (Stream::new(size, Duration::from_secs(ttl_secs), now), now)
    }

    #[test]
    fn offsets_increase_and_size_is_bounded() {
        let (mut s, now) = stream(3, 60);
        for _ in 0..5 {
            s.append(now, true, |o| o);
        }
        assert_eq!(s.position().offset, 5);
        assert_eq!(s.len(), 3);
        assert_eq!(s.read(None, 10, false, now), Ok(vec![3, 4, 5]));
        assert_eq!(s.read(None, 2, true, now), Ok(vec![5, 4]));
    }

    #[test]
    fn recovery_is_all_or_nothing() {
        let (mut s, now) = stream(3, 60);
        for _ in 0..5 {
            s.append(now, true, |o| o);
        }
        let epoch = s.position().epoch;
        // Publications 3..=5 are kept: a client at 2 recovers, a client at 1 cannot.
        assert_eq!(s.recover(&Position { epoch: epoch.clone(), offset: 2 }, 100, now), Ok(vec![3, 4, 5]));
        assert_eq!(s.recover(&Position { epoch: epoch.clone(), offset: 1 }, 100, now), Err(Unrecoverable));
        assert_eq!(s.recover(&Position { epoch: epoch.clone(), offset: 5 }, 100, now), Ok(vec![]));
        assert_eq!(s.recover(&Position { epoch: epoch.clone(), offset: 6 }, 100, now), Err(Unrecoverable));
        assert_eq!(s.recover(&Position { epoch: "other".into(), offset: 4 }, 100, now), Err(Unrecoverable));
        assert_eq!(s.recover(&Position { epoch, offset: 2 }, 2, now), Err(Unrecoverable), "over the limit");
    }

    #[test]
    fn ttl_expires_publications_but_keeps_position() {
        let (mut s, now) = stream(10, 5);
        s.append(now, true, |o| o);
        s.append(now + Duration::from_secs(3), true, |o| o);
        let later = now + Duration::from_secs(6);
        assert_eq!(s.read(None, 10, false, later), Ok(vec![2]));
        let epoch = s.position().epoch;
        assert_eq!(s.recover(&Position { epoch: epoch.clone(), offset: 0 }, 10, later), Err(Unrecoverable));
        assert_eq!(s.recover(&Position { epoch, offset: 1 }, 10, later), Ok(vec![2]));
    }

    #[test]
    fn skip_history_advances_offset_only() {
        let (mut s, now) = stream(10, 60);
        s.append(now, true, |o| o);
        s.append(now, false, |o| o);
        assert_eq!(s.position().offset, 2);
        assert_eq!(s.len(), 1);
        s.clear();
        assert!(s.is_empty());
        assert_eq!(s.position().offset, 2);
    }

    #[test]
    fn restore_and_insert_continue_a_stored_stream() {
        let now = Instant::now();
        let ttl = Duration::from_secs(60);
        let entries = vec![(4, 4u64, Duration::from_secs(70)), (5, 5, Duration::from_secs(10)), (6, 6, Duration::ZERO)];
        let mut s = Stream::restore(10, ttl, Arc::from("e1"), 6, entries, now);
        // The entry older than the TTL is gone; the position is the stored one.
        assert_eq!(s.read(None, 10, false, now), Ok(vec![5, 6]));
        assert_eq!(s.position(), Position { epoch: Arc::from("e1"), offset: 6 });
        s.insert(now, 7, 7);
        let since = Position { epoch: Arc::from("e1"), offset: 5 };
        assert_eq!(s.recover(&since, 10, now), Ok(vec![6, 7]));
    }

    #[test]
    fn since_filters_and_checks_epoch() {
        let (mut s, now) = stream(10, 60);
        for _ in 0..4 {
            s.append(now, true, |o| o);
        }
        let epoch = s.position().epoch;
        assert_eq!(s.read(Some(&Position { epoch: epoch.clone(), offset: 2 }), 10, false, now), Ok(vec![3, 4]));
        assert_eq!(s.read(Some(&Position { epoch: "x".into(), offset: 2 }), 10, false, now), Err(Unrecoverable));
    }
}
