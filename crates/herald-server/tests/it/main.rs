//! Integration tests: a whole Herald server in-process on `127.0.0.1:0`, driven over real
//! WebSocket and HTTP connections.

mod api;
mod connect;
mod durable;
mod helpers;
mod history;
mod lifecycle;
mod pubsub;
mod streams;
mod webhooks;
