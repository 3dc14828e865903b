//! A real node for the control plane: containerd (with runc and the CNI bridge plugin), kubelet
//! and kube-scheduler, so that Deployments run as pods.
//!
//! Everything stays on this machine and is removed on shutdown: the pods get addresses on a
//! bridge this module creates (`gbt<pid>`, 10.222.<pid mod 256>.0/24); the node's address is the
//! bridge's gateway; the one Service pods use, `kubernetes` (10.0.0.1:443), is forwarded to the API
//! server on loopback by one iptables DNAT rule on that bridge (what kube-proxy would do for it).
//! Shutdown deletes every pod, stops the components, removes what containerd left running, the
//! mounts under the node's directory, the rule, the bridge, and the chains kubelet creates.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::kubeconfig;
use crate::process::Process;
use crate::{Error, io};

/// The node's name in the cluster.
pub const NODE_NAME: &str = "groupbinder-node";

/// The ClusterIP of the `kubernetes` Service: the first address of the API server's
/// `--service-cluster-ip-range`.
pub(crate) const KUBERNETES_SERVICE_IP: &str = "10.0.0.1";

/// The sandbox image containerd uses, built by `tools/build-control-plane.sh` as `pause.tar`.
const PAUSE_IMAGE: &str = "localhost/groupbinder-testenv/pause:1";

/// Where Debian's containernetworking-plugins installs the CNI plugins.
const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// What the node needs from the machine (`make node-deps` installs it).
const SYSTEM_TOOLS: [&str; 5] = ["containerd", "runc", "ctr", "ip", "iptables"];

/// The node's network: a bridge and its /24.
#[derive(Debug, Clone)]
pub(crate) struct Network {
    /// The bridge's name.
    pub bridge: String,
    /// The bridge's address, the pods' gateway and the node's address.
    pub gateway: String,
    /// The pods' subnet.
    pub subnet: String,
}

impl Network {
    /// This process's network (one node per process).
    pub(crate) fn for_this_process() -> Self {
        let pid = std::process::id();
        let octet = pid % 256;
        Network {
            bridge: format!("gbt{pid}"),
            gateway: format!("10.222.{octet}.1"),
            subnet: format!("10.222.{octet}.0/24"),
        }
    }
}

/// A running node. Dropping it removes everything it made.
#[derive(Debug)]
pub struct Node {
    dir: PathBuf,
    network: Network,
    /// The DNAT rule of the `kubernetes` Service, as `iptables` arguments after the chain.
    dnat: Vec<String>,
    socket: PathBuf,
    containerd: Option<Process>,
    kubelet: Option<Process>,
    scheduler: Option<Process>,
}

/// The binaries of a node: kubelet and kube-scheduler of the pinned Kubernetes, the pause image.
#[derive(Debug, Clone)]
pub(crate) struct NodeBinaries {
    pub kubelet: PathBuf,
    pub kube_scheduler: PathBuf,
    pub pause_image: PathBuf,
}

/// Runs `program args`, failing with its output.
fn run(program: &str, args: &[&str]) -> Result<String, Error> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(io(format!("running {program}")))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(Error::Io {
            what: format!("{program} {}", args.join(" ")),
            source: std::io::Error::other(String::from_utf8_lossy(&output.stderr).into_owned()),
        })
    }
}

/// Runs `program args` for cleanup: failures are logged, not returned.
fn run_quietly(program: &str, args: &[&str]) {
    if let Err(error) = run(program, args) {
        tracing::debug!(%error, "cleanup step failed");
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Fails with what is missing from the machine, and how to get it.
pub(crate) fn check_system() -> Result<(), Error> {
    let missing: Vec<&str> = SYSTEM_TOOLS
        .into_iter()
        .filter(|tool| !on_path(tool))
        .chain(
            ["bridge", "host-local", "loopback"]
                .into_iter()
                .filter(|plugin| !Path::new(CNI_BIN_DIR).join(plugin).is_file()),
        )
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::NodeUnavailable(format!(
            "missing {}: run `make node-deps` (as root: apt-get install containerd runc containernetworking-plugins iproute2 iptables)",
            missing.join(", ")
        )))
    }
}

impl Node {
    /// Starts containerd, kubelet and kube-scheduler for the control plane at `server` (with CA
    /// `ca`), in `dir`. The caller has run [`check_system`] (before starting anything) and waits
    /// for the node to be Ready.
    pub(crate) async fn start(
        dir: &Path,
        binaries: &NodeBinaries,
        ca: &crate::pki::Ca,
        server: &str,
        network: Network,
    ) -> Result<Self, Error> {
        let started = Instant::now();
        let dir = dir.join("node");
        for sub in ["containerd", "cni/net.d", "cni/ipam", "kubelet", "pki"] {
            std::fs::create_dir_all(dir.join(sub))
                .map_err(io(format!("creating {}", dir.join(sub).display())))?;
        }
        let write = |name: &str, contents: &str| -> Result<PathBuf, Error> {
            let file = dir.join(name);
            std::fs::write(&file, contents).map_err(io(format!("writing {}", file.display())))?;
            Ok(file)
        };
        let api_port = server
            .rsplit(':')
            .next()
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or_else(|| Error::NodeUnavailable(format!("no port in {server}")))?;
        let socket = dir.join("containerd/containerd.sock");
        let mut node = Node {
            dnat: vec![
                "-i".into(),
                network.bridge.clone(),
                "-d".into(),
                format!("{KUBERNETES_SERVICE_IP}/32"),
                "-p".into(),
                "tcp".into(),
                "--dport".into(),
                "443".into(),
                "-m".into(),
                "comment".into(),
                "--comment".into(),
                format!("groupbinder-testenv {}", std::process::id()),
                "-j".into(),
                "DNAT".into(),
                "--to-destination".into(),
                format!("127.0.0.1:{api_port}"),
            ],
            dir: dir.clone(),
            network,
            socket: socket.clone(),
            containerd: None,
            kubelet: None,
            scheduler: None,
        };
        // From here on, dropping `node` undoes what was done so far.
        node.network_up()?;

        let config = write("containerd/config.toml", &containerd_config(&dir, &socket))?;
        let containerd = Process::start(
            "containerd",
            Path::new("containerd"),
            &["--config".into(), config.display().to_string()],
            &dir,
        )
        .map_err(io("starting containerd"))?;
        node.containerd = Some(containerd);
        node.wait_for("containerd", Duration::from_secs(30), |node| {
            node.ctr(&["version"]).is_ok()
        })
        .await?;
        node.import_image(&binaries.pause_image)?;

        write(
            "cni/net.d/10-groupbinder.conflist",
            &cni_config(&dir, &node.network),
        )?;

        let ca_file = write("pki/ca.crt", &ca.cert_pem())?;
        let kubelet_kubeconfig = kubeconfig::for_identity(
            &dir.join("kubelet.kubeconfig"),
            server,
            ca,
            &format!("system:node:{NODE_NAME}"),
            &["system:nodes"],
        )?;
        let [kubelet_port, healthz_port] = crate::free_ports::<2>()?;
        let kubelet_config = write(
            "kubelet/config.yaml",
            &kubelet_config(&node.network, &socket, &ca_file, kubelet_port, healthz_port),
        )?;
        let kubelet = Process::start(
            "kubelet",
            &binaries.kubelet,
            &[
                format!("--config={}", kubelet_config.display()),
                format!("--kubeconfig={}", kubelet_kubeconfig.display()),
                format!("--root-dir={}", dir.join("kubelet").display()),
                format!("--cert-dir={}", dir.join("kubelet/pki").display()),
                format!("--node-ip={}", node.network.gateway),
                format!("--hostname-override={NODE_NAME}"),
                "--v=1".into(),
            ],
            &dir,
        )
        .map_err(io("starting kubelet"))?;
        node.kubelet = Some(kubelet);

        let scheduler_kubeconfig = kubeconfig::for_identity(
            &dir.join("scheduler.kubeconfig"),
            server,
            ca,
            "system:kube-scheduler",
            &[],
        )?;
        let scheduler = Process::start(
            "kube-scheduler",
            &binaries.kube_scheduler,
            &[
                format!("--kubeconfig={}", scheduler_kubeconfig.display()),
                format!(
                    "--authentication-kubeconfig={}",
                    scheduler_kubeconfig.display()
                ),
                format!(
                    "--authorization-kubeconfig={}",
                    scheduler_kubeconfig.display()
                ),
                "--leader-elect=false".into(),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={}", crate::free_ports::<1>()?[0]),
            ],
            &dir,
        )
        .map_err(io("starting kube-scheduler"))?;
        node.scheduler = Some(scheduler);
        tracing::info!(elapsed = ?started.elapsed(), bridge = %node.network.bridge, "node processes started");
        Ok(node)
    }

    /// The node's working directory (configuration, logs, kubelet and containerd state).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `ctr` against this node's containerd, in the `k8s.io` namespace (the one kubelet
    /// uses).
    pub fn ctr(&self, args: &[&str]) -> Result<String, Error> {
        let socket = self.socket.display().to_string();
        let mut all = vec![
            "--address",
            socket.as_str(),
            "--namespace",
            "k8s.io",
            "--connect-timeout",
            "3s",
            "--timeout",
            "60s",
        ];
        all.extend_from_slice(args);
        run("ctr", &all)
    }

    /// Imports a docker-archive or OCI tarball (e.g. from `make image`) into the node's
    /// containerd, so that pods can run it without a registry.
    pub fn import_image(&self, tarball: &Path) -> Result<(), Error> {
        self.ctr(&["images", "import", &tarball.display().to_string()])
            .map(drop)
    }

    /// The host pid of the running container `id` (a pod's `containerID` without `containerd://`),
    /// to read what the kernel enforces on it from `/proc`.
    pub fn container_pid(&self, id: &str) -> Result<Option<u32>, Error> {
        let tasks = self.ctr(&["tasks", "list"])?;
        Ok(tasks.lines().find_map(|line| {
            let mut fields = line.split_whitespace();
            (fields.next() == Some(id))
                .then(|| fields.next().and_then(|pid| pid.parse().ok()))
                .flatten()
        }))
    }

    /// The last `lines` lines of kubelet's log.
    pub(crate) fn kubelet_log_tail(&self, lines: usize) -> String {
        self.kubelet
            .as_ref()
            .map(|k| k.log_tail(lines))
            .unwrap_or_default()
    }

    /// Fails with the log of any node process that has exited.
    pub(crate) fn check_alive(&mut self) -> Result<(), Error> {
        for process in [&mut self.containerd, &mut self.kubelet, &mut self.scheduler]
            .into_iter()
            .flatten()
        {
            if let Some(status) = process.exited() {
                return Err(Error::NotReady {
                    component: process.name(),
                    reason: format!("exited with {status}"),
                    log: process.log_tail(30),
                });
            }
        }
        Ok(())
    }

    async fn wait_for(
        &mut self,
        what: &'static str,
        timeout: Duration,
        ready: impl Fn(&Self) -> bool,
    ) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive()?;
            if ready(self) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::NotReady {
                    component: what,
                    reason: format!("not ready after {timeout:?}"),
                    log: String::new(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The process ids of the node's components, by name.
    pub(crate) fn pids(&self) -> Vec<(&'static str, u32)> {
        [&self.containerd, &self.kubelet, &self.scheduler]
            .into_iter()
            .flatten()
            .map(|p| (p.name(), p.pid()))
            .collect()
    }

    fn network_up(&mut self) -> Result<(), Error> {
        let Network {
            bridge, gateway, ..
        } = &self.network;
        // A bridge left by a killed run of a process with the same pid would be in the way.
        run_quietly("ip", &["link", "delete", bridge]);
        run("ip", &["link", "add", bridge, "type", "bridge"])?;
        run(
            "ip",
            &["addr", "add", &format!("{gateway}/24"), "dev", bridge],
        )?;
        run("ip", &["link", "set", bridge, "up"])?;
        // DNAT to 127.0.0.1 for packets from the bridge: allowed on this interface only.
        let sysctl = format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet");
        std::fs::write(&sysctl, "1").map_err(io(format!("writing {sysctl}")))?;
        run("iptables", &self.dnat_rule("-A"))?;
        Ok(())
    }

    /// `iptables` arguments that apply `action` (`-A`, `-D`) to the DNAT rule.
    fn dnat_rule(&self, action: &'static str) -> Vec<&str> {
        let mut args = vec!["-t", "nat", action, "PREROUTING"];
        args.extend(self.dnat.iter().map(String::as_str));
        args
    }

    /// Stops everything and removes what the node made. Idempotent.
    pub(crate) fn shutdown(&mut self) {
        if let Some(mut scheduler) = self.scheduler.take() {
            scheduler.stop(Duration::from_secs(5));
        }
        if let Some(mut kubelet) = self.kubelet.take() {
            kubelet.stop(Duration::from_secs(10));
        }
        if self.containerd.is_some() {
            self.remove_pods();
        }
        if let Some(mut containerd) = self.containerd.take() {
            containerd.stop(Duration::from_secs(10));
        }
        unmount_under(&self.dir);
        // Delete the rule as often as it was added (once; twice would mean a retried start).
        while run("iptables", &self.dnat_rule("-D")).is_ok() {}
        run_quietly("ip", &["link", "delete", &self.network.bridge]);
        remove_kubelet_chains();
    }

    /// Kills and deletes every container and sandbox (their shims exit with them) and releases
    /// their network namespaces.
    fn remove_pods(&self) {
        // CRI sandboxes are containerd containers in the k8s.io namespace; their tasks are the
        // running processes.
        if let Ok(tasks) = self.ctr(&["tasks", "list", "--quiet"]) {
            for id in tasks.lines().filter(|l| !l.is_empty()) {
                let _ = self.ctr(&["tasks", "kill", "--signal", "SIGKILL", id]);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            for id in tasks.lines().filter(|l| !l.is_empty()) {
                while self.ctr(&["tasks", "delete", id]).is_err() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        if let Ok(containers) = self.ctr(&["containers", "list", "--quiet"]) {
            for id in containers.lines().filter(|l| !l.is_empty()) {
                let _ = self.ctr(&["containers", "delete", id]);
            }
        }
        // The network namespaces the CRI plugin made for sandboxes (named cni-<uuid>).
        if let Ok(entries) = std::fs::read_dir("/var/run/netns") {
            let ours = self.network.subnet.trim_end_matches(".0/24");
            let names = entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with("cni-"));
            for name in names {
                let addresses = run(
                    "ip",
                    &["-n", &name, "-4", "-o", "addr", "show", "dev", "eth0"],
                )
                .unwrap_or_default();
                if addresses.contains(&format!("{ours}.")) {
                    run_quietly("ip", &["netns", "delete", &name]);
                }
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Unmounts everything mounted under `dir`, deepest first (kubelet's volumes, containerd's
/// snapshots and sandbox files).
fn unmount_under(dir: &Path) {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.display().to_string();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| point.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        if let Err(error) = nix::mount::umount2(point, nix::mount::MntFlags::MNT_DETACH) {
            tracing::debug!(%error, point, "unmounting");
        }
    }
}

/// Removes the iptables chains kubelet makes (`KUBE-FIREWALL`, `KUBE-KUBELET-CANARY`, ...) and the
/// rules that jump to them. Nothing else on a test machine makes `KUBE-` chains: a machine that
/// runs a real Kubernetes node must not run the node tests.
fn remove_kubelet_chains() {
    for table in ["mangle", "nat", "filter"] {
        let Ok(rules) = run("iptables", &["-t", table, "-S"]) else {
            continue;
        };
        // `-S` prints rules quoted for a shell: let one undo them.
        for rule in rules.lines() {
            if let Some(rule) = rule.strip_prefix("-A ")
                && rule.contains("-j KUBE-")
            {
                run_quietly("sh", &["-c", &format!("iptables -t {table} -D {rule}")]);
            }
        }
        for chain in rules
            .lines()
            .filter_map(|l| l.strip_prefix("-N "))
            .filter(|c| c.starts_with("KUBE-"))
        {
            run_quietly("iptables", &["-t", table, "-F", chain]);
            run_quietly("iptables", &["-t", table, "-X", chain]);
        }
    }
}

fn containerd_config(dir: &Path, socket: &Path) -> String {
    let d = dir.display();
    format!(
        r#"# The test node's containerd: everything under {d}.
version = 2
root = "{d}/containerd/root"
state = "{d}/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # This machine refuses to lower a process's oom_score_adj, which kubelet asks for sandboxes.
  restrict_oom_score_adj = true
  enable_selinux = false
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{d}/cni/net.d"
"#,
        socket = socket.display(),
    )
}

fn cni_config(dir: &Path, network: &Network) -> String {
    serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "groupbinder-testenv",
        "plugins": [{
            "type": "bridge",
            "bridge": network.bridge,
            "isGateway": true,
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": network.subnet, "gateway": network.gateway}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": dir.join("cni/ipam").display().to_string(),
            },
        }],
    })
    .to_string()
}

fn kubelet_config(
    network: &Network,
    socket: &Path,
    ca_file: &Path,
    port: u16,
    healthz_port: u16,
) -> String {
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {address}
port: {port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz_port}
containerRuntimeEndpoint: unix://{socket}
# This machine: cgroup v1 (hybrid), no systemd, swap allowed, no per-QoS cgroups.
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
cgroupsPerQOS: false
enforceNodeAllocatable: []
localStorageCapacityIsolation: false
# A shared disk that may be fuller than a dedicated node's: evict and collect images only when
# it is really full (the imported images cannot be pulled again).
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%"
  imagefs.available: "1%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
  x509:
    clientCAFile: {ca}
authorization:
  mode: Webhook
clusterDomain: cluster.local
resolvConf: ""
serializeImagePulls: false
maxPods: 30
nodeStatusUpdateFrequency: 4s
"#,
        address = network.gateway,
        socket = socket.display(),
        ca = ca_file.display(),
    )
}
