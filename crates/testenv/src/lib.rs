//! A real Kubernetes control plane for tests and demos: etcd, kube-apiserver and
//! kube-controller-manager (garbage collector, namespace and ClusterRole aggregation controllers), built from their Go
//! modules by `tools/build-control-plane.sh` and started here on free loopback ports, in the manner
//! of controller-runtime's envtest.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let cp = groupbinder_testenv::ControlPlane::shared().await?;
//! let client = cp.client().await?;              // admin, in system:masters
//! let alice = cp.user("alice", &["devs"])?;      // any user name and groups
//! let status = cp.kubectl().args(["get", "ns"]).status()?;
//! # Ok(()) }
//! ```
//!
//! Everything is torn down when the [`ControlPlane`] is dropped, when the test process exits (the
//! shared one), and by the kernel if the process dies: children carry `PDEATHSIG`.

mod bins;
mod kubeconfig;
mod node;
mod pki;
mod process;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use bins::{Binaries, Versions};
use kubeconfig::Credentials;
pub use node::{NODE_NAME, Node};
pub use pki::CertAndKey;
use process::Process;
pub use process::terminate;

/// What can go wrong while starting or using a control plane.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A control-plane binary is missing.
    #[error(
        "{binary} not found in {dir}: build the control plane first with tools/build-control-plane.sh (or `make control-plane`), or set GROUPBINDER_BIN_DIR"
    )]
    MissingBinary {
        /// The binary's name.
        binary: String,
        /// Where it was looked for.
        dir: PathBuf,
    },
    /// File or process I/O failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Certificate generation failed.
    #[error("generating certificates: {0}")]
    Pki(#[from] rcgen::Error),
    /// A component exited or did not become ready in time.
    #[error("{component} did not become ready: {reason}\n--- last lines of its log ---\n{log}")]
    NotReady {
        /// Which component.
        component: &'static str,
        /// Why it is considered failed.
        reason: String,
        /// The end of its log.
        log: String,
    },
    /// Building a client failed.
    #[error("building a client: {0}")]
    Kubeconfig(String),
    /// A node cannot run on this machine, or did not come up.
    #[error("node: {0}")]
    NodeUnavailable(String),
}

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// How to start a control plane. The default is what most tests want.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Contents of a kube-apiserver `AuthenticationConfiguration` (YAML), passed with
    /// `--authentication-config`: JWT issuers for OIDC tests. Client certificates keep working.
    pub authentication_config: Option<String>,
    /// Extra kube-apiserver flags, `--name=value`.
    pub extra_apiserver_args: Vec<String>,
    /// Leave kube-controller-manager out (no garbage collection, no namespace deletion).
    pub without_controller_manager: bool,
    /// Run kube-controller-manager's controllers with per-controller credentials
    /// (`--use-service-account-credentials`, as most clusters do): the garbage collector is then
    /// `system:serviceaccount:kube-system:generic-garbage-collector`, not
    /// `system:kube-controller-manager`.
    pub per_controller_credentials: bool,
    /// Also start a node ([`Node`]: containerd, kubelet, kube-scheduler) and the controllers
    /// Deployments need, so that pods run. Needs root and `make node-deps`.
    pub node: bool,
}

/// The running processes, stopped in reverse order of start.
#[derive(Debug, Default)]
struct Processes {
    etcd: Option<Process>,
    apiserver: Option<Process>,
    controller_manager: Option<Process>,
}

impl Processes {
    fn stop_all(&mut self) {
        for process in [
            self.controller_manager.take(),
            self.apiserver.take(),
            self.etcd.take(),
        ]
        .iter_mut()
        .flatten()
        {
            process.stop(Duration::from_secs(10));
        }
    }
}

/// A running control plane. Dropping it stops every process and deletes its directory.
#[derive(Debug)]
pub struct ControlPlane {
    processes: Mutex<Processes>,
    node: Mutex<Option<Node>>,
    dir: Mutex<Option<tempfile::TempDir>>,
    path: PathBuf,
    binaries: Binaries,
    ca: pki::Ca,
    server: String,
    kubeconfig: PathBuf,
    apiserver_args: Vec<String>,
    etcd_args: Vec<String>,
    /// kube-controller-manager's arguments; empty when it is left out.
    kcm_args: Vec<String>,
}

impl ControlPlane {
    /// Starts etcd, kube-apiserver and kube-controller-manager and waits until they are ready.
    pub async fn start(options: Options) -> Result<Self, Error> {
        let started = Instant::now();
        let binaries = Binaries::locate()?;
        sweep_stale_dirs();
        let dir = tempfile::Builder::new()
            .prefix("groupbinder-testenv-")
            .tempdir()
            .map_err(io("creating the control plane's directory"))?;
        let path = dir.path().to_owned();
        let ca = pki::Ca::new()?;
        let write = |name: &str, contents: &str| -> Result<PathBuf, Error> {
            let file = path.join(name);
            std::fs::write(&file, contents).map_err(io(format!("writing {}", file.display())))?;
            Ok(file)
        };
        write(OWNER_FILE, &std::process::id().to_string())?;
        let ca_file = write("ca.crt", &ca.cert_pem())?;
        // Pods reach the API server as the `kubernetes` Service, by its ClusterIP or name.
        let serving = ca.serving(&[
            "127.0.0.1",
            "localhost",
            node::KUBERNETES_SERVICE_IP,
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ])?;
        let serving_cert = write("apiserver.crt", &serving.cert_pem)?;
        let serving_key = write("apiserver.key", &serving.key_pem)?;
        let (sa_private, sa_public) = pki::signing_key_pem()?;
        let sa_key = write("service-account.key", &sa_private)?;
        let sa_pub = write("service-account.pub", &sa_public)?;

        let [etcd_port, etcd_peer_port, apiserver_port] = free_ports()?;
        let server = format!("https://127.0.0.1:{apiserver_port}");
        let kubeconfig = kubeconfig::for_identity(
            &path.join("kubeconfig"),
            &server,
            &ca,
            "groupbinder-testenv-admin",
            &["system:masters"],
        )?;

        let mut apiserver_args: Vec<String> = vec![
            format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
            format!("--secure-port={apiserver_port}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--tls-cert-file={}", serving_cert.display()),
            format!("--tls-private-key-file={}", serving_key.display()),
            format!("--client-ca-file={}", ca_file.display()),
            format!("--service-account-issuer={server}"),
            format!("--service-account-key-file={}", sa_pub.display()),
            format!("--service-account-signing-key-file={}", sa_key.display()),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            "--endpoint-reconciler-type=none".into(),
            "--allow-privileged=true".into(),
            "--profiling=false".into(),
            format!("--cert-dir={}", path.join("apiserver-certs").display()),
        ];
        if options.node {
            node::check_system()?;
            // The Node authorizer and NodeRestriction limit the kubelet to its own node and pods;
            // the API server reaches the kubelet (logs, exec) with a client certificate.
            let kubelet_client = ca.client("kube-apiserver-kubelet-client", &["system:masters"])?;
            let cert = write("kubelet-client.crt", &kubelet_client.cert_pem)?;
            let key = write("kubelet-client.key", &kubelet_client.key_pem)?;
            apiserver_args.extend([
                "--authorization-mode=Node,RBAC".into(),
                "--enable-admission-plugins=NodeRestriction".into(),
                format!("--kubelet-client-certificate={}", cert.display()),
                format!("--kubelet-client-key={}", key.display()),
                "--kubelet-preferred-address-types=InternalIP".into(),
            ]);
        } else {
            apiserver_args.push("--authorization-mode=RBAC".into());
        }
        if let Some(config) = &options.authentication_config {
            let file = write("authentication-config.yaml", config)?;
            apiserver_args.push(format!("--authentication-config={}", file.display()));
        }
        apiserver_args.extend(options.extra_apiserver_args.iter().cloned());

        let etcd_args = vec![
            format!("--data-dir={}", path.join("etcd").display()),
            format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"),
            format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"),
            format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer_port}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer_port}"),
            format!("--initial-cluster=default=http://127.0.0.1:{etcd_peer_port}"),
            "--unsafe-no-fsync=true".into(),
            "--log-level=warn".into(),
        ];
        let mut cp = ControlPlane {
            processes: Mutex::new(Processes::default()),
            node: Mutex::new(None),
            dir: Mutex::new(Some(dir)),
            path,
            binaries,
            ca,
            server,
            kubeconfig,
            apiserver_args,
            etcd_args,
            kcm_args: Vec::new(),
        };

        cp.start_etcd()?;
        cp.start_apiserver().await?;

        if !options.without_controller_manager {
            let kcm_kubeconfig = kubeconfig::for_identity(
                &cp.path.join("kcm.kubeconfig"),
                &cp.server,
                &cp.ca,
                "system:kube-controller-manager",
                &["system:masters"],
            )?;
            cp.kcm_args = vec![
                format!("--kubeconfig={}", kcm_kubeconfig.display()),
                format!("--controllers={}", controllers(options.node)),
                format!("--root-ca-file={}", ca_file.display()),
                "--leader-elect=false".into(),
                "--secure-port=0".into(),
                format!(
                    "--use-service-account-credentials={}",
                    options.per_controller_credentials
                ),
                "--concurrent-gc-syncs=5".into(),
            ];
            cp.start_controller_manager()?;
        }
        if options.node {
            let binaries = cp.binaries.node()?;
            let node = Node::start(
                &cp.path,
                &binaries,
                &cp.ca,
                &cp.server,
                node::Network::for_this_process(),
            );
            let node = node.await?;
            *cp.node_lock() = Some(node);
            cp.wait_node_ready().await?;
        }
        tracing::info!(server = %cp.server, dir = %cp.path.display(), elapsed = ?started.elapsed(), "control plane ready");
        Ok(cp)
    }

    /// The control plane shared by every test of this test binary, started on first use and
    /// stopped when the process exits. Tests must not interfere: use distinct names.
    pub async fn shared() -> Result<&'static ControlPlane, Error> {
        static SHARED: tokio::sync::OnceCell<ControlPlane> = tokio::sync::OnceCell::const_new();
        SHARED
            .get_or_try_init(|| async {
                let cp = ControlPlane::start(Options::default()).await?;
                stop_at_exit(|| {
                    if let Some(cp) = SHARED.get() {
                        cp.shutdown();
                    }
                });
                Ok(cp)
            })
            .await
    }

    /// The API server's URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Path of the admin kubeconfig (user in `system:masters`), for kubectl, helm and operators.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The control plane's working directory (certificates, logs, etcd data).
    pub fn dir(&self) -> &Path {
        &self.path
    }

    /// The binaries this control plane runs, with their versions.
    pub fn binaries(&self) -> &Binaries {
        &self.binaries
    }

    /// A new admin client. Create one per test: a client is tied to the Tokio runtime it was
    /// created on, and each `#[tokio::test]` has its own.
    pub async fn client(&self) -> Result<kube::Client, Error> {
        kubeconfig::client(&self.kubeconfig).await
    }

    /// A client identity for `user` in `groups` (a client certificate with CN and O), with its own
    /// kubeconfig file, to test what that user may do.
    pub fn user(&self, user: &str, groups: &[&str]) -> Result<User, Error> {
        let file = self
            .path
            .join(format!("user-{}.kubeconfig", sanitize(user)));
        let kubeconfig = kubeconfig::for_identity(&file, &self.server, &self.ca, user, groups)?;
        Ok(User {
            name: user.to_owned(),
            kubeconfig,
        })
    }

    /// A kubeconfig file named `name` that authenticates with a bearer `token` (for example a
    /// service account's token from the TokenRequest API).
    pub fn token_kubeconfig(&self, name: &str, token: &str) -> Result<PathBuf, Error> {
        let file = self
            .path
            .join(format!("token-{}.kubeconfig", sanitize(name)));
        kubeconfig::write(
            &file,
            &self.server,
            &self.ca.cert_pem(),
            Credentials::Token(token),
        )
    }

    /// `kubectl --kubeconfig <admin kubeconfig>`, with its discovery cache in this control plane's
    /// directory rather than the user's `~/.kube/cache`.
    pub fn kubectl(&self) -> std::process::Command {
        let mut command = std::process::Command::new(&self.binaries.kubectl);
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.path.join("kubectl-cache"));
        command
    }

    /// `helm`, with `KUBECONFIG` set and its cache, config and data directories in this control
    /// plane's directory, so tests never read or write the user's Helm setup.
    pub fn helm(&self) -> std::process::Command {
        let mut command = std::process::Command::new(&self.binaries.helm);
        command
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HELM_CACHE_HOME", self.path.join("helm/cache"))
            .env("HELM_CONFIG_HOME", self.path.join("helm/config"))
            .env("HELM_DATA_HOME", self.path.join("helm/data"));
        command
    }

    /// The process ids of the running components, by name.
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        let processes = self.lock();
        [
            &processes.etcd,
            &processes.apiserver,
            &processes.controller_manager,
        ]
        .into_iter()
        .flatten()
        .map(|p| (p.name(), p.pid()))
        .chain(self.node_lock().iter().flat_map(|n| n.pids()))
        .collect()
    }

    /// Stops kube-apiserver (SIGTERM), for outage tests; [`ControlPlane::start_apiserver`] brings
    /// it back on the same port with the same data.
    pub fn stop_apiserver(&self) {
        if let Some(mut apiserver) = self.lock().apiserver.take() {
            apiserver.stop(Duration::from_secs(10));
        }
    }

    /// Starts kube-apiserver (again) and waits until it is ready.
    pub async fn start_apiserver(&self) -> Result<(), Error> {
        let apiserver = self.spawn(
            "kube-apiserver",
            &self.binaries.kube_apiserver,
            &self.apiserver_args,
        )?;
        self.lock().apiserver = Some(apiserver);
        self.wait_ready().await
    }

    /// Stops etcd (SIGTERM), for outage tests; [`ControlPlane::start_etcd`] brings it back with
    /// the same data.
    pub fn stop_etcd(&self) {
        if let Some(mut etcd) = self.lock().etcd.take() {
            etcd.stop(Duration::from_secs(10));
        }
    }

    /// Starts etcd (again). The API server reconnects by itself.
    pub fn start_etcd(&self) -> Result<(), Error> {
        let etcd = self.spawn("etcd", &self.binaries.etcd, &self.etcd_args)?;
        self.lock().etcd = Some(etcd);
        Ok(())
    }

    /// Stops kube-controller-manager (SIGTERM), for outage tests: no garbage collection and no
    /// namespace deletion meanwhile; [`ControlPlane::start_controller_manager`] brings it back.
    pub fn stop_controller_manager(&self) {
        if let Some(mut kcm) = self.lock().controller_manager.take() {
            kcm.stop(Duration::from_secs(10));
        }
    }

    /// Starts kube-controller-manager (again); nothing when this control plane runs without it.
    pub fn start_controller_manager(&self) -> Result<(), Error> {
        if self.kcm_args.is_empty() || self.lock().controller_manager.is_some() {
            return Ok(());
        }
        let kcm = self.spawn(
            "kube-controller-manager",
            &self.binaries.kube_controller_manager,
            &self.kcm_args,
        )?;
        self.lock().controller_manager = Some(kcm);
        Ok(())
    }

    /// Stops every process and deletes the directory. Idempotent; also done on drop.
    pub fn shutdown(&self) {
        if let Some(mut node) = self.node_lock().take() {
            // Pods first, while the API server still answers the kubelet.
            node.shutdown();
        }
        self.lock().stop_all();
        let dir = self
            .dir
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(dir) = dir {
            let _ = dir.close();
        }
    }

    fn node_lock(&self) -> std::sync::MutexGuard<'_, Option<Node>> {
        self.node
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Imports an image tarball (docker-archive or OCI, e.g. from `make image`) into the node's
    /// containerd, so that pods run it without a registry.
    pub fn import_image(&self, tarball: &Path) -> Result<(), Error> {
        match self.node_lock().as_ref() {
            Some(node) => node.import_image(tarball),
            None => Err(Error::NodeUnavailable(
                "this control plane was started without a node (Options::node)".into(),
            )),
        }
    }

    /// The host pid of the node's running container `id` (see [`Node::container_pid`]).
    pub fn container_pid(&self, id: &str) -> Result<Option<u32>, Error> {
        match self.node_lock().as_ref() {
            Some(node) => node.container_pid(id),
            None => Ok(None),
        }
    }

    /// The last `lines` lines of the node's kubelet log, if there is a node.
    pub fn kubelet_log_tail(&self, lines: usize) -> Option<String> {
        self.node_lock().as_ref().map(|n| n.kubelet_log_tail(lines))
    }

    /// The node's directory (kubelet, containerd and their logs), if there is a node.
    pub fn node_dir(&self) -> Option<PathBuf> {
        self.node_lock().as_ref().map(|n| n.dir().to_owned())
    }

    /// Waits until the node is registered and Ready.
    async fn wait_node_ready(&self) -> Result<(), Error> {
        use k8s_openapi::api::core::v1::Node as NodeObject;
        let client = self.client().await?;
        let nodes: kube::Api<NodeObject> = kube::Api::all(client);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(node) = self.node_lock().as_mut() {
                node.check_alive()?;
            }
            let ready = nodes
                .get_opt(NODE_NAME)
                .await
                .ok()
                .flatten()
                .is_some_and(|n| {
                    n.status
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                });
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = self.kubelet_log_tail(30).unwrap_or_default();
                return Err(Error::NotReady {
                    component: "kubelet",
                    reason: format!("node {NODE_NAME} not Ready after 120 s"),
                    log,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Processes> {
        self.processes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn spawn(&self, name: &'static str, binary: &Path, args: &[String]) -> Result<Process, Error> {
        Process::start(name, binary, args, &self.path).map_err(io(format!("starting {name}")))
    }

    /// Polls `/readyz` with the admin identity until it answers `ok`, or fails with the log of
    /// whichever process died or the API server's own readiness report.
    async fn wait_ready(&self) -> Result<(), Error> {
        let client = self.client().await?;
        let deadline = Instant::now() + Duration::from_secs(120);
        let address = self.server.trim_start_matches("https://").to_owned();
        let mut listening = false;
        loop {
            {
                let mut processes = self.lock();
                let Processes {
                    etcd, apiserver, ..
                } = &mut *processes;
                for process in [etcd, apiserver].into_iter().flatten() {
                    if let Some(status) = process.exited() {
                        return Err(Error::NotReady {
                            component: process.name(),
                            reason: format!("exited with {status}"),
                            log: process.log_tail(30),
                        });
                    }
                }
            }
            // Wait for the port before asking over TLS, so the client does not log failed connects.
            listening = listening || tokio::net::TcpStream::connect(&address).await.is_ok();
            let last = if !listening {
                "not listening yet".to_owned()
            } else {
                match client.request_text(http_get("/readyz?verbose")).await {
                    Ok(body) if body.trim_end().ends_with("readyz check passed") => return Ok(()),
                    Ok(body) => body,
                    Err(e) => e.to_string(),
                }
            };
            if Instant::now() > deadline {
                let log = self
                    .lock()
                    .apiserver
                    .as_ref()
                    .map(|p| p.log_tail(30))
                    .unwrap_or_default();
                return Err(Error::NotReady {
                    component: "kube-apiserver",
                    reason: format!("not ready after 120s; last answer: {last}"),
                    log,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A client identity minted by [`ControlPlane::user`].
#[derive(Debug, Clone)]
pub struct User {
    /// The user name (certificate CN).
    pub name: String,
    /// A kubeconfig file authenticating as this user.
    pub kubeconfig: PathBuf,
}

impl User {
    /// A client authenticated as this user.
    pub async fn client(&self) -> Result<kube::Client, Error> {
        kubeconfig::client(&self.kubeconfig).await
    }
}

/// A client from any kubeconfig file (for example one from [`ControlPlane::token_kubeconfig`]).
pub async fn client_from_kubeconfig(file: &Path) -> Result<kube::Client, Error> {
    kubeconfig::client(file).await
}

/// The client configuration in any kubeconfig file, to build a client of one's own.
pub async fn config_from_kubeconfig(file: &Path) -> Result<kube::Config, Error> {
    kubeconfig::config(file).await
}

/// The kube-controller-manager controllers to run: the garbage collector and namespace deletion,
/// plus ClusterRole aggregation (without it the built-in admin/edit/view roles have no rules, and
/// RBAC's escalation check would let anyone bind them); with a node, also what Deployments and
/// their pods need.
fn controllers(node: bool) -> String {
    let mut controllers = vec![
        "garbage-collector-controller",
        "namespace-controller",
        "clusterrole-aggregation-controller",
    ];
    if node {
        controllers.extend([
            "deployment-controller",
            "replicaset-controller",
            "disruption-controller",
            "serviceaccount-controller",
            "root-ca-certificate-publisher-controller",
            "pod-garbage-collector-controller",
            "endpointslice-controller",
            // Takes the not-ready taint off the node once kubelet reports it Ready.
            "node-lifecycle-controller",
        ]);
    }
    controllers.join(",")
}

/// A GET request for a raw API path.
pub fn http_get(path: &str) -> http::Request<Vec<u8>> {
    let mut request = http::Request::new(Vec::new());
    *request.uri_mut() = http::Uri::try_from(path).unwrap_or_default();
    request
}

pub(crate) fn free_ports<const N: usize>() -> Result<[u16; N], Error> {
    // Hold every listener until all ports are chosen, so that no two are the same.
    let listeners = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io("choosing free ports"))?;
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener
            .local_addr()
            .map_err(io("choosing free ports"))?
            .port();
    }
    Ok(ports)
}

/// Each control plane's directory names the process that owns it.
const OWNER_FILE: &str = "owner.pid";

/// Removes the directories of control planes whose owning process is gone: a test process that
/// was killed runs no destructor (its children die with it through PDEATHSIG, but the directory
/// stays). Directories without an owner file, or of a live owner, are left alone.
pub fn sweep_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_ours = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("groupbinder-testenv-"));
        let owner = std::fs::read_to_string(path.join(OWNER_FILE))
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok());
        if let (true, Some(pid)) = (is_ours, owner)
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            tracing::debug!(dir = %path.display(), pid, "removing the directory of a control plane whose process is gone");
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Runs `f` when the process exits normally (the test harness returns from `main`).
fn stop_at_exit(f: fn()) {
    static HOOK: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();
    extern "C" fn run() {
        if let Some(f) = HOOK.get() {
            f();
        }
    }
    if HOOK.set(f).is_ok() {
        register_atexit(run);
    }
}

#[allow(unsafe_code)] // atexit(3) has no safe wrapper; the handler only stops processes
fn register_atexit(handler: extern "C" fn()) {
    // SAFETY: `handler` is a plain function that does not unwind across the FFI boundary
    // (everything it calls handles errors by ignoring them).
    unsafe {
        libc::atexit(handler);
    }
}
