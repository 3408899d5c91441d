//! The phases before the session opens: the PROXY protocol header, which
//! names the client behind a proxy, and the TLS handshake, which may name
//! its certificate. Each returns the phase that follows once it is done,
//! or nothing while it waits for the client.

use std::sync::Arc;

use log::debug;

use super::end::End;
use super::{Client, Phase, Policy};
use crate::access::{self, TOO_MANY_FROM_ADDRESS};
use crate::conn::Conn;
use crate::proxy::{Header, HeaderError, HeaderReader};
use crate::socket::Peer;

/// Reads the PROXY protocol header. Returns it once complete; `None` means
/// wait for more.
pub(super) fn read_header(conn: &Conn, reader: &mut HeaderReader) -> Result<Option<Header>, End> {
    conn.activity.set_awaiting_header(true);
    if let Some(idle) = conn.activity.timed_out() {
        return Err(End::Idle(idle));
    }
    // The header comes before the ClientHello: it is read off the socket
    // itself.
    match reader.read_from(conn.raw()) {
        Ok(header) => Ok(header),
        Err(HeaderError::Ended) => Err(End::BadHeader("the connection ended before it")),
        Err(HeaderError::Invalid) => Err(End::BadHeader("not a PROXY protocol header")),
        Err(HeaderError::Io(e)) => Err(End::Io(e)),
    }
}

/// Takes the address a complete header names as the client's, and returns
/// the phase that follows. Behind a proxy, `--max-per-ip` is counted here,
/// once the header names the client.
pub(super) fn admit(
    conn: &Conn,
    policy: &Policy,
    client: &mut Client,
    header: Header,
    out: &mut Vec<u8>,
) -> Result<Phase, End> {
    conn.activity.set_awaiting_header(false);
    if let Some(addr) = header.client {
        client.peer = Peer::ip(addr);
    }
    // What followed the header is the transport's: TLS's, or the
    // protocol's.
    let mut preload = Vec::new();
    if conn.is_tls() {
        conn.preload_tls(&header.rest).map_err(End::Io)?;
    } else {
        preload = header.rest;
    }
    let admitted = match client.peer.ip_addr() {
        Some(ip) => access::admit(policy.per_address.as_ref(), ip),
        None => Ok(None),
    };
    match admitted {
        Ok(slot) => {
            if let Some(slot) = slot {
                conn.hold_address_slot(slot);
            }
        }
        Err(access::TooMany) => {
            policy.stats.rejected_per_address();
            // Over TLS the handshake has not begun: a plaintext line would
            // be noise, and the session would hold it for ever. The client
            // is closed without a word, as the acceptor closes one it has
            // no room for.
            if !conn.is_tls() {
                policy.protocol.framing().say(TOO_MANY_FROM_ADDRESS, out);
            }
            return Err(End::TooManyFromAddress);
        }
    }
    Ok(if conn.is_tls() {
        Phase::Handshake
    } else {
        Phase::Fresh {
            preload,
            cert_ok: true,
        }
    })
}

/// Drives the TLS handshake. Returns the phase that follows once it is
/// done; `None` means wait for the client, parked in the poller like an
/// idle connection (no worker waits on a handshake), until the watchdog's
/// deadline.
pub(super) fn handshake(
    conn: &Conn,
    policy: &Policy,
    client: &mut Client,
) -> Result<Option<Phase>, End> {
    conn.activity.set_awaiting_handshake(true);
    if let Some(idle) = conn.activity.timed_out() {
        return Err(End::Idle(idle));
    }
    match conn.handshake() {
        Ok(false) => return Ok(None),
        Ok(true) => {}
        Err((failure, detail)) => return Err(End::Tls(failure, detail)),
    }
    conn.activity.set_awaiting_handshake(false);
    let mut cert_ok = true;
    if let Some((names, version)) = conn.tls_peer() {
        client.cert = names.first().map(|name| Arc::from(name.as_str()));
        cert_ok = policy.cert_may_stop(&names);
        debug!(
            "tls handshake done peer={} version={version} cert={}",
            client.peer,
            client.cert_name()
        );
    }
    Ok(Some(Phase::Fresh {
        preload: Vec::new(),
        cert_ok,
    }))
}
