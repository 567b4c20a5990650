//! Builders for the inputs of the store tests.

use std::collections::BTreeMap;

use crate::{
    App, AttemptStatus, Endpoint, NewApp, NewAttempt, NewEndpoint, NewMessage, NewPublication, Store, TriggerType,
    now_ms,
};
use bytes::Bytes;

pub async fn app(store: &impl Store, uid: Option<&str>) -> App {
    store
        .create_app(NewApp { uid: uid.map(str::to_owned), name: "Test app".to_owned(), ..NewApp::default() })
        .await
        .expect("create app")
}

pub fn endpoint_spec(url: &str) -> NewEndpoint {
    NewEndpoint {
        uid: None,
        url: url.to_owned(),
        description: String::new(),
        version: 1,
        disabled: false,
        event_types: None,
        channels: None,
        secret: "whsec_dGVzdHNlY3JldA==".to_owned(),
        headers: BTreeMap::new(),
        rate_limit: None,
        max_concurrency: 1,
        metadata: BTreeMap::new(),
    }
}

pub async fn endpoint(store: &impl Store, app_id: &str, spec: NewEndpoint) -> Endpoint {
    store.create_endpoint(app_id, spec).await.expect("create endpoint")
}

pub fn message(app_id: &str, event_type: &str) -> NewMessage {
    NewMessage {
        app_id: app_id.to_owned(),
        event_id: None,
        event_type: event_type.to_owned(),
        payload: Bytes::from_static(br#"{"hello":"world"}"#),
        channels: None,
    }
}

pub fn attempt(status: AttemptStatus, code: u16) -> NewAttempt {
    NewAttempt {
        url: "https://example.com/hook".to_owned(),
        status,
        response_status_code: code,
        response: "ok".to_owned(),
        response_duration_ms: 12,
        error_class: None,
        trigger: TriggerType::Scheduled,
        created_at: now_ms(),
    }
}

pub fn publication(channel: &str, text: &str, created_at: i64) -> NewPublication {
    NewPublication {
        channel: channel.to_owned(),
        data: Bytes::from(text.to_owned()),
        info: None,
        tags: BTreeMap::new(),
        created_at,
    }
}
