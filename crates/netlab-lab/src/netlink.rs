//! The lab's links, addresses, routes and neighbours, made over rtnetlink from this process.
//!
//! What `ip` and `bridge` do, without a process for each batch of changes: a process costs about a millisecond on
//! a small virtual machine (most of it a dynamic glibc start), about as much as the kernel's own work for a node's
//! dozen changes. A [`Netlink`] is a socket bound to one network namespace, the one its opener was in when it was
//! made; every request waits for the kernel's answer, and a refusal is an error that names the change in `ip`'s
//! words and the namespace.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use rustix::net::{
    recv, send, socket_with, AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType,
};

use crate::Error;

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const RTM_NEWNEIGH: u16 = 28;
const NLMSG_ERROR: u16 = 2;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_LINK: u16 = 5;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFLA_VXLAN_ID: u16 = 1;
const IFLA_VXLAN_LINK: u16 = 3;
const IFLA_VXLAN_LOCAL: u16 = 4;
const IFLA_VXLAN_LEARNING: u16 = 7;
const IFLA_VXLAN_PORT: u16 = 15;
const IFLA_IPVLAN_MODE: u16 = 1;
const IPVLAN_MODE_L2: u16 = 0;
const IFF_UP: u32 = 0x1;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_F_NODAD: u8 = 0x2;

const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RTN_UNICAST: u8 = 1;
const RTNH_F_ONLINK: u32 = 0x4;

const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
const NUD_NOARP: u16 = 0x40;
const NUD_PERMANENT: u16 = 0x80;
const NTF_SELF: u8 = 0x2;

const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const AF_BRIDGE: u8 = 7;

/// The index of `lo` in every network namespace.
pub const LOOPBACK: i32 = 1;

/// A MAC address.
pub type Mac = [u8; 6];

/// An rtnetlink socket in one network namespace.
#[derive(Debug)]
pub struct Netlink {
    socket: OwnedFd,
    seq: u32,
    /// The namespace's name, for messages.
    netns: String,
}

impl Netlink {
    /// A socket in the calling thread's network namespace; `netns` names it in messages.
    pub fn here(netns: &str) -> Result<Netlink, Error> {
        let socket = socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            None, // NETLINK_ROUTE
        )
        .map_err(|e| Error::Command {
            command: format!("rtnetlink socket in network namespace {netns}"),
            reason: e.to_string(),
        })?;
        Ok(Netlink {
            socket,
            seq: 0,
            netns: netns.to_owned(),
        })
    }

    /// `ip link add NAME type veth peer name PEER [netns PEER_NETNS]`: without `peer_netns` both ends are here.
    pub fn add_veth(
        &mut self,
        name: &str,
        peer: &str,
        peer_netns: Option<BorrowedFd<'_>>,
    ) -> Result<(), Error> {
        let mut request = Request::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL)
            .push(&ifinfo(0, 0))
            .attr(IFLA_IFNAME, &c_name(name))
            .open(IFLA_LINKINFO)
            .attr(IFLA_INFO_KIND, b"veth")
            .open(IFLA_INFO_DATA)
            .open(VETH_INFO_PEER)
            .push(&ifinfo(0, 0))
            .attr(IFLA_IFNAME, &c_name(peer));
        if let Some(ns) = peer_netns {
            let fd = u32::try_from(ns.as_raw_fd()).unwrap_or(u32::MAX);
            request = request.attr(IFLA_NET_NS_FD, &fd.to_ne_bytes());
        }
        let request = request.close().close().close();
        self.ack(request, || {
            format!("link add {name} type veth peer name {peer}")
        })
    }

    /// `ip link add NAME link LOWER type ipvlan mode l2`, `lower` by index.
    pub fn add_ipvlan(&mut self, name: &str, lower: i32) -> Result<(), Error> {
        let request = Request::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL)
            .push(&ifinfo(0, 0))
            .attr(IFLA_IFNAME, &c_name(name))
            .attr(IFLA_LINK, &lower.to_ne_bytes())
            .open(IFLA_LINKINFO)
            .attr(IFLA_INFO_KIND, b"ipvlan")
            .open(IFLA_INFO_DATA)
            .attr(IFLA_IPVLAN_MODE, &IPVLAN_MODE_L2.to_ne_bytes())
            .close()
            .close();
        self.ack(request, || {
            format!("link add {name} link ifindex {lower} type ipvlan mode l2")
        })
    }

    /// `ip link add NAME type bridge`.
    pub fn add_bridge(&mut self, name: &str) -> Result<(), Error> {
        let request = Request::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL)
            .push(&ifinfo(0, 0))
            .attr(IFLA_IFNAME, &c_name(name))
            .open(IFLA_LINKINFO)
            .attr(IFLA_INFO_KIND, b"bridge")
            .close();
        self.ack(request, || format!("link add {name} type bridge"))
    }

    /// `ip link add NAME address MAC type vxlan id ID local LOCAL dev DEV dstport PORT nolearning`, `dev` by index.
    pub fn add_vxlan(
        &mut self,
        name: &str,
        mac: Mac,
        id: u32,
        local: Ipv4Addr,
        dev: i32,
        port: u16,
    ) -> Result<(), Error> {
        let request = Request::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL)
            .push(&ifinfo(0, 0))
            .attr(IFLA_IFNAME, &c_name(name))
            .attr(IFLA_ADDRESS, &mac)
            .open(IFLA_LINKINFO)
            .attr(IFLA_INFO_KIND, b"vxlan")
            .open(IFLA_INFO_DATA)
            .attr(IFLA_VXLAN_ID, &id.to_ne_bytes())
            .attr(IFLA_VXLAN_LINK, &dev.to_ne_bytes())
            .attr(IFLA_VXLAN_LOCAL, &local.octets())
            .attr(IFLA_VXLAN_LEARNING, &[0])
            .attr(IFLA_VXLAN_PORT, &port.to_be_bytes())
            .close()
            .close();
        self.ack(request, || {
            format!("link add {name} type vxlan id {id} local {local} dstport {port} nolearning")
        })
    }

    /// `ip link set INDEX [mtu MTU] [master MASTER] up`.
    pub fn set_up(
        &mut self,
        index: i32,
        mtu: Option<u32>,
        master: Option<i32>,
    ) -> Result<(), Error> {
        let mut request = Request::new(RTM_NEWLINK, 0).push(&ifinfo(index, IFF_UP));
        if let Some(mtu) = mtu {
            request = request.attr(IFLA_MTU, &mtu.to_ne_bytes());
        }
        if let Some(master) = master {
            request = request.attr(IFLA_MASTER, &master.to_ne_bytes());
        }
        self.ack(request, || {
            let mut s = format!("link set {} up", ifindex(index));
            if let Some(mtu) = mtu {
                s.push_str(&format!(" mtu {mtu}"));
            }
            if let Some(master) = master {
                s.push_str(&format!(" master {}", ifindex(master)));
            }
            s
        })
    }

    /// The index of the link called `name`.
    pub fn index(&mut self, name: &str) -> Result<i32, Error> {
        let request = Request::new(RTM_GETLINK, 0)
            .push(&ifinfo(0, 0))
            .attr(IFLA_IFNAME, &c_name(name));
        let reply = self.call(request, || format!("link show {name}"))?;
        // The reply is the link's own RTM_NEWLINK: its ifinfomsg follows the 16-byte header, the index at 4.
        reply
            .get(20..24)
            .and_then(|b| b.try_into().ok())
            .map(i32::from_ne_bytes)
            .ok_or_else(|| self.failed(&format!("link show {name}"), "a reply too short".into()))
    }

    /// `ip addr add ADDRESS/PREFIX dev INDEX [nodad]`.
    pub fn add_address(
        &mut self,
        index: i32,
        address: IpAddr,
        prefix: u8,
        nodad: bool,
    ) -> Result<(), Error> {
        let (family, bytes) = family_of(address);
        let mut head = vec![family, prefix, if nodad { IFA_F_NODAD } else { 0 }, 0];
        head.extend(index.to_ne_bytes());
        let request = Request::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL)
            .push(&head)
            .attr(IFA_LOCAL, &bytes)
            .attr(IFA_ADDRESS, &bytes);
        self.ack(request, || {
            format!(
                "addr add {address}/{prefix} dev {}{}",
                ifindex(index),
                if nodad { " nodad" } else { "" }
            )
        })
    }

    /// `ip route add DST via GATEWAY [dev OIF] [onlink]`; no `dst` is the default route.
    pub fn add_route(
        &mut self,
        dst: Option<(IpAddr, u8)>,
        gateway: IpAddr,
        oif: Option<i32>,
        onlink: bool,
    ) -> Result<(), Error> {
        let (family, via) = family_of(gateway);
        let mut head = vec![
            family,
            dst.map_or(0, |(_, len)| len),
            0,
            0,
            RT_TABLE_MAIN,
            RTPROT_BOOT,
            RT_SCOPE_UNIVERSE,
            RTN_UNICAST,
        ];
        head.extend(if onlink { RTNH_F_ONLINK } else { 0 }.to_ne_bytes());
        let mut request = Request::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL).push(&head);
        if let Some((net, _)) = dst {
            request = request.attr(RTA_DST, &family_of(net).1);
        }
        request = request.attr(RTA_GATEWAY, &via);
        if let Some(oif) = oif {
            request = request.attr(RTA_OIF, &oif.to_ne_bytes());
        }
        self.ack(request, || {
            let to = dst.map_or("default".to_owned(), |(n, l)| format!("{n}/{l}"));
            let dev = oif.map_or(String::new(), |i| format!(" dev {}", ifindex(i)));
            format!(
                "route add {to} via {gateway}{dev}{}",
                if onlink { " onlink" } else { "" }
            )
        })
    }

    /// `ip neigh add ADDRESS lladdr MAC dev INDEX nud permanent`.
    pub fn add_neighbour(&mut self, index: i32, address: Ipv4Addr, mac: Mac) -> Result<(), Error> {
        let request = Request::new(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_EXCL)
            .push(&ndmsg(AF_INET, index, NUD_PERMANENT, 0))
            .attr(NDA_DST, &address.octets())
            .attr(NDA_LLADDR, &mac);
        self.ack(request, || {
            format!(
                "neigh add {address} lladdr {} dev {} nud permanent",
                show_mac(mac),
                ifindex(index)
            )
        })
    }

    /// `bridge fdb append MAC dev INDEX dst DST`: the forwarding entry a vxlan link floods to.
    pub fn append_fdb(&mut self, index: i32, mac: Mac, dst: Ipv4Addr) -> Result<(), Error> {
        let request = Request::new(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_APPEND)
            .push(&ndmsg(
                AF_BRIDGE,
                index,
                NUD_NOARP | NUD_PERMANENT,
                NTF_SELF,
            ))
            .attr(NDA_LLADDR, &mac)
            .attr(NDA_DST, &dst.octets());
        self.ack(request, || {
            format!(
                "bridge fdb append {} dev {} dst {dst}",
                show_mac(mac),
                ifindex(index)
            )
        })
    }

    /// Sends a request that must be acknowledged.
    fn ack(&mut self, request: Request, what: impl Fn() -> String) -> Result<(), Error> {
        self.call(request.flags(NLM_F_ACK), what).map(|_| ())
    }

    /// Sends a request and returns its answer: the kernel's reply message, or nothing for an acknowledgement.
    fn call(&mut self, request: Request, what: impl Fn() -> String) -> Result<Vec<u8>, Error> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let bytes = request.finish(seq);
        send(&self.socket, &bytes, SendFlags::empty())
            .map_err(|e| self.failed(&what(), e.to_string()))?;
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let len = loop {
                match recv(&self.socket, &mut buf[..], RecvFlags::empty()) {
                    Ok((len, _)) => break len,
                    Err(rustix::io::Errno::INTR) => {}
                    Err(e) => return Err(self.failed(&what(), e.to_string())),
                }
            };
            let mut at = 0;
            while let Some(header) = buf.get(at..(at + 16).min(len)).filter(|h| h.len() == 16) {
                let field = |i: usize| {
                    u32::from_ne_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]])
                };
                let size = usize::try_from(field(0)).unwrap_or(0);
                let kind = u16::from_ne_bytes([header[4], header[5]]);
                if size < 16 || at + size > len {
                    return Err(self.failed(
                        &what(),
                        format!("a malformed rtnetlink reply of {len} bytes"),
                    ));
                }
                let message = &buf[at..at + size];
                if field(8) == seq {
                    if kind != NLMSG_ERROR {
                        return Ok(message.to_vec());
                    }
                    let errno = message
                        .get(16..20)
                        .and_then(|b| b.try_into().ok())
                        .map(i32::from_ne_bytes)
                        .unwrap_or(-(rustix::io::Errno::PROTO.raw_os_error()));
                    return match errno {
                        0 => Ok(Vec::new()),
                        e => Err(self.failed(
                            &what(),
                            std::io::Error::from_raw_os_error(e.saturating_neg()).to_string(),
                        )),
                    };
                }
                // Another request's answer (none is outstanding, but a reply is read whole): skip it.
                at += (size + 3) & !3;
            }
        }
    }

    fn failed(&self, what: &str, reason: String) -> Error {
        Error::Command {
            command: format!("ip -n {} {what} (over rtnetlink)", self.netns),
            reason,
        }
    }
}

/// A link by index, as a message shows it.
fn ifindex(index: i32) -> String {
    format!("ifindex {index}")
}

fn show_mac(mac: Mac) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn family_of(address: IpAddr) -> (u8, Vec<u8>) {
    match address {
        IpAddr::V4(a) => (AF_INET, a.octets().to_vec()),
        IpAddr::V6(a) => (AF_INET6, a.octets().to_vec()),
    }
}

/// A link name as the kernel takes it: NUL-terminated.
fn c_name(name: &str) -> Vec<u8> {
    let mut bytes = name.as_bytes().to_vec();
    bytes.push(0);
    bytes
}

/// struct ifinfomsg: any family, the link's index (0 for a new one), IFF_UP set in `flags` changes only that flag.
fn ifinfo(index: i32, flags: u32) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[0] = AF_UNSPEC;
    m[4..8].copy_from_slice(&index.to_ne_bytes());
    m[8..12].copy_from_slice(&flags.to_ne_bytes());
    m[12..16].copy_from_slice(&flags.to_ne_bytes());
    m
}

/// struct ndmsg.
fn ndmsg(family: u8, index: i32, state: u16, flags: u8) -> [u8; 12] {
    let mut m = [0u8; 12];
    m[0] = family;
    m[4..8].copy_from_slice(&index.to_ne_bytes());
    m[8..10].copy_from_slice(&state.to_ne_bytes());
    m[10] = flags;
    m
}

/// A request being built: the 16-byte header, the family's fixed part, then attributes, nested where opened.
struct Request {
    buf: Vec<u8>,
    open: Vec<usize>,
}

impl Request {
    fn new(kind: u16, flags: u16) -> Request {
        let mut buf = Vec::with_capacity(256);
        buf.extend(0u32.to_ne_bytes()); // length, set by `finish`
        buf.extend(kind.to_ne_bytes());
        buf.extend((NLM_F_REQUEST | flags).to_ne_bytes());
        buf.extend(0u32.to_ne_bytes()); // sequence number, set by `finish`
        buf.extend(0u32.to_ne_bytes()); // port id: the kernel's
        Request {
            buf,
            open: Vec::new(),
        }
    }

    fn flags(mut self, more: u16) -> Request {
        let old = u16::from_ne_bytes([self.buf[6], self.buf[7]]);
        self.buf[6..8].copy_from_slice(&(old | more).to_ne_bytes());
        self
    }

    /// Bytes as they are, padded to 4.
    fn push(mut self, bytes: &[u8]) -> Request {
        self.buf.extend_from_slice(bytes);
        self.pad();
        self
    }

    fn attr(mut self, kind: u16, data: &[u8]) -> Request {
        let len = u16::try_from(4 + data.len()).unwrap_or(u16::MAX);
        self.buf.extend(len.to_ne_bytes());
        self.buf.extend(kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
        self
    }

    /// Starts a nested attribute; `close` ends the innermost.
    fn open(mut self, kind: u16) -> Request {
        self.open.push(self.buf.len());
        self.buf.extend(0u16.to_ne_bytes());
        self.buf.extend(kind.to_ne_bytes());
        self
    }

    fn close(mut self) -> Request {
        if let Some(at) = self.open.pop() {
            let len = u16::try_from(self.buf.len() - at).unwrap_or(u16::MAX);
            self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn finish(mut self, seq: u32) -> Vec<u8> {
        let len = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_attributes_carry_their_own_lengths() {
        let bytes = Request::new(RTM_NEWLINK, NLM_F_CREATE)
            .push(&ifinfo(0, 0))
            .attr(IFLA_IFNAME, &c_name("br0"))
            .open(IFLA_LINKINFO)
            .attr(IFLA_INFO_KIND, b"bridge")
            .close()
            .finish(7);
        // header 16 + ifinfomsg 16 + IFNAME (4 + 4) + LINKINFO (4 + KIND (4 + 6, padded to 12)) = 56
        assert_eq!(bytes.len(), 56);
        assert_eq!(u32::from_ne_bytes(bytes[0..4].try_into().unwrap()), 56);
        assert_eq!(u32::from_ne_bytes(bytes[8..12].try_into().unwrap()), 7);
        assert_eq!(&bytes[32..40], &[8, 0, 3, 0, b'b', b'r', b'0', 0]);
        assert_eq!(u16::from_ne_bytes(bytes[40..42].try_into().unwrap()), 16);
        assert_eq!(u16::from_ne_bytes(bytes[44..46].try_into().unwrap()), 10);
    }

    #[test]
    fn macs_show_as_ip_does() {
        assert_eq!(show_mac([0x0a, 0x58, 0, 0, 1, 0xff]), "0a:58:00:00:01:ff");
    }
}
