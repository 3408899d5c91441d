//! Who may do what, by client address: the address list behind
//! `--admin-from` (who may stop the server), the user ids behind
//! `--admin-uid` (the same over a Unix socket), and the per-address
//! connection count behind `--max-per-ip`, as slots released on drop.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

/// A list of networks (`127.0.0.0/8,::1/128`), or every address (`any`),
/// or none (`none`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddrList {
    nets: Vec<(IpAddr, u8)>,
    any: bool,
}

impl AddrList {
    /// The loopback addresses, `127.0.0.0/8,::1/128`: the default for who
    /// may stop the server.
    pub fn loopback() -> Self {
        AddrList {
            nets: vec![
                (IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8),
                (IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
            ],
            any: false,
        }
    }

    /// Whether `ip` is on the list. An IPv4 address written as IPv6
    /// (`::ffff:127.0.0.1`) counts as the IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.any || self.nets.iter().any(|&(net, bits)| in_net(ip, net, bits))
    }
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

impl FromStr for AddrList {
    type Err = String;

    /// `any`, `none`, or comma-separated networks: `10.0.0.0/8`, `::1/128`,
    /// or a bare address for just that address.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "any" => {
                return Ok(AddrList {
                    nets: Vec::new(),
                    any: true,
                });
            }
            "none" => {
                return Ok(AddrList {
                    nets: Vec::new(),
                    any: false,
                });
            }
            _ => {}
        }
        let nets = text
            .split(',')
            .map(|part| parse_net(part.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AddrList { nets, any: false })
    }
}

fn parse_net(text: &str) -> Result<(IpAddr, u8), String> {
    let bad = || format!("'{text}' is not an address or network (e.g. 10.0.0.0/8, ::1)");
    let (addr, bits) = match text.split_once('/') {
        Some((addr, bits)) => (addr, Some(bits)),
        None => (text, None),
    };
    let ip: IpAddr = addr.parse().map_err(|_| bad())?;
    let ip = ip.to_canonical();
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        Some(bits) => bits
            .parse::<u8>()
            .ok()
            .filter(|b| *b <= max)
            .ok_or_else(bad)?,
        None => max,
    };
    Ok((ip, bits))
}

impl fmt::Display for AddrList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.any {
            return f.write_str("any");
        }
        if self.nets.is_empty() {
            return f.write_str("none");
        }
        let nets: Vec<String> = self
            .nets
            .iter()
            .map(|(ip, bits)| format!("{ip}/{bits}"))
            .collect();
        f.write_str(&nets.join(","))
    }
}

/// What a connection over `--max-per-ip` is told before its close, in its
/// protocol's framing.
/// Who may stop the server from a Unix socket when `--admin-uid` is not
/// given: the user the server runs as (its effective user id), and root.
pub(crate) fn default_admin_uids() -> Vec<u32> {
    let own = nix::unistd::geteuid().as_raw();
    if own == 0 { vec![0] } else { vec![own, 0] }
}

pub(crate) const TOO_MANY_FROM_ADDRESS: &[u8] = b"ERR too many connections from your address";

/// A connection turned away by `--max-per-ip`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TooMany;

/// Admits a connection from `ip` under `--max-per-ip` (if `table` is
/// set): its slot, to keep for the connection's life, or the refusal, on
/// which the caller sends [`TOO_MANY_FROM_ADDRESS`] and closes. The
/// acceptor admits it as it accepts; behind a proxy, the connection's first
/// turn does, once the header has named the client.
pub(crate) fn admit(
    table: Option<&Arc<PerAddress>>,
    ip: IpAddr,
) -> Result<Option<AddressSlot>, TooMany> {
    match table {
        None => Ok(None),
        Some(table) => table.try_take(ip).map(Some).ok_or(TooMany),
    }
}

/// Connections open per client address, bounded.
pub(crate) struct PerAddress {
    /// The limit, which the admin console may change.
    max: AtomicUsize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection counted against its address, released on drop.
pub(crate) struct AddressSlot {
    table: Arc<PerAddress>,
    ip: IpAddr,
}

impl PerAddress {
    /// At most `max` connections per address.
    pub(crate) fn new(max: usize) -> Arc<PerAddress> {
        Arc::new(PerAddress {
            max: AtomicUsize::new(max),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Changes the limit: connections open stay, and an address over a
    /// lowered limit gets no more until it is under.
    pub(crate) fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
    }

    /// The limit.
    pub(crate) fn max(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }

    /// A slot for one more connection from `ip`, or `None` when `ip` has
    /// `max` open already.
    pub(crate) fn try_take(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        let ip = ip.to_canonical();
        let mut open = self.open.lock();
        let count = open.entry(ip).or_insert(0);
        if *count >= self.max.load(Ordering::Relaxed) {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            table: self.clone(),
            ip,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock();
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    #[test]
    fn networks_contain_their_addresses() {
        let list: AddrList = "10.0.0.0/8, 192.168.1.7,2001:db8::/32"
            .parse()
            .expect("list");
        assert!(list.contains(ip("10.200.3.4")));
        assert!(!list.contains(ip("11.0.0.1")));
        assert!(list.contains(ip("192.168.1.7")));
        assert!(!list.contains(ip("192.168.1.8")));
        assert!(list.contains(ip("2001:db8::1")));
        assert!(!list.contains(ip("2001:db9::1")));
        assert_eq!(list.to_string(), "10.0.0.0/8,192.168.1.7/32,2001:db8::/32");
    }

    #[test]
    fn loopback_any_and_none() {
        let loopback = AddrList::loopback();
        assert!(loopback.contains(ip("127.0.0.1")));
        assert!(loopback.contains(ip("127.0.0.2")));
        assert!(loopback.contains(ip("::1")));
        assert!(loopback.contains(ip("::ffff:127.0.0.1")));
        assert!(!loopback.contains(ip("192.0.2.1")));
        assert_eq!(loopback.to_string(), "127.0.0.0/8,::1/128");
        let any: AddrList = "any".parse().expect("any");
        assert!(any.contains(ip("192.0.2.1")));
        let none: AddrList = "none".parse().expect("none");
        assert!(!none.contains(ip("127.0.0.1")));
        assert_eq!(
            (any.to_string(), none.to_string()),
            ("any".into(), "none".into())
        );
        let all: AddrList = "0.0.0.0/0".parse().expect("all v4");
        assert!(all.contains(ip("203.0.113.9")));
    }

    #[test]
    fn bad_lists_are_refused() {
        for bad in [
            "",
            "localhost",
            "10.0.0.0/33",
            "::1/129",
            "10.0.0.0/x",
            "1.2.3.4,",
        ] {
            assert!(bad.parse::<AddrList>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn per_address_slots_are_bounded_and_come_back_on_drop() {
        let table = PerAddress::new(2);
        let a = table.try_take(ip("10.0.0.1")).expect("first");
        let _b = table.try_take(ip("10.0.0.1")).expect("second");
        assert!(table.try_take(ip("10.0.0.1")).is_none());
        assert!(table.try_take(ip("10.0.0.2")).is_some());
        drop(a);
        assert!(table.try_take(ip("::ffff:10.0.0.1")).is_some());
    }

    #[test]
    fn admission_takes_a_slot_only_with_a_table() {
        let ip = ip("192.0.2.1");
        assert!(matches!(admit(None, ip), Ok(None)));
        let table = PerAddress::new(1);
        let slot = admit(Some(&table), ip);
        assert!(matches!(slot, Ok(Some(_))));
        assert!(matches!(admit(Some(&table), ip), Err(TooMany)));
        drop(slot);
        assert!(matches!(admit(Some(&table), ip), Ok(Some(_))));
    }

    /// Properties of `--admin-from` lists over any networks and addresses.
    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn v4_net() -> impl Strategy<Value = (Ipv4Addr, u8)> {
            (any::<[u8; 4]>(), 0u8..=32).prop_map(|(ip, bits)| (Ipv4Addr::from(ip), bits))
        }

        fn v6_net() -> impl Strategy<Value = (Ipv6Addr, u8)> {
            (any::<[u8; 16]>(), 0u8..=128).prop_map(|(ip, bits)| (Ipv6Addr::from(ip), bits))
        }

        proptest! {
            #[test]
            fn an_ipv4_network_holds_exactly_the_addresses_under_its_mask(
                (net, bits) in v4_net(),
                ip in any::<[u8; 4]>(),
            ) {
                let list: AddrList = format!("{net}/{bits}").parse().expect("a network");
                let ip = Ipv4Addr::from(ip);
                let mask = if bits == 0 { 0 } else { u32::MAX << (32 - u32::from(bits)) };
                let inside = u32::from(ip) & mask == u32::from(net) & mask;
                prop_assert_eq!(list.contains(IpAddr::V4(ip)), inside);
                // Written as IPv6, the same address is the same client.
                prop_assert_eq!(list.contains(IpAddr::V6(ip.to_ipv6_mapped())), inside);
                // Every network holds its own address.
                prop_assert!(list.contains(IpAddr::V4(net)));
            }

            #[test]
            fn an_ipv6_network_holds_exactly_the_addresses_under_its_mask(
                (net, bits) in v6_net(),
                ip in any::<[u8; 16]>(),
            ) {
                let list: AddrList = format!("{net}/{bits}").parse().expect("a network");
                let ip = Ipv6Addr::from(ip);
                let mask = if bits == 0 { 0 } else { u128::MAX << (128 - u32::from(bits)) };
                let inside = u128::from(ip) & mask == u128::from(net) & mask;
                // A mapped IPv4 address is judged as IPv4, so only plain IPv6.
                prop_assume!(ip.to_ipv4_mapped().is_none() && net.to_ipv4_mapped().is_none());
                prop_assert_eq!(list.contains(IpAddr::V6(ip)), inside);
            }

            #[test]
            fn a_list_reads_back_what_it_writes(
                v4 in prop::collection::vec(v4_net(), 1..4),
                v6 in prop::collection::vec(v6_net(), 0..4),
                probe in any::<[u8; 4]>(),
            ) {
                let parts: Vec<String> = v4
                    .iter()
                    .map(|(ip, bits)| format!("{ip}/{bits}"))
                    .chain(v6.iter().map(|(ip, bits)| format!("{ip}/{bits}")))
                    .collect();
                let list: AddrList = parts.join(",").parse().expect("a list");
                let again: AddrList = list.to_string().parse().expect("its own text");
                let probe = IpAddr::V4(Ipv4Addr::from(probe));
                prop_assert_eq!(again.contains(probe), list.contains(probe));
                // Any of the listed networks holding the address is enough.
                let one_holds = v4
                    .iter()
                    .any(|(net, bits)| format!("{net}/{bits}").parse::<AddrList>().expect("a network").contains(probe));
                prop_assert_eq!(list.contains(probe), one_holds);
            }

            #[test]
            fn text_that_is_no_list_is_refused_without_a_panic(text in "\\PC{0,40}") {
                let _ = text.parse::<AddrList>();
            }
        }
    }
}
