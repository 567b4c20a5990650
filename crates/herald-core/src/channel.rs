//! Channel names, namespaces and the options a namespace gives its channels.
//!
//! A channel `chat:room1` belongs to namespace `chat` (the part before the first `:`); a channel
//! without `:` takes `channel.defaults`. A `#` marks a user-limited channel: `dm:#alice,bob` may
//! only be subscribed by users `alice` and `bob`, and `#alice` is the personal channel of `alice`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The only delta encoding the SDKs negotiate.
pub const DELTA_FOSSIL: &str = "fossil";
/// Separates a namespace from the rest of a channel name.
pub const NAMESPACE_SEPARATOR: char = ':';
/// Starts the user list of a user-limited channel.
pub const USER_BOUNDARY: char = '#';
/// Separates users in a user-limited channel.
pub const USER_SEPARATOR: char = ',';

/// A namespace: a name and the options of its channels.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Namespace {
    pub name: String,
    #[serde(flatten)]
    pub options: ChannelOptions,
}

/// What a channel keeps and who may do what on it. Names follow Centrifugo's channel options.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default)]
pub struct ChannelOptions {
    /// Publications kept per channel for history and recovery (0 keeps none).
    pub history_size: usize,
    /// How long kept publications live after they are published.
    #[serde(with = "humantime_serde")]
    pub history_ttl: Duration,
    /// Recover missed publications on resubscribe even when the client did not ask.
    pub force_recovery: bool,
    /// Let clients ask for recovery (`recoverable: true` on subscribe).
    pub allow_recovery: bool,
    /// Tell subscribers their stream position (epoch and offset) even without recovery.
    pub force_positioning: bool,
    /// Let clients ask for positioning.
    pub allow_positioning: bool,
    /// Keep presence (who is subscribed) for channels of this namespace.
    pub presence: bool,
    /// Send join and leave pushes to subscribers.
    pub join_leave: bool,
    /// Send join and leave pushes even when the client did not ask for them.
    pub force_push_join_leave: bool,
    /// Let any authenticated client subscribe without a subscription token.
    pub allow_subscribe_for_client: bool,
    /// Let anonymous clients subscribe without a subscription token.
    pub allow_subscribe_for_anonymous: bool,
    /// Let subscribers of the channel publish to it.
    pub allow_publish_for_subscriber: bool,
    /// Let any authenticated client publish to the channel, subscribed or not.
    pub allow_publish_for_client: bool,
    /// Let anonymous clients publish (with one of the rules above).
    pub allow_publish_for_anonymous: bool,
    /// Let subscribers read presence.
    pub allow_presence_for_subscriber: bool,
    /// Let any authenticated client read presence.
    pub allow_presence_for_client: bool,
    /// Let subscribers read history.
    pub allow_history_for_subscriber: bool,
    /// Let any authenticated client read history.
    pub allow_history_for_client: bool,
    /// Let users listed after `#` in the channel name subscribe without a token.
    pub allow_user_limited_channels: bool,
    /// Delta encodings subscribers may negotiate (only `fossil`).
    pub allowed_delta_types: Vec<String>,
    /// Send every publication as a delta to subscribers that negotiated deltas, as if each
    /// publisher had asked for it (`delta: true`); an explicit `delta: false` does not opt out.
    pub delta_publish: bool,
    /// Let subscribers narrow what they receive with a tags filter (`tf` on subscribe).
    pub allow_tags_filter: bool,
    /// Keep the channel's stream in the store: publications are acknowledged only once stored,
    /// and history and recovery survive restarts. `history_size` and `history_ttl` then set the
    /// retention (count and age) enforced by the pruner.
    pub durable: bool,
}

impl ChannelOptions {
    /// Whether the channel keeps a stream of publications.
    pub fn has_history(&self) -> bool {
        self.history_size > 0 && !self.history_ttl.is_zero()
    }

    /// Whether subscribers may negotiate fossil deltas.
    pub fn allows_fossil(&self) -> bool {
        self.allowed_delta_types.iter().any(|t| t == DELTA_FOSSIL)
    }
}

/// A channel name split into its parts. Borrowed from the name; validation is the caller's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelName<'a> {
    pub full: &'a str,
    /// Namespace name, empty when the channel has none.
    pub namespace: &'a str,
}

impl<'a> ChannelName<'a> {
    pub fn parse(full: &'a str) -> Self {
        let namespace = match full.split_once(NAMESPACE_SEPARATOR) {
            Some((namespace, _)) => namespace,
            None => "",
        };
        ChannelName { full, namespace }
    }

    /// The users allowed on a user-limited channel (`ns:room#alice,bob`), or `None` when the
    /// channel is not user-limited.
    pub fn limited_users(&self) -> Option<impl Iterator<Item = &'a str>> {
        let (_, users) = self.full.rsplit_once(USER_BOUNDARY)?;
        Some(users.split(USER_SEPARATOR).filter(|u| !u.is_empty()))
    }

    /// Whether `user` is one of the channel's allowed users.
    pub fn is_user_allowed(&self, user: &str) -> bool {
        !user.is_empty() && self.limited_users().is_some_and(|mut users| users.any(|u| u == user))
    }
}

/// The personal channel of `user` in `namespace`.
pub fn personal_channel(namespace: &str, user: &str) -> String {
    if namespace.is_empty() {
        format!("{USER_BOUNDARY}{user}")
    } else {
        format!("{namespace}{NAMESPACE_SEPARATOR}{USER_BOUNDARY}{user}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_and_limited_users() {
        let name = ChannelName::parse("chat:room#alice,bob");
        assert_eq!(name.namespace, "chat");
        assert!(name.is_user_allowed("alice"));
        assert!(name.is_user_allowed("bob"));
        assert!(!name.is_user_allowed("carol"));
        assert!(!name.is_user_allowed(""));

        let plain = ChannelName::parse("news");
        assert_eq!(plain.namespace, "");
        assert!(plain.limited_users().is_none());
        assert!(!plain.is_user_allowed("alice"));

        assert_eq!(personal_channel("", "alice"), "#alice");
        assert_eq!(personal_channel("user", "alice"), "user:#alice");
        assert!(ChannelName::parse(&personal_channel("user", "alice")).is_user_allowed("alice"));
    }
}
