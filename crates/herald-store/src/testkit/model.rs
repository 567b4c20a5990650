//! Property tests: the store against small in-memory models of two state machines, the
//! delivery queue's claim rules and the durable channel streams with retention.

use std::collections::{BTreeMap, HashMap};

use crate::roles::*;
use crate::{AttemptStatus, DeliveryCounts, DeliveryNext, DeliveryStatus, EndpointUpdate, Store, now_ms};
use proptest::prelude::*;

use super::Harness;
use super::common::{app, attempt, endpoint, endpoint_spec, message, publication};

/// The runtime a property case runs on.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

// --- the delivery queue -----------------------------------------------------------------------

#[derive(Clone, Debug)]
pub enum QueueOp {
    /// A message of type `t{kind}`; endpoint `i` takes types `t{i}` and `t2` only when filtered.
    Message {
        kind: u8,
    },
    Claim {
        advance: u16,
        limit: usize,
        lease: u16,
    },
    Record {
        pick: usize,
        outcome: Outcome,
    },
    Replay,
    Resend {
        msg_pick: usize,
        endpoint: usize,
    },
    /// Switch an endpoint between ordered (`max_concurrency` 1) and unordered.
    Reorder {
        endpoint: usize,
    },
}

#[derive(Clone, Copy, Debug)]
pub enum Outcome {
    Succeeded,
    Retry(i16),
    Dead,
}

pub fn queue_op() -> impl Strategy<Value = QueueOp> {
    let outcome = prop_oneof![Just(Outcome::Succeeded), (-50i16..3_000).prop_map(Outcome::Retry), Just(Outcome::Dead),];
    prop_oneof![
        4 => (0u8..3).prop_map(|kind| QueueOp::Message { kind }),
        5 => (0u16..2_000, 1usize..4, 1u16..3_000).prop_map(|(advance, limit, lease)| QueueOp::Claim { advance, limit, lease }),
        4 => (any::<usize>(), outcome).prop_map(|(pick, outcome)| QueueOp::Record { pick, outcome }),
        1 => Just(QueueOp::Replay),
        1 => (any::<usize>(), 0usize..3).prop_map(|(msg_pick, endpoint)| QueueOp::Resend { msg_pick, endpoint }),
        1 => (0usize..3).prop_map(|endpoint| QueueOp::Reorder { endpoint }),
    ]
}

#[derive(Clone, Debug)]
struct ModelDelivery {
    id: i64,
    endpoint: usize,
    msg: String,
    status: DeliveryStatus,
    next_at: Option<i64>,
    lease_until: Option<i64>,
}

impl ModelDelivery {
    fn unfinished(&self) -> bool {
        matches!(self.status, DeliveryStatus::Pending | DeliveryStatus::Sending)
    }

    fn natural_due(&self) -> Option<i64> {
        match self.status {
            DeliveryStatus::Pending => self.next_at,
            DeliveryStatus::Sending => self.lease_until,
            _ => None,
        }
    }
}

struct QueueModel {
    ordered: Vec<bool>,
    deliveries: Vec<ModelDelivery>,
}

impl QueueModel {
    /// The claim rule, stated directly: due, and for an ordered endpoint the oldest unfinished
    /// delivery with nothing else of the endpoint under a live lease.
    fn claim(&mut self, now: i64, limit: usize, lease: i64) -> Vec<i64> {
        let mut candidates: Vec<(i64, i64)> = Vec::new();
        for d in &self.deliveries {
            let Some(due) = d.natural_due().filter(|due| *due <= now) else { continue };
            if self.ordered[d.endpoint] {
                let head =
                    self.deliveries.iter().filter(|o| o.endpoint == d.endpoint && o.unfinished()).map(|o| o.id).min();
                let in_flight = self.deliveries.iter().any(|o| {
                    o.endpoint == d.endpoint
                        && o.id != d.id
                        && o.status == DeliveryStatus::Sending
                        && o.lease_until.is_some_and(|l| l > now)
                });
                if head != Some(d.id) || in_flight {
                    continue;
                }
            }
            candidates.push((due, d.id));
        }
        candidates.sort_unstable();
        let claimed: Vec<i64> = candidates.into_iter().take(limit).map(|(_, id)| id).collect();
        for d in self.deliveries.iter_mut().filter(|d| claimed.contains(&d.id)) {
            d.status = DeliveryStatus::Sending;
            d.lease_until = Some(now + lease);
        }
        claimed
    }

    fn counts(&self) -> DeliveryCounts {
        let count = |s| self.deliveries.iter().filter(|d| d.status == s).count() as u64;
        DeliveryCounts {
            pending: count(DeliveryStatus::Pending),
            sending: count(DeliveryStatus::Sending),
            succeeded: count(DeliveryStatus::Success),
            failed: count(DeliveryStatus::Failed),
        }
    }
}

fn update_for(url: &str, ordered: bool, filter: Option<Vec<String>>) -> EndpointUpdate {
    EndpointUpdate {
        uid: None,
        url: url.to_owned(),
        description: String::new(),
        version: 1,
        disabled: false,
        event_types: filter,
        channels: None,
        headers: BTreeMap::new(),
        rate_limit: None,
        max_concurrency: if ordered { 1 } else { 3 },
        metadata: BTreeMap::new(),
    }
}

/// Pull the store's own view of a message's latest deliveries into the model (ids and times
/// the store chose).
async fn sync_message(store: &impl Store, app_id: &str, msg_id: &str, endpoint_ids: &[String], model: &mut QueueModel) {
    for delivery in store.list_deliveries_for_message(app_id, msg_id).await.expect("deliveries") {
        let endpoint = endpoint_ids.iter().position(|e| *e == delivery.endpoint_id).expect("known endpoint");
        match model.deliveries.iter_mut().find(|d| d.id == delivery.id) {
            Some(known) => known.next_at = delivery.next_attempt_at,
            None => model.deliveries.push(ModelDelivery {
                id: delivery.id,
                endpoint,
                msg: msg_id.to_owned(),
                status: delivery.status,
                next_at: delivery.next_attempt_at,
                lease_until: None,
            }),
        }
    }
}

/// One case of the delivery-queue model: `ops` against a fresh store and the model.
pub async fn run_queue<H: Harness>(ops: Vec<QueueOp>, ordered: [bool; 3]) -> Result<(), TestCaseError> {
    let db = H::open().await;
    let store = db.store();
    let owner = app(store, None).await;
    let mut endpoint_ids = Vec::new();
    let mut filters = Vec::new();
    for (i, is_ordered) in ordered.iter().enumerate() {
        let mut spec = endpoint_spec(&format!("https://e{i}.example"));
        spec.max_concurrency = if *is_ordered { 1 } else { 3 };
        // Endpoint 0 takes everything; the others only their own type and `t2`.
        spec.event_types = (i > 0).then(|| vec![format!("t{i}"), "t2".to_owned()]);
        filters.push(spec.event_types.clone());
        endpoint_ids.push(endpoint(store, &owner.id, spec).await.id);
    }
    let mut model = QueueModel { ordered: ordered.to_vec(), deliveries: Vec::new() };
    let mut messages: Vec<String> = Vec::new();
    // Every time the store sets by itself (creation, replay) is well before the claim clock.
    let mut clock = now_ms() + 1_000_000;

    for op in ops {
        match op {
            QueueOp::Message { kind } => {
                let (msg, _) = store.create_message(message(&owner.id, &format!("t{kind}"))).await.expect("create");
                sync_message(store, &owner.id, &msg.id, &endpoint_ids, &mut model).await;
                messages.push(msg.id);
            }
            QueueOp::Claim { advance, limit, lease } => {
                clock += i64::from(advance);
                let got: Vec<i64> = store
                    .claim_due_deliveries(clock, limit, i64::from(lease))
                    .await
                    .expect("claim")
                    .iter()
                    .map(|c| c.delivery.id)
                    .collect();
                let want = model.claim(clock, limit, i64::from(lease));
                prop_assert_eq!(got, want, "claim at {}", clock);
            }
            QueueOp::Record { pick, outcome } => {
                let sending: Vec<usize> = (0..model.deliveries.len())
                    .filter(|i| model.deliveries[*i].status == DeliveryStatus::Sending)
                    .collect();
                if sending.is_empty() {
                    continue;
                }
                let idx = sending[pick % sending.len()];
                let (next, status, next_at) = match outcome {
                    Outcome::Succeeded => (DeliveryNext::Succeeded, DeliveryStatus::Success, None),
                    Outcome::Retry(delta) => {
                        let at = clock + i64::from(delta);
                        (DeliveryNext::RetryAt(at), DeliveryStatus::Pending, Some(at))
                    }
                    Outcome::Dead => (DeliveryNext::Dead, DeliveryStatus::Failed, None),
                };
                store
                    .record_attempt(model.deliveries[idx].id, attempt(AttemptStatus::Fail, 500), next)
                    .await
                    .expect("record");
                let d = &mut model.deliveries[idx];
                d.status = status;
                d.next_at = next_at;
                d.lease_until = None;
            }
            QueueOp::Replay => {
                let latest_dead: Vec<usize> = (0..model.deliveries.len())
                    .filter(|i| {
                        let d = &model.deliveries[*i];
                        d.status == DeliveryStatus::Failed
                            && !model
                                .deliveries
                                .iter()
                                .any(|o| o.msg == d.msg && o.endpoint == d.endpoint && o.id > d.id)
                    })
                    .collect();
                let replayed = store.replay_dead_letters(None, None).await.expect("replay");
                prop_assert_eq!(replayed, latest_dead.len() as u64);
                let mut touched = Vec::new();
                for idx in latest_dead {
                    model.deliveries[idx].status = DeliveryStatus::Pending;
                    touched.push(model.deliveries[idx].msg.clone());
                }
                for msg in touched {
                    sync_message(store, &owner.id, &msg, &endpoint_ids, &mut model).await;
                }
            }
            QueueOp::Resend { msg_pick, endpoint } => {
                if messages.is_empty() {
                    continue;
                }
                let msg = messages[msg_pick % messages.len()].clone();
                store.resend(&owner.id, &msg, &endpoint_ids[endpoint]).await.expect("resend");
                sync_message(store, &owner.id, &msg, &endpoint_ids, &mut model).await;
            }
            QueueOp::Reorder { endpoint } => {
                let ordered = !model.ordered[endpoint];
                let update = update_for(&format!("https://e{endpoint}.example"), ordered, filters[endpoint].clone());
                store.update_endpoint(&owner.id, &endpoint_ids[endpoint], update).await.expect("update");
                model.ordered[endpoint] = ordered;
            }
        }
        prop_assert_eq!(store.delivery_counts().await.expect("counts"), model.counts());
    }
    Ok(())
}

// --- durable channel streams --------------------------------------------------------------------

const CHANNELS: [&str; 4] = ["a:x", "a:y", "b", "c"];

#[derive(Clone, Debug)]
pub enum StreamOp {
    Append { picks: Vec<usize>, step: u8 },
    Remove { channel: usize },
    Prune { namespaced: bool, max_count: usize, max_age: i64, advance: u8 },
    History { channel: usize, since: Option<u64>, limit: usize, reverse: bool },
    Position { channel: usize },
}

pub fn stream_op() -> impl Strategy<Value = StreamOp> {
    prop_oneof![
        5 => (proptest::collection::vec(0usize..4, 1..6), 0u8..5).prop_map(|(picks, step)| StreamOp::Append { picks, step }),
        1 => (0usize..4).prop_map(|channel| StreamOp::Remove { channel }),
        2 => (any::<bool>(), 0usize..6, 0i64..30, 0u8..10)
            .prop_map(|(namespaced, max_count, max_age, advance)| StreamOp::Prune { namespaced, max_count, max_age, advance }),
        3 => (0usize..4, proptest::option::of(0u64..25), 0usize..8, any::<bool>())
            .prop_map(|(channel, since, limit, reverse)| StreamOp::History { channel, since, limit, reverse }),
        1 => (0usize..4).prop_map(|channel| StreamOp::Position { channel }),
    ]
}

#[derive(Default)]
struct ModelStream {
    epoch: Option<String>,
    top: u64,
    /// (offset, created_at, data), oldest first.
    kept: Vec<(u64, i64, String)>,
}

fn check_epoch(stream: &mut ModelStream, epoch: &str) -> Result<(), TestCaseError> {
    match &stream.epoch {
        Some(known) => prop_assert_eq!(known.as_str(), epoch, "epochs never change"),
        None => stream.epoch = Some(epoch.to_owned()),
    }
    Ok(())
}

/// One case of the durable-stream model: `ops` against a fresh store and the model.
pub async fn run_streams<H: Harness>(ops: Vec<StreamOp>) -> Result<(), TestCaseError> {
    let db = H::open().await;
    let store = db.store();
    let mut model: HashMap<&str, ModelStream> = CHANNELS.iter().map(|c| (*c, ModelStream::default())).collect();
    let mut clock = 1_000i64;
    let mut counter = 0u64;
    for op in ops {
        match op {
            StreamOp::Append { picks, step } => {
                clock += i64::from(step);
                let batch: Vec<_> = picks
                    .iter()
                    .map(|pick| {
                        counter += 1;
                        publication(CHANNELS[*pick], &format!("d{counter}"), clock)
                    })
                    .collect();
                let texts: Vec<String> = batch.iter().map(|p| String::from_utf8_lossy(&p.data).into_owned()).collect();
                let positions = store.append_publications(batch).await.expect("append");
                prop_assert_eq!(positions.len(), picks.len());
                for ((pick, position), text) in picks.iter().zip(positions).zip(texts) {
                    let stream = model.get_mut(CHANNELS[*pick]).expect("channel");
                    stream.top += 1;
                    prop_assert_eq!(position.offset, stream.top);
                    check_epoch(stream, &position.epoch)?;
                    stream.kept.push((stream.top, clock, text));
                }
            }
            StreamOp::Remove { channel } => {
                store.channel_history_remove(CHANNELS[channel]).await.expect("remove");
                model.get_mut(CHANNELS[channel]).expect("channel").kept.clear();
            }
            StreamOp::Prune { namespaced, max_count, max_age, advance } => {
                clock += i64::from(advance);
                let prefix = if namespaced { "a:" } else { "" };
                let mut want = 0u64;
                for channel in CHANNELS {
                    let covered = if namespaced { channel.starts_with(prefix) } else { !channel.contains(':') };
                    if !covered {
                        continue;
                    }
                    let stream = model.get_mut(channel).expect("channel");
                    let count_cut = stream.top.saturating_sub(max_count as u64);
                    let mut cut = count_cut;
                    for (offset, created_at, _) in stream.kept.iter().filter(|(o, _, _)| *o > count_cut) {
                        if *created_at >= clock - max_age {
                            break;
                        }
                        cut = *offset;
                    }
                    let before = stream.kept.len();
                    stream.kept.retain(|(o, _, _)| *o > cut);
                    want += (before - stream.kept.len()) as u64;
                }
                let got = store.prune_channels(prefix, max_count, max_age, clock).await.expect("prune");
                prop_assert_eq!(got, want);
            }
            StreamOp::History { channel, since, limit, reverse } => {
                let (pubs, position) =
                    store.channel_history(CHANNELS[channel], since, limit, reverse).await.expect("history");
                let stream = model.get_mut(CHANNELS[channel]).expect("channel");
                prop_assert_eq!(position.offset, stream.top);
                check_epoch(stream, &position.epoch)?;
                let after: Vec<&(u64, i64, String)> =
                    stream.kept.iter().filter(|(o, _, _)| *o > since.unwrap_or(0)).collect();
                let want: Vec<(u64, String)> = if reverse {
                    after.iter().rev().take(limit).map(|(o, _, d)| (*o, d.clone())).collect()
                } else {
                    after.iter().take(limit).map(|(o, _, d)| (*o, d.clone())).collect()
                };
                let got: Vec<(u64, String)> =
                    pubs.iter().map(|p| (p.offset, String::from_utf8_lossy(&p.data).into_owned())).collect();
                prop_assert_eq!(got, want);
            }
            StreamOp::Position { channel } => {
                let position = store.channel_position(CHANNELS[channel]).await.expect("position");
                let stream = model.get_mut(CHANNELS[channel]).expect("channel");
                prop_assert_eq!(position.offset, stream.top);
                check_epoch(stream, &position.epoch)?;
            }
        }
    }
    Ok(())
}
