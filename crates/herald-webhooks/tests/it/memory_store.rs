//! A small in-memory `Store` with only what the dispatcher and its tests use (apps, endpoints,
//! messages, deliveries, attempts), following the trait's documented claim rules. Everything else
//! answers `Unavailable`. It lets the dispatcher be tested without a database, and the same
//! scenarios run against the real SQLite store.

use async_trait::async_trait;
use herald_store::roles::*;
use herald_store::*;
use parking_lot::Mutex;

#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    apps: Vec<App>,
    endpoints: Vec<Endpoint>,
    messages: Vec<Message>,
    deliveries: Vec<Row>,
    attempts: Vec<Attempt>,
    next_delivery_id: i64,
}

struct Row {
    delivery: Delivery,
    lease_until: Timestamp,
}

fn unsupported<T>() -> StoreResult<T> {
    Err(StoreError::Unavailable("not supported by the memory store".to_owned()))
}

impl State {
    fn claimable(&self, idx: usize, now: Timestamp) -> bool {
        let row = &self.deliveries[idx];
        let due = match row.delivery.status {
            DeliveryStatus::Pending => row.delivery.next_attempt_at.is_none_or(|at| at <= now),
            DeliveryStatus::Sending => row.lease_until <= now,
            _ => false,
        };
        let Some(endpoint) = self.endpoints.iter().find(|e| e.id == row.delivery.endpoint_id) else { return false };
        if !due || endpoint.disabled {
            return false;
        }
        if endpoint.max_concurrency > 1 {
            return true;
        }
        // In order: only the oldest unfinished delivery, and only while none of its deliveries is
        // sending under a live lease.
        let unfinished = |r: &&Row| {
            r.delivery.endpoint_id == endpoint.id
                && matches!(r.delivery.status, DeliveryStatus::Pending | DeliveryStatus::Sending)
        };
        let oldest = self.deliveries.iter().filter(unfinished).min_by_key(|r| r.delivery.id);
        let sending = self
            .deliveries
            .iter()
            .filter(unfinished)
            .any(|r| r.delivery.status == DeliveryStatus::Sending && r.lease_until > now);
        oldest.is_some_and(|r| r.delivery.id == row.delivery.id) && !sending
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn health(&self) -> StoreResult<()> {
        Ok(())
    }
}

#[async_trait]
impl Applications for MemoryStore {
    async fn create_app(&self, new: NewApp) -> StoreResult<App> {
        let now = now_ms();
        let app = App {
            id: ids::new_id(ids::APP),
            uid: new.uid,
            name: new.name,
            metadata: new.metadata,
            rate_limit: new.rate_limit,
            created_at: now,
            updated_at: now,
        };
        self.state.lock().apps.push(app.clone());
        Ok(app)
    }

    async fn get_app(&self, _: &str) -> StoreResult<Option<App>> {
        unsupported()
    }

    async fn list_apps(&self, _: PageRequest) -> StoreResult<Page<App>> {
        unsupported()
    }

    async fn update_app(&self, _: &str, _: NewApp) -> StoreResult<App> {
        unsupported()
    }

    async fn delete_app(&self, _: &str) -> StoreResult<()> {
        unsupported()
    }

    async fn create_event_type(&self, _: NewEventType) -> StoreResult<EventType> {
        unsupported()
    }

    async fn get_event_type(&self, _: &str) -> StoreResult<Option<EventType>> {
        unsupported()
    }

    async fn list_event_types(&self, _: PageRequest, _: bool) -> StoreResult<Page<EventType>> {
        unsupported()
    }

    async fn update_event_type(&self, _: &str, _: NewEventType) -> StoreResult<EventType> {
        unsupported()
    }

    async fn delete_event_type(&self, _: &str, _: bool) -> StoreResult<()> {
        unsupported()
    }

    async fn create_endpoint(&self, app_id: &str, new: NewEndpoint) -> StoreResult<Endpoint> {
        let now = now_ms();
        let endpoint = Endpoint::create(app_id.to_owned(), new, now);
        self.state.lock().endpoints.push(endpoint.clone());
        Ok(endpoint)
    }

    async fn get_endpoint(&self, app_id: &str, id: &str) -> StoreResult<Option<Endpoint>> {
        Ok(self.state.lock().endpoints.iter().find(|e| e.app_id == app_id && e.id == id).cloned())
    }

    async fn list_endpoints(&self, _: &str, _: PageRequest) -> StoreResult<Page<Endpoint>> {
        unsupported()
    }

    async fn update_endpoint(&self, _: &str, _: &str, _: EndpointUpdate) -> StoreResult<Endpoint> {
        unsupported()
    }

    async fn delete_endpoint(&self, _: &str, _: &str) -> StoreResult<()> {
        unsupported()
    }

    async fn rotate_endpoint_secret(&self, _: &str, _: &str, _: String, _: Timestamp) -> StoreResult<Endpoint> {
        unsupported()
    }

    async fn set_endpoint_health(&self, endpoint_id: &str, health: EndpointHealth) -> StoreResult<()> {
        let mut state = self.state.lock();
        let endpoint = state
            .endpoints
            .iter_mut()
            .find(|e| e.id == endpoint_id)
            .ok_or_else(|| StoreError::NotFound(endpoint_id.to_owned()))?;
        match health {
            EndpointHealth::Failing { at } => {
                endpoint.failing_since.get_or_insert(at);
            }
            EndpointHealth::Healthy => endpoint.failing_since = None,
            EndpointHealth::Disabled { reason, .. } => {
                endpoint.disabled = true;
                endpoint.disabled_reason = Some(reason);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl MessageLog for MemoryStore {
    async fn create_message(&self, new: NewMessage) -> StoreResult<(Message, bool)> {
        let now = now_ms();
        let message = Message {
            id: ids::new_id(ids::MESSAGE),
            app_id: new.app_id,
            event_id: new.event_id,
            event_type: new.event_type,
            payload: new.payload,
            channels: new.channels,
            created_at: now,
        };
        let mut state = self.state.lock();
        let targets: Vec<String> = state
            .endpoints
            .iter()
            .filter(|e| e.app_id == message.app_id && !e.disabled)
            .filter(|e| e.event_types.as_ref().is_none_or(|types| types.contains(&message.event_type)))
            .map(|e| e.id.clone())
            .collect();
        for endpoint_id in targets {
            state.next_delivery_id += 1;
            let delivery = Delivery {
                id: state.next_delivery_id,
                app_id: message.app_id.clone(),
                msg_id: message.id.clone(),
                endpoint_id,
                status: DeliveryStatus::Pending,
                attempts: 0,
                next_attempt_at: Some(now),
                trigger: TriggerType::Scheduled,
                created_at: now,
                updated_at: now,
            };
            state.deliveries.push(Row { delivery, lease_until: 0 });
        }
        state.messages.push(message.clone());
        Ok((message, true))
    }

    async fn get_message(&self, _: &str, _: &str) -> StoreResult<Option<Message>> {
        unsupported()
    }

    async fn list_messages(&self, _: &str, _: PageRequest, _: MessageFilter) -> StoreResult<Page<Message>> {
        unsupported()
    }
}

#[async_trait]
impl DeliveryQueue for MemoryStore {
    async fn claim_due_deliveries(
        &self,
        now: Timestamp,
        limit: usize,
        lease_ms: i64,
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        let mut state = self.state.lock();
        let mut claimed = Vec::new();
        for idx in 0..state.deliveries.len() {
            if claimed.len() >= limit {
                break;
            }
            if !state.claimable(idx, now) {
                continue;
            }
            let row = &mut state.deliveries[idx];
            row.delivery.status = DeliveryStatus::Sending;
            row.lease_until = now + lease_ms;
            let delivery = row.delivery.clone();
            let message = state.messages.iter().find(|m| m.id == delivery.msg_id).cloned();
            let endpoint = state.endpoints.iter().find(|e| e.id == delivery.endpoint_id).cloned();
            if let (Some(message), Some(endpoint)) = (message, endpoint) {
                claimed.push(ClaimedDelivery { delivery, message, endpoint });
            }
        }
        Ok(claimed)
    }

    async fn record_attempt(&self, delivery_id: i64, attempt: NewAttempt, next: DeliveryNext) -> StoreResult<Attempt> {
        let mut state = self.state.lock();
        let row = state
            .deliveries
            .iter_mut()
            .find(|r| r.delivery.id == delivery_id)
            .ok_or_else(|| StoreError::NotFound(format!("delivery {delivery_id}")))?;
        row.delivery.attempts += 1;
        row.delivery.updated_at = now_ms();
        match next {
            DeliveryNext::Succeeded => {
                row.delivery.status = DeliveryStatus::Success;
                row.delivery.next_attempt_at = None;
            }
            DeliveryNext::RetryAt(at) => {
                row.delivery.status = DeliveryStatus::Pending;
                row.delivery.next_attempt_at = Some(at);
            }
            DeliveryNext::Dead => {
                row.delivery.status = DeliveryStatus::Failed;
                row.delivery.next_attempt_at = None;
            }
        }
        let delivery = row.delivery.clone();
        let attempt = Attempt {
            id: ids::new_id(ids::ATTEMPT),
            app_id: delivery.app_id,
            msg_id: delivery.msg_id,
            endpoint_id: delivery.endpoint_id,
            url: attempt.url,
            status: attempt.status,
            response_status_code: attempt.response_status_code,
            response: attempt.response,
            response_duration_ms: attempt.response_duration_ms,
            error_class: attempt.error_class,
            trigger: attempt.trigger,
            created_at: attempt.created_at,
        };
        state.attempts.push(attempt.clone());
        Ok(attempt)
    }

    async fn resend(&self, _: &str, _: &str, _: &str) -> StoreResult<()> {
        unsupported()
    }

    async fn recover_endpoint(
        &self,
        _: &str,
        _: &str,
        _: Timestamp,
        _: Option<Timestamp>,
        _: bool,
    ) -> StoreResult<u64> {
        unsupported()
    }

    async fn list_dead_letters(&self, _: Option<&str>, _: PageRequest) -> StoreResult<Page<Delivery>> {
        unsupported()
    }

    async fn replay_dead_letters(&self, _: Option<&str>, _: Option<&str>) -> StoreResult<u64> {
        unsupported()
    }

    async fn list_attempts(
        &self,
        app_id: &str,
        filter: AttemptFilter,
        page: PageRequest,
    ) -> StoreResult<Page<Attempt>> {
        let state = self.state.lock();
        let mut data: Vec<Attempt> = state
            .attempts
            .iter()
            .filter(|a| a.app_id == app_id)
            .filter(|a| match &filter {
                AttemptFilter::Endpoint(id) => &a.endpoint_id == id,
                AttemptFilter::Message(id) => &a.msg_id == id,
            })
            .cloned()
            .collect();
        // Newest first.
        data.reverse();
        data.truncate(page.limit);
        Ok(Page { data, iterator: None, prev_iterator: None, done: true })
    }

    async fn list_deliveries_for_message(&self, app_id: &str, msg_id: &str) -> StoreResult<Vec<Delivery>> {
        let state = self.state.lock();
        Ok(state
            .deliveries
            .iter()
            .filter(|r| r.delivery.app_id == app_id && r.delivery.msg_id == msg_id)
            .map(|r| r.delivery.clone())
            .collect())
    }

    async fn delivery_counts(&self) -> StoreResult<DeliveryCounts> {
        unsupported()
    }
}

#[async_trait]
impl IdempotencyKeys for MemoryStore {
    async fn idempotency_get(&self, _: &str) -> StoreResult<Option<IdempotentResponse>> {
        unsupported()
    }

    async fn idempotency_put(&self, _: &str, _: IdempotentResponse) -> StoreResult<()> {
        unsupported()
    }

    async fn idempotency_prune(&self, _: Timestamp) -> StoreResult<u64> {
        unsupported()
    }
}

#[async_trait]
impl ChannelLog for MemoryStore {
    async fn append_publications(&self, _: Vec<NewPublication>) -> StoreResult<Vec<StreamPosition>> {
        unsupported()
    }

    async fn channel_position(&self, _: &str) -> StoreResult<StreamPosition> {
        unsupported()
    }

    async fn channel_history(
        &self,
        _: &str,
        _: Option<u64>,
        _: usize,
        _: bool,
    ) -> StoreResult<(Vec<StoredPublication>, StreamPosition)> {
        unsupported()
    }

    async fn channel_history_remove(&self, _: &str) -> StoreResult<()> {
        unsupported()
    }

    async fn prune_channels(&self, _: &str, _: usize, _: i64, _: Timestamp) -> StoreResult<u64> {
        unsupported()
    }
}
