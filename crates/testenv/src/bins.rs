//! Where the control-plane binaries are: the cache that `tools/build-control-plane.sh` fills.

use std::path::{Path, PathBuf};

use crate::Error;

/// The pinned versions, from `tools/versions.env` (the build script reads the same file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versions {
    /// Kubernetes (kube-apiserver, kube-controller-manager, kubectl), e.g. `v1.36.3`.
    pub kubernetes: String,
    /// etcd, e.g. `v3.6.16`.
    pub etcd: String,
    /// Helm, e.g. `v3.22.0`.
    pub helm: String,
    /// Prometheus, whose promtool checks the chart's alerts, e.g. `v0.316.0`.
    pub prometheus: String,
    /// actionlint, which checks the release workflow, e.g. `v1.7.12`.
    pub actionlint: String,
    /// Kyverno, run beside groupbinder by the benchmark only, e.g. `v1.19.1`.
    pub kyverno: String,
}

impl Versions {
    /// The versions this crate was built against.
    pub fn pinned() -> Self {
        let env = include_str!("../../../tools/versions.env");
        let get = |key: &str| {
            env.lines()
                .filter_map(|line| line.split_once('='))
                .find(|(k, _)| k.trim() == key)
                .map(|(_, v)| v.trim().to_owned())
                .unwrap_or_default()
        };
        Versions {
            kubernetes: get("KUBERNETES_VERSION"),
            etcd: get("ETCD_VERSION"),
            helm: get("HELM_VERSION"),
            prometheus: get("PROMETHEUS_VERSION"),
            actionlint: get("ACTIONLINT_VERSION"),
            kyverno: get("KYVERNO_VERSION"),
        }
    }
}

/// Paths of the control-plane binaries.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// Directory holding them.
    pub dir: PathBuf,
    /// etcd.
    pub etcd: PathBuf,
    /// kube-apiserver.
    pub kube_apiserver: PathBuf,
    /// kube-controller-manager.
    pub kube_controller_manager: PathBuf,
    /// kubectl.
    pub kubectl: PathBuf,
    /// helm.
    pub helm: PathBuf,
    /// Their versions.
    pub versions: Versions,
}

impl Binaries {
    /// The directory the build script writes for the pinned versions: `$GROUPBINDER_BIN_DIR`, or
    /// `<cache>/bin/k8s-<v>-etcd-<v>-helm-<v>` with `<cache>` being `$GROUPBINDER_CACHE`, else
    /// `$XDG_CACHE_HOME/groupbinder`, else `~/.cache/groupbinder`.
    pub fn default_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("GROUPBINDER_BIN_DIR") {
            return dir.into();
        }
        let cache = std::env::var_os("GROUPBINDER_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                std::env::var_os("XDG_CACHE_HOME")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| {
                        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
                    })
                    .join("groupbinder")
            });
        let v = Versions::pinned();
        cache.join("bin").join(format!(
            "k8s-{}-etcd-{}-helm-{}",
            v.kubernetes, v.etcd, v.helm
        ))
    }

    /// The node's binaries (kubelet, kube-scheduler, the pause image), or how to build them.
    pub(crate) fn node(&self) -> Result<crate::node::NodeBinaries, Error> {
        let find = |binary| built(&self.dir, binary);
        Ok(crate::node::NodeBinaries {
            kubelet: find("kubelet")?,
            kube_scheduler: find("kube-scheduler")?,
            pause_image: find("pause.tar")?,
        })
    }

    /// promtool, built beside the control plane with its version in its name.
    pub fn promtool(&self) -> Result<PathBuf, Error> {
        built(&self.dir, &format!("promtool-{}", self.versions.prometheus))
    }

    /// actionlint, built beside the control plane with its version in its name.
    pub fn actionlint(&self) -> Result<PathBuf, Error> {
        built(
            &self.dir,
            &format!("actionlint-{}", self.versions.actionlint),
        )
    }

    /// Finds every binary, or says how to build them.
    pub fn locate() -> Result<Self, Error> {
        let dir = Self::default_dir();
        let find = |binary| built(&dir, binary);
        Ok(Binaries {
            etcd: find("etcd")?,
            kube_apiserver: find("kube-apiserver")?,
            kube_controller_manager: find("kube-controller-manager")?,
            kubectl: find("kubectl")?,
            helm: find("helm")?,
            versions: Versions::pinned(),
            dir,
        })
    }
}

/// `dir/binary` if the build script made it, or which one is missing and where.
fn built(dir: &Path, binary: &str) -> Result<PathBuf, Error> {
    let path = dir.join(binary);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::MissingBinary {
            binary: binary.to_owned(),
            dir: dir.to_owned(),
        })
    }
}
