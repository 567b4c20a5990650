//! Herald's domain core: typed configuration, channel namespaces and options, and token auth.
//!
//! Nothing here knows about HTTP, WebSocket or storage; the server crate builds on these types.

pub mod auth;
pub mod channel;
pub mod config;

pub use channel::{ChannelName, ChannelOptions};
pub use config::Config;
