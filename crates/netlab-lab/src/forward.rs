//! The API server from this machine: a TCP port on the host's loopback whose connections the lab's kubelet
//! carries into the control plane's namespace, byte for byte (TLS passes through untouched). With it, `kubectl
//! --kubeconfig "$(netlab kubeconfig)"` works from the operator's shell without a route or a link on the host.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;

use crate::control_plane::{kubeconfig_text, token_of};
use crate::Error;

/// The kubeconfig `netlab kubeconfig` prints the path of, in the lab's directory.
pub const HOST_KUBECONFIG: &str = "kubeconfig";

/// Binds the host's side: a free port on 127.0.0.1. Call it before leaving the host's network namespace.
pub fn listen() -> Result<TcpListener, Error> {
    TcpListener::bind("127.0.0.1:0").map_err(|e| Error::Command {
        command: "listen on 127.0.0.1".into(),
        reason: e.to_string(),
    })
}

/// Writes the host's kubeconfig for `listener` into `dir`: the administrator's credentials from
/// `admin_kubeconfig`, the port, and the name the API server's certificate carries.
pub fn write_kubeconfig(
    listener: &TcpListener,
    dir: &Path,
    admin_kubeconfig: &Path,
    ca: &Path,
) -> Result<(), Error> {
    let admin =
        std::fs::read_to_string(admin_kubeconfig).map_err(|e| Error::io(admin_kubeconfig, e))?;
    let token = token_of(&admin).unwrap_or_default();
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    let text = kubeconfig_text(
        &format!("https://127.0.0.1:{port}"),
        ca,
        "admin",
        token,
        Some("kubernetes"),
    );
    let path = dir.join(HOST_KUBECONFIG);
    crate::sys::replace_file(&path, text.as_bytes()).map_err(|e| Error::io(&path, e))
}

/// The relay `run --vm` starts inside its VM for a control plane on the machine outside: listens at `listen`
/// in network namespace `netns` (where the lab's nodes reach the API server) and joins each connection to one to
/// `to`, made from this process's own namespace (the VM's, whose user network reaches the machine outside). Runs
/// until killed.
pub fn relay(netns: &str, listen: SocketAddr, to: SocketAddr) -> Result<(), Error> {
    // Bound by a thread of its own that enters the namespace and ends: the socket stays in that namespace, this
    // thread stays in its own.
    let listener = std::thread::scope(|s| {
        s.spawn(|| {
            crate::sys::enter_netns(netns)?;
            TcpListener::bind(listen).map_err(|e| Error::Command {
                command: format!("listen on {listen} in {netns}"),
                reason: e.to_string(),
            })
        })
        .join()
        .unwrap_or_else(|_| {
            Err(Error::Command {
                command: format!("listen on {listen} in {netns}"),
                reason: "the binding thread panicked".into(),
            })
        })
    })?;
    serve(listener, to);
    Ok(())
}

/// Serves `listener` for ever: each connection is joined to a new one to `to`, made from the calling thread's
/// network namespace.
pub fn serve(listener: TcpListener, to: SocketAddr) {
    for client in listener.incoming().flatten() {
        std::thread::spawn(move || match TcpStream::connect(to) {
            Ok(server) => join(client, server),
            // Said on stderr, the log of whoever runs this (the kubelet's, the relay's).
            Err(e) => eprintln!("forward: cannot connect to {to}: {e}"),
        });
    }
}

/// Copies both ways until each side has closed.
fn join(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let there = std::thread::spawn(move || pipe(a, b2));
    pipe(b, a2);
    let _ = there.join();
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
