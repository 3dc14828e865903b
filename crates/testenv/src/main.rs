//! `groupbinder-testenv up`: keeps a local control plane running until Ctrl-C.

use clap::{Parser, Subcommand};
use groupbinder_testenv::{ControlPlane, Options};

#[derive(Parser)]
#[command(
    about = "A local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a control plane, print how to use it, and run until Ctrl-C or SIGTERM.
    Up {
        /// Also start a node (containerd, kubelet, kube-scheduler) so that pods run; needs root
        /// and `make node-deps`.
        #[arg(long)]
        node: bool,
        /// With --node: image tarballs (e.g. from `make image`) to import into the node.
        #[arg(long = "image", requires = "node")]
        images: Vec<std::path::PathBuf>,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube_client::client::builder=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let Cli {
        command: Command::Up { node, images },
    } = Cli::parse();
    let options = Options {
        node,
        ..Options::default()
    };
    let cp = match ControlPlane::start(options).await {
        Ok(cp) => cp,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    for image in &images {
        if let Err(e) = cp.import_image(image) {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    let bins = cp.binaries();
    println!(
        "Kubernetes {} is up at {}",
        bins.versions.kubernetes,
        cp.server()
    );
    println!("kubeconfig: {}", cp.kubeconfig().display());
    if let Some(dir) = cp.node_dir() {
        println!(
            "node {} is Ready (logs and state in {})",
            groupbinder_testenv::NODE_NAME,
            dir.display()
        );
    }
    println!("export KUBECONFIG={}", cp.kubeconfig().display());
    println!(
        "export PATH={}:$PATH   # kubectl and helm of the same version",
        bins.dir.display()
    );
    println!("Press Ctrl-C to stop; everything is deleted on exit.");
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    eprintln!("stopping");
    cp.shutdown();
    std::process::ExitCode::SUCCESS
}
