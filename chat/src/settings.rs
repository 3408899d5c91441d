//! The chat protocol's own settings: where and how a room is shared
//! between instances (`--chat-bus`, `--chat-room`), with their defaults.

use std::fmt;
use std::time::Duration;

/// Where and how a chat room is shared between instances.
#[derive(Clone)]
pub struct ChatBus {
    /// `redis://HOST:PORT[/DB]`, a password as `redis://:PASS@HOST:PORT`.
    pub url: String,
    /// The room: instances on the same Redis share a room only if they
    /// give the same name.
    pub room: String,
    /// How often an instance says it is alive. Its peers forget its
    /// members after 5 heartbeats of silence (1 s at least), its name
    /// claims expire after 10, and it reconnects a subscription that has
    /// not brought back its own heartbeat 3 heartbeats (1 s at least)
    /// after it went out.
    pub heartbeat: Duration,
    /// The longest wait between two attempts to reach Redis (jittered).
    pub backoff_max: Duration,
    /// Envelopes waiting to be published at most; more are dropped and
    /// counted.
    pub queue: usize,
}

impl ChatBus {
    /// Default chat room name on a bus.
    pub const DEFAULT_ROOM: &str = "lobby";
    /// Default time between two heartbeats of an instance on the chat bus.
    pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);
    /// Default longest wait between two attempts to reach Redis: short, so
    /// that an instance is back on Redis a moment after Redis is (an attempt
    /// at a stopped Redis is refused at once and costs next to nothing).
    pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_millis(250);
    /// Default bound on envelopes waiting to be published.
    pub const DEFAULT_QUEUE: usize = 10_000;

    /// The bus at `url`, room `lobby`, with the default timings.
    pub fn new(url: impl Into<String>) -> Self {
        ChatBus {
            url: url.into(),
            room: Self::DEFAULT_ROOM.to_string(),
            heartbeat: Self::DEFAULT_HEARTBEAT,
            backoff_max: Self::DEFAULT_BACKOFF_MAX,
            queue: Self::DEFAULT_QUEUE,
        }
    }
}

impl fmt::Debug for ChatBus {
    /// The URL without its password, which has no place in a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatBus")
            .field("url", &redacted(&self.url))
            .field("room", &self.room)
            .field("heartbeat", &self.heartbeat)
            .field("backoff_max", &self.backoff_max)
            .field("queue", &self.queue)
            .finish()
    }
}

/// `url` with any password between `:` and `@` replaced by `***`.
pub(crate) fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{scheme}://{name}:***@{host}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}
