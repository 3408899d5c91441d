//! What every connection of one server shares, built once when the server
//! starts and handed to each connection as an `Arc<Policy>`: the limits,
//! the protocol, who may stop the server, the per-address table and the
//! counters. A connection keeps one reference for its life instead of a
//! copy of each part.

use std::sync::Arc;
use std::time::Duration;

use super::rules::Admin;
use crate::access::{AddrList, PerAddress};
use crate::config::{Config, DEFAULT_IDLE_SECS, DEFAULT_MAX_LINE};
use crate::protocol::{self, Protocol};
use crate::shutdown::Shutdown;
use crate::socket::Peer;
use crate::stats::Stats;

/// The per-connection limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest accepted message in bytes (a line without its ending, a
    /// frame without its prefix).
    pub max_line: usize,
    /// See [`Config::idle_timeout`].
    pub idle_timeout: Option<Duration>,
    /// Measure service times (for `--stats-interval` and `--metrics`).
    pub timing: bool,
}

impl Limits {
    /// The limits a configuration sets.
    pub fn from_config(config: &Config) -> Self {
        Limits {
            max_line: config.max_line,
            idle_timeout: config.idle_timeout,
            timing: config.stats_interval.is_some() || config.metrics.is_some(),
        }
    }
}

impl Default for Limits {
    /// The defaults `Config::default()` sets, without building a whole
    /// configuration (which asks the system how many CPUs there are).
    fn default() -> Self {
        Limits {
            max_line: DEFAULT_MAX_LINE,
            idle_timeout: Some(Duration::from_secs(DEFAULT_IDLE_SECS)),
            timing: false,
        }
    }
}

/// What every connection of one server shares.
#[derive(Clone)]
pub(crate) struct Policy {
    /// Stops the server; a connection looks at it to end at a stop.
    pub(crate) shutdown: Shutdown,
    pub(crate) limits: Limits,
    /// The protocol spoken on every connection.
    pub(crate) protocol: Arc<dyn Protocol>,
    /// The server's counters.
    pub(crate) stats: Arc<Stats>,
    /// Addresses that may stop the server (`--admin-from`).
    pub(crate) admin_from: Arc<AddrList>,
    /// User ids that may stop the server from a Unix socket.
    pub(crate) admin_uids: Arc<[u32]>,
    /// With `--admin-cert`: the certificate names that may stop the
    /// server; the client's verified certificate must have one of them.
    pub(crate) admin_certs: Option<Vec<String>>,
    /// Connections per client address (`--max-per-ip`). The acceptor
    /// counts each connection in it, or behind a proxy the connection
    /// itself once its PROXY header names the client.
    pub(crate) per_address: Option<Arc<PerAddress>>,
}

impl Policy {
    /// The policy of a connection served on its own: the ACK protocol, the
    /// default limits, stops from the loopback addresses only, counters of
    /// its own.
    pub(crate) fn standalone(shutdown: Shutdown) -> Self {
        Policy {
            shutdown,
            limits: Limits::default(),
            protocol: protocol::ack(),
            stats: Arc::default(),
            admin_from: Arc::new(AddrList::loopback()),
            admin_uids: Arc::new([]),
            admin_certs: None,
            per_address: None,
        }
    }

    /// Whether a client whose verified certificate has these names passes
    /// `--admin-cert` (every client does without it).
    pub(crate) fn cert_may_stop(&self, names: &[String]) -> bool {
        match &self.admin_certs {
            None => true,
            Some(allowed) => names.iter().any(|n| allowed.contains(n)),
        }
    }

    /// Whether this client may stop the server. A TCP client needs its
    /// address in `--admin-from` and, with `--admin-cert`, a named
    /// certificate (`cert_ok`); a Unix client (never on TLS) needs its
    /// user id in `--admin-uid`.
    pub(super) fn admin(&self, peer: Peer, cert_ok: bool) -> Admin {
        match peer {
            Peer::Ip(addr) => {
                let address_ok = self.admin_from.contains(addr.ip());
                Admin {
                    allowed: address_ok && cert_ok,
                    refused_for: if address_ok { "certificate" } else { "address" },
                }
            }
            Peer::Local { uid } => Admin {
                allowed: self.admin_uids.contains(&uid),
                refused_for: "uid",
            },
        }
    }
}
