//! The management API end to end: the router nested at `/api/v1` as the server nests it, over a
//! real SQLite store in a temporary directory, driven with `tower::ServiceExt::oneshot`.

mod applications;
mod attempts;
mod auth;
mod endpoints;
mod event_types;
mod helpers;
mod idempotency;
mod messages;
