//! `make soak SOAK_MINUTES=30 [SOAK_SEED=n]`: the randomized soak of `groupbinder_e2e::soak`, as
//! long as asked, on a control plane of its own, with the release binary beside this one. Prints
//! what it did, the worst delays and every violation with its seed and step; exits 1 on any.
//! The operator's log and a trace of every step (with the world the model saw) stay in
//! `target/soak/`.

use std::process::ExitCode;
use std::time::Duration;

use groupbinder_e2e::soak::{Options, run};
use groupbinder_testenv::ControlPlane;

fn number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let minutes = number("SOAK_MINUTES").unwrap_or(30);
    let seed = number("SOAK_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
    });
    let cp = ControlPlane::start(groupbinder_testenv::Options::default()).await?;
    let client = cp.client().await?;
    groupbinder_e2e::install_crd(&client).await?;
    let options = Options {
        binary: std::env::current_exe()?.with_file_name("groupbinder"),
        seed,
        duration: Duration::from_secs(minutes * 60),
        revoke_bound: Duration::from_secs(30),
        converge_bound: Duration::from_secs(60),
        log_level: std::env::var("SOAK_LOG_LEVEL").unwrap_or_else(|_| "warn".to_owned()),
    };
    println!("groupbinder soak: seed {seed}, {minutes} minutes (SOAK_SEED={seed} repeats it)");
    // Kept after the control plane's directory is gone: the operator's log and the trace.
    let dir = std::path::Path::new("target/soak");
    std::fs::create_dir_all(dir)?;
    let log = dir.join(format!("seed-{seed}.log"));
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_file(log.with_extension("trace"));
    println!(
        "operator log {}, trace {}",
        log.display(),
        log.with_extension("trace").display()
    );
    let report = run(&cp, log, &options).await?;
    print!("{report}");
    cp.shutdown();
    Ok(if report.violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
