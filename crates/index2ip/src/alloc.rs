//! The arithmetic: node block + index = pod address. Pure, no I/O.
//!
//! IPv4 adds the index to the last octet of the node's address, keeping the prefix length. IPv6 follows the site
//! convention: the last 16-bit group's hex digits are read as a decimal number, the index is added, and the decimal
//! result is written back as hex digits, so `::112` + 5 is `::117`, matching the IPv4 address visually.
//!
//! Unlike the original, every result is checked: it must lie inside the node's subnet and must not be the subnet's
//! network, broadcast or gateway address.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU32;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::cmdline::NodeKeys;

/// A pod's index on its node: a positive integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Index(NonZeroU32);

impl Index {
    /// The index `n`, if it is in 1..=u32::MAX.
    pub fn new(n: u64) -> Option<Index> {
        u32::try_from(n).ok().and_then(NonZeroU32::new).map(Index)
    }

    /// The index as a number, never 0.
    pub fn get(self) -> u32 {
        self.0.get()
    }
}

impl fmt::Display for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The addresses an index gives on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    /// The IPv4 address with the node block's prefix length.
    pub v4: Ipv4Net,
    /// The IPv6 address, where the node has an IPv6 block.
    pub v6: Option<Ipv6Net>,
}

/// Why an index gives no usable address on a node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct AllocError {
    /// The index asked for.
    pub index: Index,
    /// The node block that refused it (the IPv4 or the IPv6 one).
    pub block: IpNet,
    /// What went wrong.
    pub reason: Reason,
    /// How many indices the node has room for: every index from 1 to this one fits.
    pub capacity: u32,
}

/// What makes an address unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The sum leaves the last octet (IPv4) or four decimal digits (IPv6).
    Overflow,
    /// The address lies outside the node's subnet.
    Outside(IpAddr),
    /// The address is the subnet's network address.
    Network(IpAddr),
    /// The address is the subnet's broadcast address.
    Broadcast(IpAddr),
    /// The address is the subnet's gateway.
    Gateway(IpAddr),
    /// The IPv6 group holds hex letters, so the convention cannot number from it.
    Convention(u16),
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (index, block) = (self.index, self.block);
        match self.reason {
            Reason::Overflow => write!(f, "index {index} overflows the last address group of node block {block}"),
            Reason::Outside(a) => write!(f, "index {index} gives {a}, outside the subnet of node block {block}"),
            Reason::Network(a) => write!(f, "index {index} gives {a}, the network address of node block {block}"),
            Reason::Broadcast(a) => write!(f, "index {index} gives {a}, the broadcast address of node block {block}"),
            Reason::Gateway(a) => write!(f, "index {index} gives {a}, the gateway of node block {block}"),
            Reason::Convention(g) => write!(
                f,
                "index {index} cannot be numbered in node block {block}: its last group {g:x} holds hex letters, \
                 and the IPv6 convention reads those digits as a decimal number"
            ),
        }?;
        match self.capacity {
            0 => f.write_str("; no index fits this node"),
            1 => f.write_str("; only index 1 fits"),
            n => write!(f, "; indices 1 to {n} fit"),
        }
    }
}

/// The addresses `index` gives on the node described by `keys`.
pub fn allocate(keys: &NodeKeys, index: Index) -> Result<Allocation, AllocError> {
    try_allocate(keys, index.get()).map_err(|(block, reason)| AllocError {
        index,
        block,
        reason,
        capacity: capacity(keys),
    })
}

/// How many indices fit on the node: every index from 1 to the returned number gives valid addresses, and the next
/// one does not. At most 255, since IPv4 numbers within one octet.
pub fn capacity(keys: &NodeKeys) -> u32 {
    (1..=256)
        .find(|&i| try_allocate(keys, i).is_err())
        .map_or(256, |i| i - 1)
}

fn try_allocate(keys: &NodeKeys, index: u32) -> Result<Allocation, (IpNet, Reason)> {
    let v4 = v4(keys.v4.node, keys.v4.gateway, index).map_err(|r| (IpNet::V4(keys.v4.node), r))?;
    let v6 = match &keys.v6 {
        None => None,
        Some(k) => Some(v6(k.node, k.gateway, index).map_err(|r| (IpNet::V6(k.node), r))?),
    };
    Ok(Allocation { v4, v6 })
}

/// IPv4: the last octet plus the index.
fn v4(node: Ipv4Net, gateway: Ipv4Addr, index: u32) -> Result<Ipv4Net, Reason> {
    let [a, b, c, d] = node.addr().octets();
    let last = u32::from(d)
        .checked_add(index)
        .and_then(|n| u8::try_from(n).ok())
        .ok_or(Reason::Overflow)?;
    let addr = Ipv4Addr::new(a, b, c, last);
    // A /31 (RFC 3021) and a /32 have no network or broadcast address to avoid.
    let ends = node.prefix_len() <= 30;
    check(addr.into(), node.into(), gateway.into(), ends)?;
    Ok(with_prefix_v4(addr, node))
}

/// IPv6: the last group's hex digits read as decimal, plus the index, written back as hex digits.
fn v6(node: Ipv6Net, gateway: Ipv6Addr, index: u32) -> Result<Ipv6Net, Reason> {
    let mut segments = node.addr().segments();
    let group = segments[7];
    let decimal = hex_digits_as_decimal(group).ok_or(Reason::Convention(group))?;
    let sum = decimal.checked_add(index).ok_or(Reason::Overflow)?;
    segments[7] = decimal_as_hex_digits(sum).ok_or(Reason::Overflow)?;
    let addr = Ipv6Addr::from(segments);
    // IPv6 has no broadcast; the network address is the subnet-router anycast, except in a /127 or /128.
    check(addr.into(), node.into(), gateway.into(), false)?;
    if node.prefix_len() < 127 && addr == node.network() {
        return Err(Reason::Network(addr.into()));
    }
    Ok(with_prefix_v6(addr, node))
}

fn check(addr: IpAddr, node: IpNet, gateway: IpAddr, ends: bool) -> Result<(), Reason> {
    if !node.contains(&addr) {
        Err(Reason::Outside(addr))
    } else if ends && addr == node.network() {
        Err(Reason::Network(addr))
    } else if ends && addr == node.broadcast() {
        Err(Reason::Broadcast(addr))
    } else if addr == gateway {
        Err(Reason::Gateway(addr))
    } else {
        Ok(())
    }
}

fn with_prefix_v4(addr: Ipv4Addr, node: Ipv4Net) -> Ipv4Net {
    // The prefix length comes from a parsed Ipv4Net, so it is valid for any IPv4 address.
    Ipv4Net::new(addr, node.prefix_len()).unwrap_or(node)
}

fn with_prefix_v6(addr: Ipv6Addr, node: Ipv6Net) -> Ipv6Net {
    // The prefix length comes from a parsed Ipv6Net, so it is valid for any IPv6 address.
    Ipv6Net::new(addr, node.prefix_len()).unwrap_or(node)
}

/// `0x0112` → 112; `None` when a digit is a hex letter.
fn hex_digits_as_decimal(group: u16) -> Option<u32> {
    (0..4).rev().try_fold(0u32, |acc, i| {
        let nibble = u32::from((group >> (4 * i)) & 0xf);
        (nibble <= 9).then_some(acc * 10 + nibble)
    })
}

/// 117 → `0x0117`; `None` past 9999, which four hex digits cannot show.
fn decimal_as_hex_digits(n: u32) -> Option<u16> {
    if n > 9999 {
        return None;
    }
    let digits = [n / 1000, n / 100 % 10, n / 10 % 10, n % 10];
    // Each digit is below 10, so the fold stays below 0x10000.
    Some(digits.iter().fold(0u16, |acc, &d| (acc << 4) | d as u16))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmdline::{Family, NodeKeys};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const EXAMPLE: &str = "epoxy.ipv4=4.14.159.112/26,4.14.159.65,8.8.8.8,8.8.4.4 epoxy.ipv6=2001:1900:2100:2d::112/64,2001:1900:2100:2d::1,2001:4860:4860::8888,2001:4860:4860::8844";

    fn idx(n: u64) -> Index {
        Index::new(n).unwrap_or(Index(NonZeroU32::MIN))
    }

    fn keys(v4: &str, v6: Option<&str>) -> Result<NodeKeys, Box<dyn std::error::Error>> {
        let mut line = format!("epoxy.ipv4={v4}");
        if let Some(v6) = v6 {
            line += &format!(" epoxy.ipv6={v6}");
        }
        Ok(NodeKeys::parse(&line)?)
    }

    #[test]
    fn the_documented_example() -> TestResult {
        let k = NodeKeys::parse(EXAMPLE)?;
        let a = allocate(&k, idx(5))?;
        assert_eq!(a.v4.to_string(), "4.14.159.117/26");
        assert_eq!(
            a.v6.map(|n| n.to_string()).as_deref(),
            Some("2001:1900:2100:2d::117/64")
        );
        Ok(())
    }

    #[test]
    fn ipv6_convention_reads_hex_digits_as_decimal() -> TestResult {
        let k = keys(
            "192.0.2.9/26,192.0.2.1,,",
            Some("2001:db8::9/64,2001:db8::1,,"),
        )?;
        let a = allocate(&k, idx(12))?;
        assert_eq!(a.v4.to_string(), "192.0.2.21/26");
        assert_eq!(
            a.v6.map(|n| n.to_string()).as_deref(),
            Some("2001:db8::21/64")
        );
        assert_eq!(hex_digits_as_decimal(0x0999), Some(999));
        assert_eq!(decimal_as_hex_digits(1000), Some(0x1000));
        assert_eq!(hex_digits_as_decimal(0x9999), Some(9999));
        assert_eq!(decimal_as_hex_digits(10000), None);
        assert_eq!(hex_digits_as_decimal(0x00a0), None);
        Ok(())
    }

    #[test]
    fn the_site_layout_fits_twelve_per_machine() -> TestResult {
        // mlab1..mlab4 at offsets 9, 22, 35, 48 of a /26, gateway at +1.
        for (machine, offset) in [(1, 9), (2, 22), (3, 35), (4, 48)] {
            let k = keys(
                &format!("192.0.2.{offset}/26,192.0.2.1,,"),
                Some(&format!("2001:db8::{offset}/64,2001:db8::1,,")),
            )?;
            let room = capacity(&k);
            assert!(room >= 12, "mlab{machine} has room for {room}");
        }
        // Single-machine sites: the machine at +3, room for 11 in a /28 and 3 in a /29.
        assert_eq!(capacity(&keys("192.0.2.3/28,192.0.2.1,,", None)?), 11);
        assert_eq!(capacity(&keys("192.0.2.3/29,192.0.2.1,,", None)?), 3);
        Ok(())
    }

    #[test]
    fn refusals_name_the_block_the_index_and_the_limit() -> TestResult {
        let k = NodeKeys::parse(EXAMPLE)?;
        let cases = [
            (15, "index 15 gives 4.14.159.127, the broadcast address of node block 4.14.159.112/26; indices 1 to 14 fit"),
            (16, "index 16 gives 4.14.159.128, outside the subnet of node block 4.14.159.112/26; indices 1 to 14 fit"),
            (144, "index 144 overflows the last address group of node block 4.14.159.112/26; indices 1 to 14 fit"),
            (u64::from(u32::MAX), "index 4294967295 overflows"),
        ];
        for (i, expected) in cases {
            let msg = allocate(&k, idx(i))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(msg.starts_with(expected), "{i}: {msg}");
        }
        // A /29 site refuses the original's silent failure: the machine at +3 with index 4 would be the broadcast.
        let small = keys("192.0.2.3/29,192.0.2.1,,", None)?;
        let e = allocate(&small, idx(4)).err().ok_or("accepted")?;
        assert_eq!(e.reason, Reason::Broadcast("192.0.2.7".parse()?));
        assert_eq!(e.capacity, 3);
        // The gateway is never handed out.
        let gw = keys("192.0.2.9/26,192.0.2.12,,", None)?;
        assert_eq!(
            allocate(&gw, idx(3)).err().map(|e| e.reason),
            Some(Reason::Gateway("192.0.2.12".parse()?))
        );
        assert_eq!(capacity(&gw), 2);
        Ok(())
    }

    #[test]
    fn hex_letters_cannot_follow_the_convention() -> TestResult {
        let k = keys(
            "192.0.2.9/26,192.0.2.1,,",
            Some("2001:db8::a9/64,2001:db8::1,,"),
        )?;
        let e = allocate(&k, idx(1)).err().ok_or("accepted")?;
        assert_eq!(
            e.to_string(),
            "index 1 cannot be numbered in node block 2001:db8::a9/64: its last group a9 holds hex letters, \
             and the IPv6 convention reads those digits as a decimal number; no index fits this node"
        );
        Ok(())
    }

    #[test]
    fn tiny_blocks() -> TestResult {
        // A /32 holds only the node; a /31 holds the node and its peer, which here is the gateway.
        assert_eq!(capacity(&keys("192.0.2.8/32,192.0.2.1,,", None)?), 0);
        assert_eq!(capacity(&keys("192.0.2.8/31,192.0.2.9,,", None)?), 0);
        assert_eq!(capacity(&keys("192.0.2.8/31,192.0.2.1,,", None)?), 1);
        Ok(())
    }

    /// Every accepted address lies inside the node's subnet, is not its network, broadcast or gateway address, and
    /// distinct indices give distinct addresses. Checked for every last octet of the node, every prefix length from
    /// /16 to /32 (and /0, /8), three gateway positions, with and without IPv6, for every index up to just past the
    /// node's capacity and at the end of the octet.
    #[test]
    fn invariants_hold_over_the_whole_domain() {
        let mut accepted = 0u64;
        let prefixes = [0u8, 8].into_iter().chain(16..=32);
        for prefix in prefixes {
            for last in 0..=255u8 {
                let node = Ipv4Net::new(Ipv4Addr::new(198, 51, 100, last), prefix).unwrap();
                let gateways = [
                    node.network(),
                    Ipv4Addr::new(198, 51, 100, last.wrapping_add(3)),
                    node.broadcast(),
                ];
                for gateway in gateways {
                    // The IPv6 group mirrors the IPv4 octet, as the site convention has it.
                    for v6_group in [None, Some(decimal_as_hex_digits(u32::from(last)).unwrap())] {
                        let v6 = v6_group.map(|g| Family {
                            node: Ipv6Net::new(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, g), 64)
                                .unwrap(),
                            gateway: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
                            dns: vec![],
                        });
                        let k = NodeKeys {
                            v4: Family {
                                node,
                                gateway,
                                dns: vec![],
                            },
                            v6,
                        };
                        accepted += sweep(&k);
                    }
                }
            }
        }
        assert!(
            accepted > 1_000_000,
            "the sweep accepted only {accepted} addresses"
        );
    }

    fn sweep(k: &NodeKeys) -> u64 {
        let room = capacity(k);
        let mut seen4 = std::collections::HashSet::new();
        let mut seen6 = std::collections::HashSet::new();
        for i in 1..=room {
            let a = allocate(k, idx(u64::from(i)))
                .unwrap_or_else(|e| panic!("index {i} within capacity {room}: {e}"));
            let n = k.v4.node;
            assert_eq!(a.v4.prefix_len(), n.prefix_len());
            assert!(n.contains(&a.v4.addr()), "{a:?} outside {n}");
            assert_ne!(a.v4.addr(), k.v4.gateway);
            assert_ne!(a.v4.addr(), n.addr(), "the node's own address");
            if n.prefix_len() <= 30 {
                assert_ne!(a.v4.addr(), n.network());
                assert_ne!(a.v4.addr(), n.broadcast());
            }
            assert!(seen4.insert(a.v4.addr()), "{i} repeats {}", a.v4);
            match (&k.v6, a.v6) {
                (Some(f), Some(v6)) => {
                    assert!(f.node.contains(&v6.addr()));
                    assert_ne!(v6.addr(), f.gateway);
                    assert_ne!(v6.addr(), f.node.network());
                    assert!(seen6.insert(v6.addr()));
                    // The visual match the convention exists for.
                    assert_eq!(
                        format!("{:x}", v6.addr().segments()[7]),
                        a.v4.addr().octets()[3].to_string()
                    );
                }
                (None, None) => {}
                other => panic!("family mismatch {other:?}"),
            }
        }
        // The index just past capacity is refused, as is everything past the octet, each naming the capacity.
        for i in [room + 1, 256, 1000] {
            let e = allocate(k, idx(u64::from(i))).err();
            assert_eq!(e.map(|e| e.capacity), Some(room), "index {i} on {k:?}");
        }
        u64::from(room)
    }
}
