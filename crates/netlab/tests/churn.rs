//! Churn through the real chain (root): 500 pods added and deleted on a physical node, each with flannel's
//! `eth0` (bridge + host-local) and a public `net1` (ipvlan, here macvlan where the kernel lacks it, + index2ip),
//! attached as multus attaches them. A few pods are alive at a time, so addresses are reused while others are held.
//!
//! Proven: every ADD and every DEL succeeds, also DEL with the index network's `ipam` stripped to its type (as
//! multus has sent it) and DEL repeated after the namespace is gone; no address is handed out while another pod
//! holds it; and nothing leaks: no namespace, no link in the node or site namespace, no host-local lease.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use netlab_lab::runtime::{Runtime, MACVLAN_FOR_IPVLAN};
use netlab_lab::state::{PodState, Resource, State};
use netlab_lab::verbs::LabArgs;
use netlab_lab::{sys, teardown, verbs};
use netlab_model::annotation::{DEFAULT_NETWORK, NETWORKS};
use netlab_model::topology::Topology;

use crate::util::{root, skip};

const CYCLES: usize = 500;
/// Churn pods alive at once.
const WINDOW: usize = 4;

fn netlab_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_netlab"))
}

/// Takes the lab down when the test ends, also on failure; asserts a clean report when the test passed.
struct Down(String);

impl Drop for Down {
    fn drop(&mut self) {
        let mut out = Vec::new();
        let report = teardown::down(&self.0, &mut out);
        if !std::thread::panicking() {
            let report = report.unwrap();
            assert!(
                report.clean(),
                "down: {report:?}\n{}",
                String::from_utf8_lossy(&out)
            );
        }
    }
}

/// The names of the links in a namespace.
fn links(ns: &str) -> BTreeSet<String> {
    sys::ip_in(ns, &["-o", "link", "show"])
        .unwrap()
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .collect()
}

/// host-local's lease files on a node: one per address held.
fn leases(node_dir: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let Ok(nets) = std::fs::read_dir(node_dir.join("cni-state/networks")) else {
        return found;
    };
    for net in nets.flatten() {
        for f in std::fs::read_dir(net.path()).unwrap().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if name != "lock" && !name.starts_with("last_reserved_ip") {
                found.insert(format!("{}/{name}", net.file_name().to_string_lossy()));
            }
        }
    }
    found
}

/// The addresses (without prefix length) a pod's attachments got, per interface.
fn addresses(pod: &PodState) -> Vec<(String, String)> {
    pod.attachments
        .iter()
        .flat_map(|a| {
            a.result
                .iter()
                .flat_map(|r| &r.ips)
                .map(|ip| (a.ifname.clone(), ip.address.addr().to_string()))
        })
        .collect()
}

/// multus's lossy DEL: every `ipam` of the index network reduced to its `type`.
fn strip_ipam(pod: &mut PodState) {
    for a in pod.attachments.iter_mut().filter(|a| a.index.is_some()) {
        if let Some(list) = a.conflist.as_mut() {
            for ipam in list.plugins.iter_mut().filter_map(|p| p.ipam.as_mut()) {
                ipam.keys.clear();
            }
        }
    }
}

/// Run by `scripts/churn.sh`: each cycle runs about ten plugin processes and a few `ip` commands, so the whole takes
/// minutes rather than the seconds the suite allows.
#[test]
#[ignore = "500 pod cycles, minutes: run by scripts/churn.sh (root)"]
fn five_hundred_pods_through_the_real_chain_leak_nothing() {
    let test = "churn::five_hundred_pods";
    if !crate::util::is_root() {
        return skip(
            test,
            "needs root: the lab creates network namespaces and mounts",
        );
    }
    let index2ip = netlab_bin().with_file_name("index2ip");
    for (p, how) in [
        (index2ip.clone(), "cargo build -p index2ip"),
        (
            PathBuf::from("/usr/lib/cni/macvlan"),
            "apt-get install containernetworking-plugins",
        ),
    ] {
        if !p.is_file() {
            return skip(test, &format!("{} is missing ({how})", p.display()));
        }
    }
    let started = std::time::Instant::now();
    let name = format!("nlc{}", std::process::id());
    // Removed when the test ends, also when it fails.
    let dir = test_support::temp_dir("netlab-churn");
    let topo = dir.path().join("one-node.yaml");
    std::fs::write(
        &topo,
        "site: {ipv4: 192.0.2.0/26, gateway4: 192.0.2.1, ipv6: 2001:db8:1::/64, gateway6: 2001:db8:1::1, dns: [198.51.100.53]}\n\
         nodes:\n  - {name: mlab1, offset: 9, labels: {mlab/type: physical}}\n",
    )
    .unwrap();
    let _down = Down(name.clone());
    let args = LabArgs {
        name: name.clone(),
        topology: Some(topo.clone()),
        manifests: root().join("k8s"),
        index2ip: Some(index2ip),
        reference_dir: None,
        trace: None,
        control_plane: None,
        remote_control_plane: None,
    };
    let (sources, _) =
        netlab_lint::input::load(&[root().join("k8s")], netlab_lint::input::Render::Direct)
            .unwrap();
    let (objects, _) = netlab_model::manifest::parse(&sources);
    let cluster = netlab_model::cluster::from_objects(&objects).unwrap();
    let topology =
        Topology::from_text("one-node.yaml", &std::fs::read_to_string(&topo).unwrap()).unwrap();
    let mut out = Vec::new();
    let up = verbs::up(&args, &topology, &cluster, &mut out);
    let mut state = up.unwrap_or_else(|e| panic!("up: {e}\n{}", String::from_utf8_lossy(&out)));
    let runtime = Runtime {
        cni_path: vec![state.dir.join("bin")],
        has_ipvlan: !state.substitutions.iter().any(|s| s == MACVLAN_FOR_IPVLAN),
        flannel_network: cluster.flannel.as_ref().map(|f| f.network),
    };
    let node = state.node("mlab1").unwrap().clone();

    // What the lab's own pods hold, and what the node and site look like, before the churn.
    let mut held: BTreeMap<String, String> = BTreeMap::new();
    let mut held_index: BTreeMap<u32, String> = BTreeMap::new();
    for p in &state.pods {
        assert!(p.error.is_none(), "{}: {:?}", p.name, p.error);
        for (_, a) in addresses(p) {
            assert!(
                held.insert(a.clone(), p.name.clone()).is_none(),
                "{a} twice"
            );
        }
        for a in p.attachments.iter().filter(|a| a.result.is_some()) {
            if let Some(i) = a.index {
                held_index.insert(i, p.name.clone());
            }
        }
    }
    let free: Vec<u32> = (1..=12).filter(|i| !held_index.contains_key(i)).collect();
    assert!(free.len() > WINDOW, "free indices {free:?}");
    let (node_links, site_links) = (links(&node.netns), links(&state.site_netns));
    let leases_before = leases(&node.dir);
    let namespaces_before = sys::netns_list();

    let mut live: VecDeque<(PodState, u32)> = VecDeque::new();
    let (mut stripped, mut repeated, mut reused, mut reused_eth0) = (0, 0, 0, 0);
    let mut ever: BTreeSet<String> = BTreeSet::new();
    let remove = |state: &mut State,
                  pod: &mut PodState,
                  k: usize,
                  stripped: &mut usize,
                  repeated: &mut usize| {
        let eth0 = addresses(pod)
            .into_iter()
            .find(|(i, _)| i == "eth0")
            .map(|(_, a)| a)
            .unwrap();
        if k % 2 == 1 {
            strip_ipam(pod);
            *stripped += 1;
        }
        let failures = runtime.detach(&node, pod);
        assert!(failures.is_empty(), "{}: {failures:?}", pod.name);
        assert!(
            !leases(&node.dir)
                .iter()
                .any(|l| l.ends_with(&format!("/{eth0}"))),
            "{}: lease {eth0} still held after DEL",
            pod.name
        );
        sys::ip(&["netns", "del", &pod.netns]).unwrap();
        if k.is_multiple_of(25) {
            // DEL again, the namespace gone: the runtime's retry after a crash.
            let failures = runtime.detach(&node, pod);
            assert!(failures.is_empty(), "{} again: {failures:?}", pod.name);
            *repeated += 1;
        }
        state.pods.retain(|p| p.name != pod.name);
        state
            .created
            .retain(|r| !matches!(r, Resource::Netns { name } if *name == pod.netns));
        state.save().unwrap();
    };

    for k in 0..CYCLES {
        if live.len() == WINDOW {
            let (mut pod, _) = live.pop_front().unwrap();
            for (_, a) in addresses(&pod) {
                held.remove(&a);
            }
            let k_old: usize = pod.name.rsplit('-').next().unwrap().parse().unwrap();
            remove(&mut state, &mut pod, k_old, &mut stripped, &mut repeated);
        }
        let index = free[k % free.len()];
        let pod_name = format!("churn-{k}");
        let netns = format!("{name}-{pod_name}");
        let mut pod = PodState {
            name: pod_name.clone(),
            namespace: "default".into(),
            node: node.name.clone(),
            owner: "the churn test".into(),
            netns: netns.clone(),
            ..PodState::default()
        };
        // As `up` makes a pod: recorded first, so that `down` removes it whatever happens next.
        state
            .record(Resource::Netns {
                name: netns.clone(),
            })
            .unwrap();
        sys::add_netns(
            std::slice::from_ref(&netns),
            &[("net.ipv6.conf.default.accept_dad", "0")],
        )
        .unwrap();
        state.pods.push(pod.clone());
        state.save().unwrap();
        let annotations = BTreeMap::from([
            (NETWORKS.to_owned(), format!("index2ip-index-{index}-conf")),
            (
                DEFAULT_NETWORK.to_owned(),
                "flannel-experiment-conf".to_owned(),
            ),
        ]);
        let held_now: BTreeMap<u32, String> = held_index
            .iter()
            .map(|(i, p)| (*i, p.clone()))
            .chain(live.iter().map(|(p, i)| (*i, p.name.clone())))
            .collect();
        let mut notes = Vec::new();
        runtime.attach(
            &cluster,
            &node,
            &mut pod,
            &annotations,
            &held_now,
            &mut notes,
            &mut |_| Ok(()),
        );
        if let Some(slot) = state.pods.iter_mut().find(|p| p.name == pod_name) {
            *slot = pod.clone();
        }
        state.save().unwrap();
        assert!(pod.error.is_none(), "{pod_name}: {:?}", pod.error);
        let got = addresses(&pod);
        let ifaces: BTreeSet<&str> = got.iter().map(|(i, _)| i.as_str()).collect();
        assert_eq!(
            ifaces,
            BTreeSet::from(["eth0", "net1"]),
            "{pod_name}: {got:?}"
        );
        for (ifname, a) in &got {
            if let Some(other) = held.insert(a.clone(), pod_name.clone()) {
                panic!("{pod_name} {ifname} got {a}, which {other} holds");
            }
            if !ever.insert(a.clone()) {
                reused += 1;
                reused_eth0 += usize::from(ifname == "eth0");
            }
        }
        let net1: Vec<&str> = got
            .iter()
            .filter(|(i, _)| i == "net1")
            .map(|(_, a)| a.as_str())
            .collect();
        assert!(
            net1.contains(&format!("192.0.2.{}", 9 + index).as_str()),
            "{pod_name}: {net1:?}"
        );
        live.push_back((pod, index));
    }
    while let Some((mut pod, _)) = live.pop_front() {
        let k: usize = pod.name.rsplit('-').next().unwrap().parse().unwrap();
        remove(&mut state, &mut pod, k, &mut stripped, &mut repeated);
    }

    assert_eq!(sys::netns_list(), namespaces_before, "namespaces left");
    assert_eq!(links(&node.netns), node_links, "links left on the node");
    assert_eq!(
        links(&state.site_netns),
        site_links,
        "links left on the site switch"
    );
    assert_eq!(leases(&node.dir), leases_before, "host-local leases left");
    assert!(
        reused_eth0 > 0,
        "host-local never reused an address: the churn proved nothing about reuse"
    );
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "churn: {CYCLES} pods added and deleted ({stripped} DELs with ipam stripped, {repeated} repeated after the \
         namespace was gone), {reused} addresses handed out again after release ({reused_eth0} of them by \
         host-local), in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
