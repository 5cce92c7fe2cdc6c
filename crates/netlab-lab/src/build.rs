//! `up`: builds the site, the nodes and the pods, recording each thing in the state file before making it.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;

use crate::netlink::{Mac, Netlink};
use crate::runtime::Runtime;
use crate::state::{NodeState, PodState, Resource, State, RUN_DIR};
use crate::sys;
use crate::Error;
use netlab_model::cluster::Cluster;
use netlab_model::topology::Topology;

/// The host paths each node sees bound to a directory of its own, so that its plugins (and an operator in
/// `netlab exec --node`) find that node's CNI configuration, CNI state and flannel subnet file where a real node
/// keeps them. The mount points must exist on the host.
pub const NODE_DIRS: [(&str, &str); 5] = [
    ("net.d", "/etc/cni/net.d"),
    ("cni-state", "/var/lib/cni"),
    ("run-flannel", "/run/flannel"),
    ("opt-cni-bin", "/opt/cni/bin"),
    ("kubernetes", "/etc/kubernetes"),
];
/// The file in [`RUN_DIR`] listing the host directories labs created for [`NODE_DIRS`], removed with it by the last
/// lab down (removing one earlier would unmount it in the other labs' node namespaces).
pub const CREATED_MARKER: &str = "created-host-dirs";

/// The internet client: an address of TEST-NET-3 and of the documentation prefix, behind the site router, so
/// that every answer a pod gives it follows the pod's own default route.
pub const WAN_CLIENT: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::new(203, 0, 113, 2)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 2)),
];
/// The site router's addresses on the internet client's link.
pub const WAN_ROUTER: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1)),
];
/// The prefix length of the internet client's link, per family.
const WAN_PREFIX: [u8; 2] = [24, 64];

/// How to bring a lab up.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// The lab's name: its namespaces are `NAME-...`, its state `/run/netlab/NAME`.
    pub name: String,
    /// Where the manifests came from, for the record.
    pub manifests: String,
    /// The index2ip binary to install into the lab's plugin directory.
    pub index2ip: PathBuf,
    /// Debian's reference plugins.
    pub reference_dir: PathBuf,
    /// cni-shim, to record every plugin call (`--trace`): the runtime's CNI_PATH is then the shim's directory.
    pub shim: Option<PathBuf>,
    /// Run on the real control plane, with the real multus and flannel, instead of the emulation.
    pub control_plane: Option<crate::real::RealOptions>,
}

/// A pod to create: name, namespace, node, owner, annotations.
#[derive(Debug, Clone)]
pub struct PodPlan {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Node.
    pub node: String,
    /// What made it.
    pub owner: String,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
}

/// The pods the lab runs: one per node for each pod-network DaemonSet selecting it, a plain pod per node, and the
/// topology's own.
pub fn pods(topology: &Topology, cluster: &Cluster) -> Vec<PodPlan> {
    let mut pods = Vec::new();
    for node in &topology.nodes {
        for w in cluster
            .workloads
            .iter()
            .filter(|w| w.selector().matches(&node.labels))
        {
            pods.push(PodPlan {
                name: format!("{}-{}", w.name(), node.name),
                namespace: w.namespace().to_owned(),
                node: node.name.clone(),
                owner: format!("DaemonSet {}/{}", w.namespace(), w.name()),
                annotations: w.string_annotations(),
            });
        }
        pods.push(PodPlan {
            name: format!("plain-{}", node.name),
            namespace: "default".into(),
            node: node.name.clone(),
            owner: "a plain pod, no network annotations".into(),
            annotations: BTreeMap::new(),
        });
    }
    for p in &topology.pods {
        pods.push(PodPlan {
            name: p.name.clone(),
            namespace: p.namespace.clone(),
            node: p.node.clone(),
            owner: "the topology file".into(),
            annotations: p.annotations.clone(),
        });
    }
    pods
}

/// Brings the lab up. On failure the state file holds everything made so far, for `down`.
pub fn up(
    opts: &UpOptions,
    topology: &Topology,
    cluster: &Cluster,
    out: &mut dyn Write,
) -> Result<State, Error> {
    if opts.control_plane.is_some() && opts.shim.is_some() {
        return Err(Error::NotWithControlPlane {
            option: "--trace",
            why: "the installer DaemonSet puts cni-shim on the nodes; `cni-shim enable` there records the calls",
        });
    }
    let mut state = begin(opts)?;
    let dir = state.dir.clone();

    // The ipvlan probe waits on the kernel in a namespace of its own that nothing names: it runs while the lab is
    // made.
    let probing = Probe(Some(std::thread::spawn(sys::kernel_has_ipvlan)));
    let _ = writeln!(
        out,
        "==> lab {}: {} nodes, plugins from {}",
        opts.name,
        topology.nodes.len(),
        opts.reference_dir.display()
    );
    let real = opts.control_plane.as_ref();

    let bin = plugin_dir(&dir, opts)?;
    if opts.shim.is_some() {
        let _ = writeln!(
            out,
            "    tracing: every plugin call goes through cni-shim, records in {}",
            dir.join("trace").display()
        );
    }
    let node_netns: Vec<String> = topology
        .nodes
        .iter()
        .map(|n| format!("{}-{}", opts.name, n.name))
        .collect();
    // On the real control plane the cluster's controllers name the pods, and each pod's namespace is checked as
    // it is made.
    let planned = if real.is_some() { None } else { Some(cluster) };
    namespaces_free(&state, &node_netns, topology, planned)?;
    let (mut switch, node_links) = site(&mut state, topology, &node_netns)?;
    if let Some(net) = topology.site.ipv6 {
        crate::ra::start(&state, &net.trunc().to_string())?;
        let _ = writeln!(
            out,
            "    the router advertises {} on the site every second",
            net.trunc()
        );
    }
    let plane = match real {
        Some(r) => Some(crate::real::start_control_plane(
            &mut state, r, topology, out,
        )?),
        None => None,
    };
    let _ = writeln!(
        out,
        "    site switch {}, router {} ({}), internet client {} ({}) behind it",
        state.site_netns,
        state.inet_netns,
        state.inet_addresses.join(", "),
        state.wan_netns,
        state.wan_addresses.join(", ")
    );

    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).map_err(|e| Error::io(&mnt, e))?;
    state.record(Resource::Mount { path: mnt.clone() })?;
    sys::private_mount(&mnt)?;
    make_nodes(
        &mut state,
        topology,
        cluster,
        &mnt,
        node_links,
        plane.is_some(),
        out,
    )?;
    if let Some(plane) = &plane {
        for node in &mut state.nodes {
            crate::real::node_files(plane, node, &opts.reference_dir)?;
        }
        state.save()?;
    }
    // Every node's port on the switch, and the internet client's.
    let br0 = switch.index("br0")?;
    let ports =
        std::iter::once("pinet".to_owned()).chain((0..state.nodes.len()).map(|i| format!("p{i}")));
    for port in ports {
        let index = switch.index(&port)?;
        switch.set_up(index, None, Some(br0))?;
    }
    let has_ipvlan = probing.result();
    if has_ipvlan {
        let _ = writeln!(out, "    {}", crate::runtime::IPVLAN_REAL);
    } else if real.is_none() {
        // On the real control plane the NADs themselves are changed, and said so.
        state
            .substitutions
            .push(crate::runtime::MACVLAN_FOR_IPVLAN.into());
    }

    if let Some(plane) = plane {
        return crate::real::finish(state, opts, plane, topology, has_ipvlan, out);
    }
    let runtime = Runtime {
        cni_path: vec![bin],
        has_ipvlan,
        flannel_network: cluster.flannel.as_ref().map(|f| f.network),
    };
    make_pods(&mut state, topology, cluster, &runtime, out)?;
    mark_index_conflicts(&mut state);
    state.complete = true;
    state.save()?;
    for s in &state.substitutions {
        let _ = writeln!(out, "NOTE: {s}");
    }
    Ok(state)
}

/// The lab's state, saved before anything else is made: refused without root or when a lab of that name is up.
/// What labs share (/run/netlab, the host directories nodes bind over) is made here, under the lock that `down`
/// takes to remove it.
fn begin(opts: &UpOptions) -> Result<State, Error> {
    if !sys::is_root() {
        return Err(Error::NotRoot {
            why: "it creates network namespaces and mounts",
        });
    }
    if let Some(existing) = State::load(&opts.name)? {
        return Err(Error::AlreadyUp {
            state: State::path(&existing.name),
            name: existing.name,
        });
    }
    let dir = Path::new(RUN_DIR).join(&opts.name);
    let state = State {
        name: opts.name.clone(),
        dir: dir.clone(),
        manifests: opts.manifests.clone(),
        created: vec![Resource::Dir { path: dir.clone() }],
        site_netns: format!("{}-site", opts.name),
        inet_netns: format!("{}-inet", opts.name),
        wan_netns: format!("{}-wan", opts.name),
        ..State::default()
    };
    {
        let _lock = shared_lock()?;
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let marker = Path::new(RUN_DIR).join(CREATED_MARKER);
        let mut created = std::fs::read_to_string(&marker).unwrap_or_default();
        for (_, host) in NODE_DIRS {
            // Each ancestor made here is listed before its children, so that removal in reverse finds them empty.
            let mut missing: Vec<&Path> = Path::new(host)
                .ancestors()
                .take_while(|p| !p.exists())
                .collect();
            missing.reverse();
            for d in missing {
                created.push_str(&format!("{}\n", d.display()));
                std::fs::write(&marker, &created).map_err(|e| Error::io(&marker, e))?;
                std::fs::create_dir(d).map_err(|e| Error::io(d, e))?;
            }
        }
    }
    state.save()?;
    Ok(state)
}

/// Each node's flannel subnet, where flanneld runs there: every node is programmed with the routes to all the
/// others as it is made, so all are known first.
fn flannel_subnets(topology: &Topology, cluster: &Cluster) -> Result<Vec<Option<Ipv4Net>>, Error> {
    let mut index = 0u32;
    let mut subnets = Vec::new();
    for spec in &topology.nodes {
        let runs_flannel = cluster.runs_flannel(&spec.labels);
        subnets.push(match cluster.flannel.as_ref().filter(|_| runs_flannel) {
            Some(f) => {
                index += 1;
                Some(nth_subnet(f.network, f.subnet_len, index)?)
            }
            None => None,
        });
    }
    Ok(subnets)
}

/// Makes the nodes side by side (each is a few processes that wait on the kernel), every node's mount point
/// recorded before any exists, and lists them in order.
fn make_nodes(
    state: &mut State,
    topology: &Topology,
    cluster: &Cluster,
    mnt: &Path,
    node_links: Vec<Netlink>,
    real: bool,
    out: &mut dyn Write,
) -> Result<(), Error> {
    // On the real control plane, flanneld takes each node's subnet from its podCIDR and programs vxlan itself.
    let subnets = if real {
        vec![None; topology.nodes.len()]
    } else {
        flannel_subnets(topology, cluster)?
    };
    for spec in &topology.nodes {
        state.created.push(Resource::Mount {
            path: mnt.join(&spec.name),
        });
    }
    state.save()?;
    let made: Vec<Result<NodeState, Error>> = std::thread::scope(|scope| {
        let state = &*state;
        let subnets = &subnets;
        let workers: Vec<_> = node_links
            .into_iter()
            .enumerate()
            .map(|(i, links)| {
                std::thread::Builder::new().spawn_scoped(scope, move || {
                    node(state, topology, cluster, i, subnets, links, real)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| match w {
                Ok(w) => w.join().unwrap_or_else(|_| {
                    Err(Error::ThreadPanicked {
                        what: "setting up a node".into(),
                    })
                }),
                // No thread for it: `up` stops there, and `down` removes what was recorded.
                Err(source) => Err(Error::ThreadStart {
                    what: "setting up a node".into(),
                    source,
                }),
            })
            .collect()
    });
    for node in made {
        let node = node?;
        let _ = writeln!(out, "    {}", node_line(&node, real));
        state.nodes.push(node);
    }
    state.save()
}

/// One line per node for progress: its label, address, CNI configuration and flannel subnet (on the real control
/// plane, the DaemonSets' pods install both later).
fn node_line(node: &NodeState, real: bool) -> String {
    let label = node
        .node_type
        .clone()
        .map_or("no mlab/type label".to_owned(), |t| {
            format!("mlab/type={t}")
        });
    let cni = match node.cni_configs.first() {
        Some((f, _)) => format!("CNI config {f}"),
        None if real => "CNI config and flannel: what its DaemonSets' pods install".into(),
        None => "no CNI config".into(),
    };
    let fl = node
        .subnet
        .as_deref()
        .map_or("no flannel".to_owned(), |s| format!("flannel {s}"));
    if real {
        return format!(
            "node {:<8} {:<22} {:<16} {cni}",
            node.name, label, node.address
        );
    }
    format!(
        "node {:<8} {:<22} {:<16} {cni}, {fl}",
        node.name, label, node.address
    )
}

/// Makes every pod the topology and the manifests ask for and attaches it, one after the other, as a kubelet
/// would; a pod's failure is recorded against it and the next one goes on.
fn make_pods(
    state: &mut State,
    topology: &Topology,
    cluster: &Cluster,
    runtime: &Runtime,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let plans: Vec<PodPlan> = pods(topology, cluster)
        .into_iter()
        .filter(|p| state.node(&p.node).is_some())
        .collect();
    let _ = writeln!(out, "==> {} pods", plans.len());
    // Every pod's namespace at once, recorded first, made from this process. The lab starts pods without IPv6
    // duplicate address detection, which would only add seconds of waiting.
    let namespaces: Vec<String> = plans
        .iter()
        .map(|p| format!("{}-{}", state.name, p.name))
        .collect();
    let first_pod = state.pods.len();
    for (plan, netns) in plans.iter().zip(&namespaces) {
        state.created.push(Resource::Netns {
            name: netns.clone(),
        });
        state.pods.push(PodState {
            name: plan.name.clone(),
            namespace: plan.namespace.clone(),
            node: plan.node.clone(),
            owner: plan.owner.clone(),
            netns: netns.clone(),
            ..PodState::default()
        });
    }
    state.save()?;
    disown_taken(
        state,
        sys::add_netns(&namespaces, &[("net.ipv6.conf.default.accept_dad", "0")]),
    )?;
    let mut notes = state.substitutions.clone();
    for (i, plan) in plans.into_iter().enumerate() {
        let Some(node) = state.node(&plan.node).cloned() else {
            continue;
        };
        let Some(mut pod) = state.pods.get(first_pod + i).cloned() else {
            continue;
        };
        let held = held_indices(state, &plan.node);
        let mut persist = |p: &PodState| state.save_pod(p).map_err(|e| e.to_string());
        runtime.attach(
            cluster,
            &node,
            &mut pod,
            &plan.annotations,
            &held,
            &mut notes,
            &mut persist,
        );
        pod.network_status = crate::runtime::network_status(&pod);
        let _ = writeln!(out, "    {}", pod_line(&pod));
        state.save_pod(&pod)?;
        if let Some(slot) = state
            .pods
            .iter_mut()
            .find(|p| p.name == pod.name && p.namespace == pod.namespace)
        {
            *slot = pod;
        }
    }
    state.substitutions = notes;
    Ok(())
}

/// The indices pods on `node` already hold, and which pod holds each.
fn held_indices(state: &State, node: &str) -> BTreeMap<u32, String> {
    state
        .pods
        .iter()
        .filter(|p| p.node == node)
        .flat_map(|p| {
            p.attachments
                .iter()
                .filter(|a| a.result.is_some())
                .filter_map(|a| a.index.map(|i| (i, p.name.clone())))
        })
        .collect()
}

/// The ipvlan probe's thread, joined however `up` ends: its links and namespace must not outlive `up`, where a
/// `down` in the same process could race them.
struct Probe(Option<std::thread::JoinHandle<bool>>);

impl Probe {
    /// Whether the kernel can make ipvlan links; a probe that could not finish says no.
    fn result(mut self) -> bool {
        self.0.take().and_then(|h| h.join().ok()).unwrap_or(false)
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            let _ = h.join();
        }
    }
}

/// Serialises the set-up and removal of what labs share, across processes: an exclusive lock on /run, which
/// always exists and is released when the returned file closes.
pub fn shared_lock() -> Result<std::fs::File, Error> {
    let run = Path::new("/run");
    let f = std::fs::File::open(run).map_err(|e| Error::io(run, e))?;
    f.lock().map_err(|e| Error::io(run, e))?;
    Ok(f)
}

/// One line per pod for progress: its interfaces and addresses, or why it has none.
pub fn pod_line(pod: &PodState) -> String {
    let ifaces: Vec<String> = pod
        .attachments
        .iter()
        .filter_map(|a| {
            let r = a.result.as_ref()?;
            let ips: Vec<String> = r.ips.iter().map(|i| i.address.to_string()).collect();
            Some(format!("{} {}", a.ifname, ips.join(" ")))
        })
        .collect();
    match &pod.error {
        None => format!(
            "pod {:<22} on {:<6} {}",
            pod.name,
            pod.node,
            ifaces.join(", ")
        ),
        Some(e) => format!("pod {:<22} on {:<6} FAILED: {e}", pod.name, pod.node),
    }
}

/// Two pods on one node asking for the same index cannot both have it: say so against both.
fn mark_index_conflicts(state: &mut State) {
    let mut holders: BTreeMap<(String, u32), Vec<String>> = BTreeMap::new();
    for p in &state.pods {
        for a in &p.attachments {
            if let Some(i) = a.index {
                holders
                    .entry((p.node.clone(), i))
                    .or_default()
                    .push(p.name.clone());
            }
        }
    }
    let failures: Vec<(String, String, u32, String)> = state
        .pods
        .iter()
        .flat_map(|p| {
            p.attachments
                .iter()
                .filter_map(|a| Some((p.node.clone(), p.name.clone(), a.index?, a.error.clone()?)))
        })
        .collect();
    for ((node, index), names) in holders.into_iter().filter(|(_, v)| v.len() > 1) {
        for p in state
            .pods
            .iter_mut()
            .filter(|p| p.node == node && names.contains(&p.name))
        {
            let others: Vec<&str> = names
                .iter()
                .filter(|n| **n != p.name)
                .map(String::as_str)
                .collect();
            // Every holder hears why the ADD that lost failed: with real ipvlan that is the kernel's own error.
            let why: Vec<String> = failures
                .iter()
                .filter(|(n, _, i, _)| *n == node && *i == index)
                .map(|(_, pod, _, e)| {
                    if *pod == p.name {
                        format!("; this pod's ADD failed: {e}")
                    } else {
                        format!("; {pod}'s ADD failed: {e}")
                    }
                })
                .collect();
            let msg = format!(
                "index {index} on node {node} is asked for by this pod and {}: one node has one address per index{}",
                others.join(", "),
                why.concat()
            );
            p.error.get_or_insert(msg);
        }
    }
}

/// The lab's CNI_PATH: the reference plugins, index2ip, and any overrides, as symlinks.
fn plugin_dir(dir: &Path, opts: &UpOptions) -> Result<PathBuf, Error> {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).map_err(|e| Error::io(&bin, e))?;
    let entries =
        std::fs::read_dir(&opts.reference_dir).map_err(|e| Error::io(&opts.reference_dir, e))?;
    let mut links: BTreeMap<String, PathBuf> = BTreeMap::new();
    for e in entries.flatten() {
        links.insert(e.file_name().to_string_lossy().into_owned(), e.path());
    }
    let index2ip = opts
        .index2ip
        .canonicalize()
        .map_err(|e| Error::io(&opts.index2ip, e))?;
    links.insert("index2ip".into(), index2ip);
    for (name, target) in links {
        let link = bin.join(&name);
        std::os::unix::fs::symlink(&target, &link).map_err(|e| Error::io(&link, e))?;
    }
    let Some(shim) = &opts.shim else {
        return Ok(bin);
    };
    // Tracing: cni-shim's directory in front of the real one, so every call, delegated ones included, is recorded.
    let shim_dir = dir.join("shim");
    sys::run(
        &shim.display().to_string(),
        [
            "install".as_ref(),
            "--real-dir".as_ref(),
            bin.as_os_str(),
            "--shim-dir".as_ref(),
            shim_dir.as_os_str(),
            "--log-dir".as_ref(),
            dir.join("trace").as_os_str(),
        ],
    )?;
    Ok(shim_dir)
}

/// The site's switch and internet client (which holds the block's gateway addresses), and every node's network
/// namespace: all recorded before they exist, then made, with their loopback, sysctls, links and addresses, from
/// this process.
/// Returns the rtnetlink sockets of the switch and of each node, in the topology's order.
fn site(
    state: &mut State,
    t: &Topology,
    node_netns: &[String],
) -> Result<(Netlink, Vec<Netlink>), Error> {
    let (site, router, wan) = (
        state.site_netns.clone(),
        state.inet_netns.clone(),
        state.wan_netns.clone(),
    );
    let own = [site.clone(), router.clone(), wan.clone()];
    for ns in own.iter().chain(node_netns) {
        state.created.push(Resource::Netns { name: ns.clone() });
    }
    state.save()?;
    // The switch and the internet client hold fixed addresses and are not under test: no duplicate address
    // detection to wait for. The router forwards both families.
    let quiet = [("net.ipv6.conf.default.accept_dad", "0")];
    let mut sockets = disown_taken(
        state,
        sys::add_netns_for_links(&[site.clone(), wan.clone()], &quiet),
    )?
    .into_iter();
    let routing = [
        ("net.ipv6.conf.default.accept_dad", "0"),
        ("net.ipv4.ip_forward", "1"),
        ("net.ipv6.conf.all.forwarding", "1"),
    ];
    let mut routers = disown_taken(
        state,
        sys::add_netns_for_links(std::slice::from_ref(&router), &routing),
    )?
    .into_iter();
    let nodes = disown_taken(
        state,
        sys::add_netns_for_links(node_netns, &[("net.ipv4.ip_forward", "1")]),
    )?;
    let (Some(mut switch), Some(mut client), Some(mut gateway)) =
        (sockets.next(), sockets.next(), routers.next())
    else {
        return Err(Error::NoSocket("the site"));
    };
    switch.add_bridge("br0")?;
    let br0 = switch.index("br0")?;
    switch.set_up(br0, None, None)?;
    gateway.add_veth("eth0", "pinet", Some(netns_file(&site)?.as_fd()))?;
    let eth0 = gateway.index("eth0")?;
    gateway.add_address(
        eth0,
        t.site.gateway4.into(),
        t.site.ipv4.prefix_len(),
        false,
    )?;
    state
        .inet_addresses
        .push(format!("{}/{}", t.site.gateway4, t.site.ipv4.prefix_len()));
    if let (Some(net), Some(gw)) = (t.site.ipv6, t.site.gateway6) {
        gateway.add_address(eth0, gw.into(), net.prefix_len(), true)?;
        state
            .inet_addresses
            .push(format!("{gw}/{}", net.prefix_len()));
    }
    gateway.set_up(eth0, None, None)?;
    // The internet client, one hop away.
    gateway.add_veth("wan0", "eth0", Some(netns_file(&wan)?.as_fd()))?;
    let wan0 = gateway.index("wan0")?;
    let client_eth0 = client.index("eth0")?;
    for ((router_addr, client_addr), len) in WAN_ROUTER.iter().zip(WAN_CLIENT).zip(WAN_PREFIX) {
        let v6 = router_addr.is_ipv6();
        gateway.add_address(wan0, *router_addr, len, v6)?;
        client.add_address(client_eth0, client_addr, len, v6)?;
        state.wan_addresses.push(format!("{client_addr}/{len}"));
    }
    gateway.set_up(wan0, None, None)?;
    client.set_up(client_eth0, None, None)?;
    for router_addr in WAN_ROUTER {
        client.add_route(None, router_addr, None, false)?;
    }
    state.save()?;
    Ok((switch, nodes))
}

/// Refuses, before anything is made, a lab whose network namespaces would share a name (a node named `site`, two
/// pods of one name in two Kubernetes namespaces: the second would fail half-way through `up`), or take a name that
/// exists already (someone else's: every name is recorded for `down` to remove before its namespace is made).
fn namespaces_free(
    state: &State,
    node_netns: &[String],
    topology: &Topology,
    cluster: Option<&Cluster>,
) -> Result<(), Error> {
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut own = vec![
        (state.site_netns.clone(), "the site switch".to_owned()),
        (state.inet_netns.clone(), "the site router".to_owned()),
        (state.wan_netns.clone(), "the internet client".to_owned()),
    ];
    if cluster.is_none() {
        own.push((format!("{}-cp", state.name), "the control plane".to_owned()));
    }
    let nodes = node_netns
        .iter()
        .zip(&topology.nodes)
        .map(|(ns, n)| (ns.clone(), format!("node {}", n.name)));
    let planned = cluster.map(|c| pods(topology, c)).unwrap_or_default();
    let pods = planned.into_iter().map(|p| {
        (
            format!("{}-{}", state.name, p.name),
            format!("pod {}/{}", p.namespace, p.name),
        )
    });
    for (ns, what) in own.into_iter().chain(nodes).chain(pods) {
        if sys::netns_path(&ns).exists() {
            return Err(Error::NetnsTaken(ns));
        }
        if let Some(first) = seen.insert(ns.clone(), what.clone()) {
            return Err(Error::NetnsClash {
                first,
                second: what,
                netns: ns,
            });
        }
    }
    Ok(())
}

/// When a namespace's name turned out to be taken after the check (someone else made it meanwhile), drops it from
/// what `down` removes before passing the error on: it is not the lab's.
fn disown_taken<T>(state: &mut State, made: Result<T, Error>) -> Result<T, Error> {
    if let Err(Error::NetnsTaken(name)) = &made {
        state
            .created
            .retain(|r| !matches!(r, Resource::Netns { name: n } if n == name));
        state.save()?;
    }
    made
}

/// A network namespace's file, held open to name the namespace to the kernel.
fn netns_file(name: &str) -> Result<std::fs::File, Error> {
    let path = sys::netns_path(name);
    std::fs::File::open(&path).map_err(|e| Error::io(&path, e))
}

/// Node `i` of the topology; `subnets` holds every node's flannel subnet, by index.
fn node(
    state: &State,
    t: &Topology,
    cluster: &Cluster,
    i: usize,
    subnets: &[Option<Ipv4Net>],
    mut links: Netlink,
    real: bool,
) -> Result<NodeState, Error> {
    let (Some(spec), Some(&subnet)) = (t.nodes.get(i), subnets.get(i)) else {
        return Err(Error::NoNode(i));
    };
    let netns = format!("{}-{}", state.name, spec.name);
    let dir = state.dir.join("nodes").join(&spec.name);
    for (own, _) in NODE_DIRS {
        let d = dir.join(own);
        std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
    }
    let net_d = dir.join("net.d");
    let cmdline = dir.join("cmdline");
    std::fs::write(&cmdline, t.cmdline(spec)).map_err(|e| Error::io(&cmdline, e))?;
    // On the real control plane the DaemonSets' pods write the node's configuration.
    let cni_configs = if real {
        Vec::new()
    } else {
        cluster.configs_for(&spec.labels)
    };
    for (name, text) in &cni_configs {
        let p = net_d.join(name);
        std::fs::write(&p, text).map_err(|e| Error::io(&p, e))?;
    }

    // The namespace exists (made with the site's); its side is made over its own rtnetlink socket, its port on the
    // switch is attached with the others'.
    let port = format!("p{i}");
    let address = t.node_address(spec);
    links.add_veth("eth0", &port, Some(netns_file(&state.site_netns)?.as_fd()))?;
    let eth0 = links.index("eth0")?;
    links.add_address(eth0, address.into(), t.site.ipv4.prefix_len(), false)?;
    if let (Some(a6), Some(net)) = (t.node_address6(spec), t.site.ipv6) {
        links.add_address(eth0, a6.into(), net.prefix_len(), true)?;
    }
    links.set_up(eth0, None, None)?;
    links.add_route(None, t.site.gateway4.into(), None, false)?;
    flannel(&mut links, t, i, eth0, subnets)?;

    // The node's own view of the files its plugins read: its kernel command line and its CNI state.
    let mnt = state.dir.join("mnt").join(&spec.name);
    std::fs::write(&mnt, "").map_err(|e| Error::io(&mnt, e))?;
    // The bind mounts of a mount namespace of the node's own, made from this process.
    let binds: Vec<(PathBuf, &str)> = std::iter::once((cmdline.clone(), "/proc/cmdline"))
        .chain(NODE_DIRS.iter().map(|(own, host)| (dir.join(own), *host)))
        .collect();
    sys::mount_namespace(&mnt, &binds)?;

    if let Some(sn) = subnet {
        let env = format!(
            "FLANNEL_NETWORK={}\nFLANNEL_SUBNET={}/{}\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
            cluster
                .flannel
                .as_ref()
                .map(|f| f.network.to_string())
                .unwrap_or_default(),
            first_host(sn),
            sn.prefix_len()
        );
        let p = dir.join("run-flannel").join("subnet.env");
        std::fs::write(&p, env).map_err(|e| Error::io(&p, e))?;
    }
    Ok(NodeState {
        name: spec.name.clone(),
        node_type: Topology::node_type(spec).map(str::to_owned),
        netns,
        mnt,
        dir,
        address: address.to_string(),
        subnet: subnet.map(|s| s.to_string()),
        cni_configs,
        cni_bin: None,
    })
}

fn first_host(net: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()).saturating_add(1))
}

/// The n-th subnet of flannel's network (the first, holding the network address, is skipped as flannel does).
fn nth_subnet(network: Ipv4Net, len: u8, n: u32) -> Result<Ipv4Net, Error> {
    let size = 1u32.checked_shl(32 - u32::from(len)).unwrap_or(0);
    let base = u32::from(network.network());
    let start = n.checked_mul(size).and_then(|o| base.checked_add(o));
    match start.and_then(|s| Ipv4Net::new(Ipv4Addr::from(s), len).ok()) {
        Some(sn) if network.contains(&sn) => Ok(sn),
        _ => Err(Error::FlannelFull { network, n, len }),
    }
}

/// Node `i`'s VTEP MAC address.
fn vtep_mac(i: usize) -> Mac {
    let [.., hi, lo] = i.to_be_bytes();
    [0x0a, 0x58, 0, 0, hi, lo]
}

/// What flanneld's vxlan backend makes on node `i`: `flannel.1` over `eth0` (by index) with the subnet's network
/// address, and for every other node with a subnet a route to that subnet through `flannel.1`, the neighbour entry
/// of its VTEP and the forwarding entry to its address.
fn flannel(
    links: &mut Netlink,
    t: &Topology,
    i: usize,
    eth0: i32,
    subnets: &[Option<Ipv4Net>],
) -> Result<(), Error> {
    let (Some(spec), Some(Some(subnet))) = (t.nodes.get(i), subnets.get(i)) else {
        return Ok(());
    };
    links.add_vxlan(
        "flannel.1",
        vtep_mac(i),
        1,
        t.node_address(spec),
        eth0,
        8472,
    )?;
    let vxlan = links.index("flannel.1")?;
    links.add_address(vxlan, subnet.network().into(), 32, false)?;
    links.set_up(vxlan, Some(1450), None)?;
    for (j, (peer, sn)) in t.nodes.iter().zip(subnets).enumerate() {
        let Some(sn) = sn.filter(|_| j != i) else {
            continue;
        };
        let (vtep, mac) = (sn.network(), vtep_mac(j));
        links.add_route(
            Some((sn.network().into(), sn.prefix_len())),
            vtep.into(),
            Some(vxlan),
            true,
        )?;
        links.add_neighbour(vxlan, vtep, mac)?;
        links.append_fdb(vxlan, mac, t.node_address(peer))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flannel_subnets_skip_the_first() {
        let net: Ipv4Net = "192.168.0.0/16".parse().unwrap();
        assert_eq!(
            nth_subnet(net, 26, 1).unwrap().to_string(),
            "192.168.0.64/26"
        );
        assert_eq!(
            nth_subnet(net, 26, 5).unwrap().to_string(),
            "192.168.1.64/26"
        );
        assert!(nth_subnet(net, 26, 1024).is_err());
    }
}
