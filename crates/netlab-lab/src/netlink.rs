//! The lab's links, addresses, routes and neighbours, made and read over rtnetlink from this process.
//!
//! What `ip` and `bridge` do, without a process for each batch of changes: a process costs about a millisecond on
//! a small virtual machine (most of it a dynamic glibc start), about as much as the kernel's own work for a node's
//! dozen changes. A [`Netlink`] is a socket bound to one network namespace, the one its opener was in when it was
//! made ([`Netlink::here`]) or the named one it entered for the purpose ([`Netlink::in_netns`]); every request
//! waits for the kernel's answer, and a refusal is an error that names the change in `ip`'s words, the namespace
//! and the kernel's errno.
//!
//! The messages are those of `netlink-packet-route` (encoded and decoded there), the socket is `netlink-sys`'s,
//! used synchronously: one request at a time, each answered before the next is sent.
//!
//! ```no_run
//! use netlab_lab::netlink::{Netlink, LOOPBACK};
//!
//! let mut links = Netlink::here("(this process's)")?;
//! links.set_up(LOOPBACK, None, None)?;
//! links.add_bridge("br0")?;
//! let bridge = links.index("br0")?;
//! links.add_address(bridge, "10.0.0.1".parse()?, 24, false)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_packet_core::{
    DecodeError, NetlinkBuffer, NetlinkDeserializable, NetlinkHeader, NetlinkMessage,
    NetlinkPayload, Parseable, NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressHeaderFlags, AddressMessage, AddressMessageBuffer,
};
use netlink_packet_route::link::{
    InfoData, InfoIpVlan, InfoKind, InfoVeth, InfoVxlan, IpVlanMode, LinkAttribute, LinkFlags,
    LinkInfo, LinkMessage, LinkMessageBuffer,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::Error;

/// The index of `lo` in every network namespace.
pub const LOOPBACK: i32 = 1;

/// A MAC address.
pub type Mac = [u8; 6];

/// What the kernel sends at most in one datagram: a dump's part is capped at 32 KiB (`netlink_recvmsg`), and a
/// single reply is smaller.
const RECEIVE_BUFFER: usize = 64 * 1024;

/// `bridge fdb`'s state for a static entry: `NUD_NOARP | NUD_PERMANENT`. `NeighbourState` names single states
/// only, so the combination goes as a raw value.
const NUD_NOARP_PERMANENT: u16 = 0x40 | 0x80;

/// An rtnetlink socket in one network namespace.
#[derive(Debug)]
pub struct Netlink {
    /// Never cloned: netlink-sys's `Socket` is `Clone` over a bare descriptor that each copy closes when dropped.
    socket: Socket,
    seq: u32,
    /// The namespace's name, for messages.
    netns: String,
}

impl Netlink {
    /// A socket in the calling thread's network namespace; `netns` names it in messages.
    pub fn here(netns: &str) -> Result<Netlink, Error> {
        let failed = |e: std::io::Error| Error::Command {
            command: format!("rtnetlink socket in network namespace {netns}"),
            reason: e.to_string(),
        };
        let socket = Socket::new(NETLINK_ROUTE).map_err(failed)?;
        // Answers come from the kernel (port 0) alone.
        socket.connect(&SocketAddr::new(0, 0)).map_err(failed)?;
        Ok(Netlink {
            socket,
            seq: 0,
            netns: netns.to_owned(),
        })
    }

    /// A socket in the named network namespace (its file under [`crate::sys::NETNS_DIR`]): a thread of its own
    /// enters the namespace, opens the socket there and ends; the socket stays in that namespace.
    pub fn in_netns(netns: &str) -> Result<Netlink, Error> {
        crate::sys::on_a_thread_of_its_own("opening an rtnetlink socket", || {
            crate::sys::enter_netns(netns)?;
            Netlink::here(netns)
        })
    }

    /// `ip link add NAME type veth peer name PEER [netns PEER_NETNS]`: without `peer_netns` both ends are here.
    pub fn add_veth(
        &mut self,
        name: &str,
        peer: &str,
        peer_netns: Option<BorrowedFd<'_>>,
    ) -> Result<(), Error> {
        let mut peer_link = LinkMessage::default();
        peer_link
            .attributes
            .push(LinkAttribute::IfName(peer.to_owned()));
        if let Some(ns) = peer_netns {
            peer_link
                .attributes
                .push(LinkAttribute::NetNsFd(ns.as_raw_fd()));
        }
        let link = new_link(
            name,
            vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_link))),
            ],
        );
        self.ack(RouteNetlinkMessage::NewLink(link), CREATE, || {
            format!("link add {name} type veth peer name {peer}")
        })
    }

    /// `ip link add NAME link LOWER type ipvlan mode l2`, `lower` by index.
    pub fn add_ipvlan(&mut self, name: &str, lower: i32) -> Result<(), Error> {
        let mut link = new_link(
            name,
            vec![
                LinkInfo::Kind(InfoKind::IpVlan),
                LinkInfo::Data(InfoData::IpVlan(vec![InfoIpVlan::Mode(IpVlanMode::L2)])),
            ],
        );
        link.attributes
            .insert(1, LinkAttribute::Link(lower.cast_unsigned()));
        self.ack(RouteNetlinkMessage::NewLink(link), CREATE, || {
            format!("link add {name} link ifindex {lower} type ipvlan mode l2")
        })
    }

    /// `ip link add NAME type bridge`.
    pub fn add_bridge(&mut self, name: &str) -> Result<(), Error> {
        let link = new_link(name, vec![LinkInfo::Kind(InfoKind::Bridge)]);
        self.ack(RouteNetlinkMessage::NewLink(link), CREATE, || {
            format!("link add {name} type bridge")
        })
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
        let mut link = new_link(
            name,
            vec![
                LinkInfo::Kind(InfoKind::Vxlan),
                LinkInfo::Data(InfoData::Vxlan(vec![
                    InfoVxlan::Id(id),
                    InfoVxlan::Link(dev.cast_unsigned()),
                    InfoVxlan::Local(local),
                    InfoVxlan::Learning(false),
                    InfoVxlan::Port(port),
                ])),
            ],
        );
        link.attributes
            .insert(1, LinkAttribute::Address(mac.to_vec()));
        self.ack(RouteNetlinkMessage::NewLink(link), CREATE, || {
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
        let mut link = LinkMessage::default();
        link.header.index = index.cast_unsigned();
        // Only the flags in the mask change: up, and nothing else.
        link.header.flags = LinkFlags::Up;
        link.header.change_mask = LinkFlags::Up;
        if let Some(mtu) = mtu {
            link.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(master) = master {
            link.attributes
                .push(LinkAttribute::Controller(master.cast_unsigned()));
        }
        self.ack(RouteNetlinkMessage::NewLink(link), 0, || {
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
        let what = || format!("link show {name}");
        let mut link = LinkMessage::default();
        link.attributes.push(LinkAttribute::IfName(name.to_owned()));
        let reply = self.call(RouteNetlinkMessage::GetLink(link), 0, what)?;
        match reply.first() {
            Some(Reply::Link(link)) => Ok(link.header.index.cast_signed()),
            _ => Err(self.failed(&what(), "no link in the kernel's reply".into())),
        }
    }

    /// `ip addr add ADDRESS/PREFIX dev INDEX [nodad]`.
    pub fn add_address(
        &mut self,
        index: i32,
        address: IpAddr,
        prefix: u8,
        nodad: bool,
    ) -> Result<(), Error> {
        let mut message = AddressMessage::default();
        message.header.family = family_of(address);
        message.header.prefix_len = prefix;
        message.header.index = index.cast_unsigned();
        if nodad {
            message.header.flags = AddressHeaderFlags::Nodad;
        }
        message.attributes = vec![
            AddressAttribute::Local(address),
            AddressAttribute::Address(address),
        ];
        self.ack(RouteNetlinkMessage::NewAddress(message), CREATE, || {
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
        let mut route = RouteMessage::default();
        route.header.address_family = family_of(gateway);
        route.header.destination_prefix_length = dst.map_or(0, |(_, len)| len);
        route.header.table = RouteHeader::RT_TABLE_MAIN;
        route.header.protocol = RouteProtocol::Boot;
        route.header.scope = RouteScope::Universe;
        route.header.kind = RouteType::Unicast;
        if onlink {
            route.header.flags = RouteFlags::Onlink;
        }
        if let Some((net, _)) = dst {
            route
                .attributes
                .push(RouteAttribute::Destination(route_address(net)));
        }
        route
            .attributes
            .push(RouteAttribute::Gateway(route_address(gateway)));
        if let Some(oif) = oif {
            route
                .attributes
                .push(RouteAttribute::Oif(oif.cast_unsigned()));
        }
        self.ack(RouteNetlinkMessage::NewRoute(route), CREATE, || {
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
        let mut neighbour = NeighbourMessage::default();
        neighbour.header.family = AddressFamily::Inet;
        neighbour.header.ifindex = index.cast_unsigned();
        neighbour.header.state = NeighbourState::Permanent;
        neighbour.attributes = vec![
            NeighbourAttribute::Destination(NeighbourAddress::Inet(address)),
            NeighbourAttribute::LinkLocalAddress(mac.to_vec()),
        ];
        self.ack(RouteNetlinkMessage::NewNeighbour(neighbour), CREATE, || {
            format!(
                "neigh add {address} lladdr {} dev {} nud permanent",
                show_mac(mac),
                ifindex(index)
            )
        })
    }

    /// `bridge fdb append MAC dev INDEX dst DST`: the forwarding entry a vxlan link floods to.
    pub fn append_fdb(&mut self, index: i32, mac: Mac, dst: Ipv4Addr) -> Result<(), Error> {
        let mut entry = NeighbourMessage::default();
        entry.header.family = AddressFamily::Bridge;
        entry.header.ifindex = index.cast_unsigned();
        entry.header.state = NeighbourState::Other(NUD_NOARP_PERMANENT);
        entry.header.flags = NeighbourFlags::Own;
        entry.attributes = vec![
            NeighbourAttribute::LinkLocalAddress(mac.to_vec()),
            NeighbourAttribute::Destination(NeighbourAddress::Inet(dst)),
        ];
        self.ack(
            RouteNetlinkMessage::NewNeighbour(entry),
            NLM_F_CREATE | NLM_F_APPEND,
            || {
                format!(
                    "bridge fdb append {} dev {} dst {dst}",
                    show_mac(mac),
                    ifindex(index)
                )
            },
        )
    }

    /// `ip link show`: every link of the namespace, in the kernel's order (by index).
    pub fn links(&mut self) -> Result<Vec<LinkMessage>, Error> {
        let request = RouteNetlinkMessage::GetLink(LinkMessage::default());
        self.dump(request, "link show", |m| match m {
            Reply::Link(link) => Some(link),
            _ => None,
        })
    }

    /// `ip addr show`'s addresses: every address of the namespace, IPv4 before IPv6, in the kernel's order.
    pub fn addresses(&mut self) -> Result<Vec<AddressMessage>, Error> {
        let request = RouteNetlinkMessage::GetAddress(AddressMessage::default());
        self.dump(request, "addr show", |m| match m {
            Reply::Address(address) => Some(address),
            _ => None,
        })
    }

    /// Sends a dump request and keeps the messages `pick` takes.
    fn dump<T>(
        &mut self,
        request: RouteNetlinkMessage,
        what: &str,
        pick: impl FnMut(Reply) -> Option<T>,
    ) -> Result<Vec<T>, Error> {
        let dumped = self.call(request, NLM_F_DUMP, || what.to_owned())?;
        Ok(dumped.into_iter().filter_map(pick).collect())
    }

    /// Sends a request that must be acknowledged.
    fn ack(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
        what: impl Fn() -> String,
    ) -> Result<(), Error> {
        self.call(message, flags | NLM_F_ACK, what).map(drop)
    }

    /// Sends a request and returns its answer: the kernel's one reply, a dump's messages, or nothing for an
    /// acknowledgement.
    fn call(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
        what: impl Fn() -> String,
    ) -> Result<Vec<Reply>, Error> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let bytes = encode(message, flags, seq);
        self.socket
            .send(&bytes, 0)
            .map_err(|e| self.failed(&what(), e.to_string()))?;
        // A request for one thing is answered by one message, unless an acknowledgement was asked for instead.
        let one_reply = flags & (NLM_F_DUMP | NLM_F_ACK) == 0;
        let mut answer = Vec::new();
        let mut buf = vec![0u8; RECEIVE_BUFFER];
        loop {
            let len = loop {
                match self.socket.recv(&mut &mut buf[..], 0) {
                    Ok(len) => break len.min(buf.len()),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(self.failed(&what(), e.to_string())),
                }
            };
            let mut at = 0;
            while at < len {
                let malformed = || format!("a malformed rtnetlink reply of {len} bytes");
                let size = NetlinkBuffer::new_checked(&buf[at..len])
                    .map(|b| b.length() as usize)
                    .map_err(|_| self.failed(&what(), malformed()))?;
                let raw = &buf[at..at + size];
                // Another request's answer (none is outstanding, but a datagram is read whole): skip it.
                if NetlinkBuffer::new(raw).sequence_number() != seq {
                    at += size.next_multiple_of(4);
                    continue;
                }
                let reply = NetlinkMessage::<Reply>::deserialize(raw)
                    .map_err(|e| self.failed(&what(), format!("an unreadable reply: {e}")))?;
                match reply.payload {
                    NetlinkPayload::InnerMessage(m) => {
                        answer.push(m);
                        if one_reply {
                            return Ok(answer);
                        }
                    }
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(answer),
                            Some(_) => Err(self.failed(&what(), e.to_io().to_string())),
                        };
                    }
                    NetlinkPayload::Done(done) if done.code < 0 => {
                        let e = std::io::Error::from_raw_os_error(done.code.saturating_neg());
                        return Err(self.failed(&what(), e.to_string()));
                    }
                    NetlinkPayload::Done(_) => return Ok(answer),
                    NetlinkPayload::Overrun(_) => {
                        return Err(self.failed(&what(), "the kernel's reply overran".into()));
                    }
                    _ => {}
                }
                at += size.next_multiple_of(4);
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

/// What the kernel answers the lab's requests with, decoded; anything else is left undecoded. The crate's
/// `RouteNetlinkMessage` decodes every kind of rtnetlink message (traffic control, rules, ...): decoding with it
/// made netlab's release binary 0.1 MB larger.
enum Reply {
    Link(LinkMessage),
    Address(AddressMessage),
    Other,
}

/// The types of the messages a [`Reply`] decodes (linux/rtnetlink.h).
const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;

impl NetlinkDeserializable for Reply {
    type Error = DecodeError;

    fn deserialize(header: &NetlinkHeader, payload: &[u8]) -> Result<Reply, DecodeError> {
        Ok(match header.message_type {
            RTM_NEWLINK => Reply::Link(LinkMessage::parse(&LinkMessageBuffer::new_checked(
                &payload,
            )?)?),
            RTM_NEWADDR => Reply::Address(AddressMessage::parse(
                &AddressMessageBuffer::new_checked(&payload)?,
            )?),
            _ => Reply::Other,
        })
    }
}

/// Flags of a request that makes something that must not exist yet.
const CREATE: u16 = NLM_F_CREATE | NLM_F_EXCL;

/// A request as the kernel reads it: the header (length, type, flags, `seq`; port 0, the kernel's) and the message.
fn encode(message: RouteNetlinkMessage, flags: u16, seq: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | flags;
    header.sequence_number = seq;
    let mut request = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
    request.finalize();
    let mut bytes = vec![0u8; request.buffer_len()];
    request.serialize(&mut bytes);
    bytes
}

/// A new link's message: its name first, then the link information.
fn new_link(name: &str, info: Vec<LinkInfo>) -> LinkMessage {
    let mut link = LinkMessage::default();
    link.attributes = vec![
        LinkAttribute::IfName(name.to_owned()),
        LinkAttribute::LinkInfo(info),
    ];
    link
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

fn family_of(address: IpAddr) -> AddressFamily {
    match address {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn route_address(address: IpAddr) -> RouteAddress {
    match address {
        IpAddr::V4(a) => RouteAddress::Inet(a),
        IpAddr::V6(a) => RouteAddress::Inet6(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The attribute of type `kind` among those in `bytes` (each: length, type, value, padded to 4).
    fn attribute(bytes: &[u8], kind: u16) -> Option<&[u8]> {
        let mut at = 0;
        while at + 4 <= bytes.len() {
            let len = usize::from(u16::from_ne_bytes([bytes[at], bytes[at + 1]]));
            let found = u16::from_ne_bytes([bytes[at + 2], bytes[at + 3]]) & 0x3fff;
            if len < 4 || at + len > bytes.len() {
                return None;
            }
            if found == kind {
                return Some(&bytes[at + 4..at + len]);
            }
            at += len.next_multiple_of(4);
        }
        None
    }

    #[test]
    fn a_request_carries_its_length_sequence_and_flags() {
        let bytes = encode(
            RouteNetlinkMessage::NewLink(new_link("br0", vec![LinkInfo::Kind(InfoKind::Bridge)])),
            CREATE | NLM_F_ACK,
            7,
        );
        let header = NetlinkBuffer::new_checked(&bytes[..]).unwrap();
        assert_eq!(header.length() as usize, bytes.len());
        assert_eq!(header.message_type(), 16); // RTM_NEWLINK
        assert_eq!(header.sequence_number(), 7);
        assert_eq!(header.flags(), 0x1 | 0x4 | 0x200 | 0x400);
        // After the 16-byte header and the 16-byte ifinfomsg: IFLA_IFNAME (3), IFLA_LINKINFO (18) / KIND (1).
        let attrs = &bytes[32..];
        assert_eq!(attribute(attrs, 3), Some(&b"br0\0"[..]));
        let info = attribute(attrs, 18).unwrap();
        assert_eq!(
            attribute(info, 1).map(|k| k.strip_suffix(b"\0").unwrap_or(k)),
            Some(&b"bridge"[..])
        );
    }

    #[test]
    fn set_up_changes_only_the_up_flag() {
        let mut link = LinkMessage::default();
        link.header.index = 5;
        link.header.flags = LinkFlags::Up;
        link.header.change_mask = LinkFlags::Up;
        let bytes = encode(RouteNetlinkMessage::NewLink(link), NLM_F_ACK, 1);
        let ifinfo = &bytes[16..32];
        assert_eq!(i32::from_ne_bytes(ifinfo[4..8].try_into().unwrap()), 5);
        assert_eq!(u32::from_ne_bytes(ifinfo[8..12].try_into().unwrap()), 1);
        assert_eq!(u32::from_ne_bytes(ifinfo[12..16].try_into().unwrap()), 1);
    }

    #[test]
    fn an_fdb_entry_is_static_and_the_devices_own() {
        let mut entry = NeighbourMessage::default();
        entry.header.family = AddressFamily::Bridge;
        entry.header.ifindex = 4;
        entry.header.state = NeighbourState::Other(NUD_NOARP_PERMANENT);
        entry.header.flags = NeighbourFlags::Own;
        entry.attributes = vec![
            NeighbourAttribute::LinkLocalAddress(vec![0x0a, 0x58, 0, 0, 1, 0xff]),
            NeighbourAttribute::Destination(NeighbourAddress::Inet(Ipv4Addr::new(10, 1, 0, 2))),
        ];
        let bytes = encode(RouteNetlinkMessage::NewNeighbour(entry), NLM_F_CREATE, 1);
        // struct ndmsg: family, padding, index, state, flags, type.
        let ndmsg = &bytes[16..28];
        assert_eq!(ndmsg[0], 7); // AF_BRIDGE
        assert_eq!(i32::from_ne_bytes(ndmsg[4..8].try_into().unwrap()), 4);
        assert_eq!(u16::from_ne_bytes(ndmsg[8..10].try_into().unwrap()), 0xc0);
        assert_eq!(ndmsg[10], 0x2); // NTF_SELF
        assert_eq!(attribute(&bytes[28..], 1), Some(&[10, 1, 0, 2][..])); // NDA_DST
    }

    fn name(link: &LinkMessage) -> Option<&str> {
        link.attributes.iter().find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.as_str()),
            _ => None,
        })
    }

    #[test]
    fn every_change_reaches_the_kernel_and_a_refusal_carries_its_errno() {
        if !test_support::need_root("netlink::every_change") {
            return;
        }
        let mac = [0x0a, 0x58, 0, 0, 0, 1];
        let made = crate::sys::on_a_thread_of_its_own("the netlink test", || {
            crate::exec::unshare_thread(rustix::thread::UnshareFlags::NEWNET).map_err(|e| {
                Error::Command {
                    command: "unshare --net".into(),
                    reason: e.to_string(),
                }
            })?;
            let mut n = Netlink::here("(the test's)")?;
            n.set_up(LOOPBACK, None, None)?;
            n.add_bridge("br0")?;
            n.add_veth("a0", "a1", None)?;
            let (br, a0, a1) = (n.index("br0")?, n.index("a0")?, n.index("a1")?);
            n.set_up(br, None, None)?;
            n.set_up(a0, Some(1400), Some(br))?;
            n.set_up(a1, None, None)?;
            n.add_address(br, "10.9.0.1".parse().unwrap(), 24, false)?;
            n.add_address(a1, "fd00::1".parse().unwrap(), 64, true)?;
            let via = "10.9.0.2".parse().unwrap();
            n.add_route(Some(("10.8.0.0".parse().unwrap(), 16)), via, None, false)?;
            n.add_route(None, "10.7.0.1".parse().unwrap(), Some(br), true)?;
            n.add_neighbour(br, Ipv4Addr::new(10, 9, 0, 2), mac)?;
            n.add_vxlan("vx0", mac, 1, Ipv4Addr::new(10, 9, 0, 1), br, 8472)?;
            let vx = n.index("vx0")?;
            n.append_fdb(vx, [0x0a, 0x58, 0, 0, 0, 2], Ipv4Addr::new(10, 9, 0, 3))?;
            let refused = [
                n.add_bridge("br0"),
                n.add_route(None, "10.7.0.1".parse().unwrap(), Some(br), true),
                n.add_neighbour(br, Ipv4Addr::new(10, 9, 0, 2), mac),
                n.index("none0").map(drop),
            ]
            .map(|r| r.map_err(|e| e.to_string()));
            Ok((n.links()?, n.addresses()?, refused, br, a1))
        });
        let (links, addresses, refused, br, a1) = made.unwrap();
        let names: Vec<_> = links.iter().filter_map(name).collect();
        assert_eq!(names, ["lo", "br0", "a1", "a0", "vx0"]);
        let a0 = links.iter().find(|l| name(l) == Some("a0")).unwrap();
        assert!(a0.header.flags.contains(LinkFlags::Up));
        assert!(a0.attributes.contains(&LinkAttribute::Mtu(1400)));
        assert!(a0
            .attributes
            .contains(&LinkAttribute::Controller(br.cast_unsigned())));
        let shown: Vec<_> = addresses
            .iter()
            .filter_map(|a| {
                let ip = a.attributes.iter().find_map(|x| match x {
                    AddressAttribute::Address(ip) => Some(ip.to_string()),
                    _ => None,
                })?;
                Some((a.header.index.cast_signed(), ip, a.header.prefix_len))
            })
            .collect();
        for expected in [(br, "10.9.0.1", 24), (a1, "fd00::1", 64)] {
            let expected = (expected.0, expected.1.to_owned(), expected.2);
            assert!(shown.contains(&expected), "{expected:?} not in {shown:?}");
        }
        let [bridge, route, neighbour, missing] = refused;
        assert_eq!(
            bridge.unwrap_err(),
            "ip -n (the test's) link add br0 type bridge (over rtnetlink): File exists (os error 17)"
        );
        let route = route.unwrap_err();
        assert!(
            route.contains("route add default via 10.7.0.1 dev ifindex"),
            "{route}"
        );
        assert!(
            route.ends_with("onlink (over rtnetlink): File exists (os error 17)"),
            "{route}"
        );
        assert!(neighbour.unwrap_err().contains("(os error 17)"));
        assert!(missing
            .unwrap_err()
            .contains("link show none0 (over rtnetlink): No such device (os error 19)"));
    }

    #[test]
    fn macs_show_as_ip_does() {
        assert_eq!(show_mac([0x0a, 0x58, 0, 0, 1, 0xff]), "0a:58:00:00:01:ff");
    }
}
