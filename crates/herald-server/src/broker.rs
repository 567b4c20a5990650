//! The broker seam: everything about a channel or a user that must be the same on every node.
//!
//! The node facade (`node.rs`) is the only caller. It asks the broker to publish on ephemeral
//! channels, to read and trim their history, to answer presence, and to carry commands to a
//! user's connections; each of these is a question about the whole cluster, not about this
//! process. The hub (`hub.rs`) stays the local index: which of *this* node's connections are
//! subscribed to what, fan-out to them, and the in-memory streams they recover from.
//!
//! Three traits, because a deployment may take them from different places (Centrifugo, for
//! one, can keep presence in Redis while publishing over NATS):
//!
//! - [`Broker`]: publications with their stream position, history and its removal. Contract:
//!   publications of one channel reach every node's hub in offset order, and a position
//!   returned by `publish` is readable by `history` on any node afterwards.
//! - [`Presence`]: who is subscribed to a channel across the cluster.
//! - [`Control`]: commands for a user's (or one client's) connections wherever they are
//!   connected: subscribe, unsubscribe, refresh, disconnect. Each node applies a command it
//!   receives to its own connections with [`apply_to_local`].
//!
//! [`MemoryBroker`] is the single-node implementation of all three, over the local hub, and the
//! default. Redis and NATS implementations (issue 11) go beside it in their own modules: they
//! publish to the shared engine, and a task per node feeds what arrives into the hub
//! ([`Hub::publish_stored`] already takes publications positioned elsewhere, in order, which is
//! how durable channels arrive from the store) and into [`apply_to_local`]. Durable channels do
//! not go through the broker for their stream: the store assigns their offsets (`durable.rs`).

use std::sync::Arc;

use async_trait::async_trait;
use herald_core::ChannelOptions;
use herald_protocol::{ClientInfo, Publication};

use crate::conn::ConnShared;
use crate::disconnect::Disconnect;
use crate::history::Position;
use crate::hub::{Hub, PublishSpec, Published};
use crate::outbox::{Control as ConnControl, PushError};

/// Why a broker call failed.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// `since` names a position the stream no longer has (history reads).
    #[error("unrecoverable position")]
    Unrecoverable,
    /// The shared engine cannot be reached or did not answer in time.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
}

/// Publications of ephemeral channels, and their history, across nodes.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Publish: give the publication its stream position (when the channel keeps history),
    /// keep it for history unless `skip_history`, and deliver it to every node's subscribers.
    /// A repeated `idempotency_key` within the channel's window returns the first position
    /// and delivers nothing.
    async fn publish(&self, spec: PublishSpec<'_>) -> Result<Published, BrokerError>;

    /// Up to `limit` publications after `since` (or the newest with `reverse`), and the
    /// stream's current position.
    async fn history(
        &self,
        channel: &str,
        options: &ChannelOptions,
        since: Option<&Position>,
        limit: usize,
        reverse: bool,
    ) -> Result<(Vec<Arc<Publication>>, Position), BrokerError>;

    /// Drop a channel's history; its position stays.
    async fn history_remove(&self, channel: &str) -> Result<(), BrokerError>;
}

/// Presence across nodes.
#[async_trait]
pub trait Presence: Send + Sync + 'static {
    /// Every subscriber of `channel` with its client info.
    async fn presence(&self, channel: &str) -> Result<Vec<ClientInfo>, BrokerError>;
    /// Subscribed clients and distinct users of `channel`.
    async fn presence_stats(&self, channel: &str) -> Result<(usize, usize), BrokerError>;
}

/// Which connections a command is for: every connection of `user`, or the one client `client`
/// (which must belong to `user` unless `user` is empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserTarget {
    pub user: String,
    pub client: Option<String>,
}

/// What the server asks of a user's connections.
#[derive(Clone, Debug)]
pub enum UserCommand {
    /// Subscribe, unsubscribe or refresh, run by each connection's session.
    Session(ConnControl),
    /// Close with `disconnect`, except the clients in `whitelist`.
    Disconnect { disconnect: Disconnect, whitelist: Vec<String> },
}

/// Commands to a user's connections on every node.
#[async_trait]
pub trait Control: Send + Sync + 'static {
    async fn send(&self, target: &UserTarget, command: UserCommand) -> Result<(), BrokerError>;
}

/// All three roles, which is what a node holds.
pub trait Engine: Broker + Presence + Control {}
impl<T: Broker + Presence + Control> Engine for T {}

/// Apply a command to this node's connections that `target` names. Every broker calls this for
/// the commands it receives, its own included. Returns how many connections it reached.
pub fn apply_to_local(hub: &Hub, target: &UserTarget, command: &UserCommand) -> usize {
    let connections: Vec<Arc<ConnShared>> = match target.client.as_deref().filter(|c| !c.is_empty()) {
        Some(client) => {
            hub.client(client).into_iter().filter(|c| target.user.is_empty() || c.user() == target.user).collect()
        }
        None => hub.user_connections(&target.user),
    };
    for conn in &connections {
        match command {
            UserCommand::Session(control) => {
                // A connection whose queue is full is closed as slow by its outbox (counted
                // here); one that is closing needs nothing.
                if conn.outbox.control(control.clone()) == Err(PushError::Overflow) {
                    hub.metrics().slow_disconnects.increment(1);
                }
            }
            UserCommand::Disconnect { disconnect, whitelist } => {
                if !whitelist.iter().any(|c| **c == *conn.id) {
                    conn.outbox.close(disconnect.clone());
                }
            }
        }
    }
    connections.len()
}

/// The single-node engine: the local hub is the whole cluster.
pub struct MemoryBroker {
    hub: Arc<Hub>,
}

impl MemoryBroker {
    pub fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    async fn publish(&self, spec: PublishSpec<'_>) -> Result<Published, BrokerError> {
        Ok(self.hub.publish(spec))
    }

    async fn history(
        &self,
        channel: &str,
        options: &ChannelOptions,
        since: Option<&Position>,
        limit: usize,
        reverse: bool,
    ) -> Result<(Vec<Arc<Publication>>, Position), BrokerError> {
        self.hub.history(channel, options, since, limit, reverse).map_err(|_| BrokerError::Unrecoverable)
    }

    async fn history_remove(&self, channel: &str) -> Result<(), BrokerError> {
        self.hub.history_remove(channel);
        Ok(())
    }
}

#[async_trait]
impl Presence for MemoryBroker {
    async fn presence(&self, channel: &str) -> Result<Vec<ClientInfo>, BrokerError> {
        Ok(self.hub.presence(channel))
    }

    async fn presence_stats(&self, channel: &str) -> Result<(usize, usize), BrokerError> {
        Ok(self.hub.presence_stats(channel))
    }
}

#[async_trait]
impl Control for MemoryBroker {
    async fn send(&self, target: &UserTarget, command: UserCommand) -> Result<(), BrokerError> {
        apply_to_local(&self.hub, target, &command);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use bytes::Bytes;
    use herald_protocol::Protocol;

    use super::*;
    use crate::metrics::Metrics;
    use crate::outbox::{Item, OutboxLimits};

    fn connect(hub: &Hub, user: &str) -> Arc<ConnShared> {
        let conn = Arc::new(ConnShared::new(Protocol::Json, OutboxLimits { max_bytes: 1 << 20, max_messages: 16 }));
        assert!(conn.set_identity(Arc::from(user), Bytes::new()));
        hub.register(&conn);
        conn
    }

    fn controls(conn: &ConnShared) -> usize {
        let mut taken = VecDeque::new();
        conn.outbox.take(&mut taken);
        taken.iter().filter(|item| matches!(item, Item::Control(_))).count()
    }

    fn target(user: &str, client: Option<&str>) -> UserTarget {
        UserTarget { user: user.to_owned(), client: client.map(str::to_owned) }
    }

    #[tokio::test]
    async fn user_commands_reach_exactly_the_named_connections() {
        let hub = Arc::new(Hub::new(Metrics::new()));
        let broker = MemoryBroker::new(hub.clone());
        let (alice1, alice2, bob) = (connect(&hub, "alice"), connect(&hub, "alice"), connect(&hub, "bob"));
        let refresh = UserCommand::Session(ConnControl::Refresh { expire_at: None, expired: false });

        broker.send(&target("alice", None), refresh.clone()).await.expect("send");
        assert_eq!((controls(&alice1), controls(&alice2), controls(&bob)), (1, 1, 0));

        // One client, and only if it is the named user's.
        broker.send(&target("alice", Some(&alice2.id)), refresh.clone()).await.expect("send");
        broker.send(&target("bob", Some(&alice1.id)), refresh.clone()).await.expect("send");
        assert_eq!((controls(&alice1), controls(&alice2), controls(&bob)), (0, 1, 0));
        assert_eq!(apply_to_local(&hub, &target("", Some(&bob.id)), &refresh), 1, "any user's client");
        assert_eq!(apply_to_local(&hub, &target("carol", None), &refresh), 0);

        // A disconnect spares the whitelisted clients.
        let disconnect = UserCommand::Disconnect {
            disconnect: Disconnect::FORCE_NO_RECONNECT,
            whitelist: vec![alice1.id.to_string()],
        };
        broker.send(&target("alice", None), disconnect).await.expect("send");
        assert_eq!(alice1.outbox.closing(), None);
        assert_eq!(alice2.outbox.closing(), Some(Disconnect::FORCE_NO_RECONNECT));
        assert_eq!(bob.outbox.closing(), None);
    }
}
