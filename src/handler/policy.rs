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

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(addr: &str) -> Peer {
        Peer::ip(addr.parse().expect("an address"))
    }

    /// A TCP client may stop the server only from an `--admin-from`
    /// address with a certificate `--admin-cert` allows, and the refusal
    /// names what failed first: the address, then the certificate.
    #[test]
    fn a_tcp_client_needs_its_address_and_its_certificate() {
        let policy = Policy::standalone(Shutdown::new());
        let admin = policy.admin(tcp("127.0.0.1:9"), true);
        assert!(admin.allowed);
        let admin = policy.admin(tcp("127.0.0.1:9"), false);
        assert!(!admin.allowed);
        assert_eq!(admin.refused_for, "certificate");
        let admin = policy.admin(tcp("192.0.2.1:9"), true);
        assert!(!admin.allowed);
        assert_eq!(admin.refused_for, "address");
    }

    /// A Unix client may stop the server only with a user id in
    /// `--admin-uid`, whatever `--admin-from` says.
    #[test]
    fn a_unix_client_needs_its_uid() {
        let policy = Policy {
            admin_uids: Arc::new([1000]),
            ..Policy::standalone(Shutdown::new())
        };
        assert!(policy.admin(Peer::Local { uid: 1000 }, true).allowed);
        let admin = policy.admin(Peer::Local { uid: 1001 }, true);
        assert!(!admin.allowed);
        assert_eq!(admin.refused_for, "uid");
    }

    /// Without `--admin-cert` every certificate passes; with it, one of
    /// the client's names must be on the list.
    #[test]
    fn admin_cert_needs_one_of_the_names() {
        let names = ["client".to_string(), "ops".to_string()];
        let open = Policy::standalone(Shutdown::new());
        assert!(open.cert_may_stop(&[]));
        let policy = Policy {
            admin_certs: Some(vec!["ops".to_string()]),
            ..Policy::standalone(Shutdown::new())
        };
        assert!(policy.cert_may_stop(&names));
        assert!(!policy.cert_may_stop(&names[..1]));
        assert!(!policy.cert_may_stop(&[]));
    }
}
