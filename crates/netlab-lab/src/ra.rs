//! The site router's IPv6 router advertisements, as a real site's router sends them: every second, to all nodes
//! on the site's link, with the site's prefix (on-link, autonomous) and the router as the default router. They
//! reach every node and every pod interface on the site (ipvlan, macvlan), so that the race k8s/README.md guards
//! against (an RA arriving while `net1` is set up replaces its static default route) is exercised by every `up`,
//! and `check` fails a pod an RA reached.
//!
//! `netlab __ra IFNAME PREFIX/LEN`, run in the router's namespace from `up`, until `down` stops it.

use std::net::{Ipv6Addr, SocketAddrV6};
use std::process::ExitCode;
use std::time::Duration;

use rustix::net::{ipproto, sendto, socket, sockopt, AddressFamily, SendFlags, SocketType};

/// How often an advertisement goes out (RFC 4861 lets a router go as low as 3 s unsolicited; a lab has no time
/// to wait).
const EVERY: Duration = Duration::from_secs(1);

/// Starts the advertisements from the site router of `state`'s lab for `prefix` (`ADDR/LEN`), in the background:
/// `down` stops the process with every other one in the lab's namespaces.
pub fn start(state: &crate::state::State, prefix: &str) -> Result<(), crate::Error> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().map_err(crate::Error::OwnExecutable)?;
    let log_path = state.dir.join("ra.log");
    let log = std::fs::File::create(&log_path).map_err(|e| crate::Error::io(&log_path, e))?;
    std::process::Command::new("nsenter")
        .arg(format!(
            "--net={}",
            crate::sys::netns_path(&state.inet_netns).display()
        ))
        .arg("--")
        .arg(&exe)
        .args(["__ra", "eth0", prefix])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|source| crate::Error::Run {
            program: "nsenter".into(),
            source,
        })?;
    Ok(())
}

/// A router advertisement for `prefix`/`len` (RFC 4861 section 4.2, with one prefix information option): the
/// checksum is left to the kernel, which computes it for ICMPv6 raw sockets.
pub fn advertisement(prefix: Ipv6Addr, len: u8) -> [u8; 48] {
    let mut p = [0u8; 48];
    p[0] = 134; // router advertisement
    p[4] = 64; // current hop limit
    p[6..8].copy_from_slice(&1800u16.to_be_bytes()); // router lifetime: a default router
                                                     // Prefix information: type 3, length 4 (units of 8 bytes), on-link and autonomous.
    p[16] = 3;
    p[17] = 4;
    p[18] = len;
    p[19] = 0xc0;
    p[20..24].copy_from_slice(&86_400u32.to_be_bytes()); // valid lifetime
    p[24..28].copy_from_slice(&14_400u32.to_be_bytes()); // preferred lifetime
    p[32..48].copy_from_slice(&prefix.octets());
    p
}

/// `__ra`'s main.
pub fn ra_main(args: &[String]) -> ExitCode {
    let (Some(ifname), Some(prefix)) = (args.first(), args.get(1)) else {
        eprintln!("usage: netlab __ra IFNAME PREFIX/LEN");
        return ExitCode::from(2);
    };
    let Some((addr, len)) = prefix
        .split_once('/')
        .and_then(|(a, l)| Some((a.parse::<Ipv6Addr>().ok()?, l.parse::<u8>().ok()?)))
    else {
        eprintln!("netlab __ra: {prefix}: not an IPv6 prefix");
        return ExitCode::from(2);
    };
    match send_forever(ifname, addr, len) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netlab __ra: {e}");
            ExitCode::FAILURE
        }
    }
}

fn send_forever(ifname: &str, prefix: Ipv6Addr, len: u8) -> std::io::Result<()> {
    // Asked of this namespace's kernel: /sys may be another namespace's (nsenter does not remount it).
    let index = crate::netlink::Netlink::here("the site router's")
        .and_then(|mut n| n.index(ifname))
        .map_err(std::io::Error::other)?;
    let index = u32::try_from(index).map_err(std::io::Error::other)?;
    let fd = socket(AddressFamily::INET6, SocketType::RAW, Some(ipproto::ICMPV6))?;
    // Neighbour discovery requires hop limit 255: a receiver drops anything that crossed a router.
    sockopt::set_ipv6_multicast_hops(&fd, 255)?;
    sockopt::set_ipv6_multicast_if(&fd, index)?;
    let all_nodes = SocketAddrV6::new(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), 0, 0, index);
    let packet = advertisement(prefix, len);
    loop {
        // An interface not up yet refuses; the next second tries again.
        let _ = sendto(&fd, &packet, SendFlags::empty(), &all_nodes);
        std::thread::sleep(EVERY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advertisement_carries_the_prefix_and_a_default_router() {
        let p = advertisement("2001:db8:1::".parse().unwrap(), 64);
        assert_eq!((p[0], p[1]), (134, 0));
        assert_eq!(u16::from_be_bytes([p[6], p[7]]), 1800);
        assert_eq!((p[16], p[17], p[18], p[19]), (3, 4, 64, 0xc0));
        assert_eq!(&p[32..34], &[0x20, 0x01]);
        assert_eq!(&p[34..36], &[0x0d, 0xb8]);
    }
}
