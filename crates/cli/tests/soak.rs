//! The short soak of `make test`: a fixed set of seeds, a minute in all, with the real binary
//! on the real control plane (`groupbinder_e2e::soak`; `make soak` runs a long one). Every
//! violation of the model fails the test and names its seed and step; the operator's log and
//! the trace of each seed stay in `target/tmp/soak/`.

use std::time::Duration;

use groupbinder_e2e::soak::{Options, run};
use groupbinder_testenv::ControlPlane;

/// Seeds that once exposed a bug stay here as regression tests.
const SEEDS: [u64; 3] = [1, 2, 3];

#[tokio::test]
async fn a_random_history_with_faults_keeps_every_guarantee() -> anyhow::Result<()> {
    let cp = ControlPlane::shared().await?;
    let client = cp.client().await?;
    groupbinder_e2e::install_crd(&client).await?;
    let mut failed = Vec::new();
    for seed in SEEDS {
        let options = Options {
            binary: env!("CARGO_BIN_EXE_groupbinder").into(),
            seed,
            duration: Duration::from_secs(20),
            revoke_bound: Duration::from_secs(30),
            converge_bound: Duration::from_secs(60),
            log_level: "warn".to_owned(),
        };
        // Kept after the run (with the trace beside it), for a failure to be read.
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("soak");
        std::fs::create_dir_all(&dir)?;
        let log = dir.join(format!("seed-{seed}.log"));
        let _ = std::fs::remove_file(&log);
        let _ = std::fs::remove_file(log.with_extension("trace"));
        let report = run(cp, log, &options).await?;
        eprint!("{report}");
        if !report.violations.is_empty() {
            failed.push(report.to_string());
        }
    }
    assert!(failed.is_empty(), "{}", failed.join(""));
    Ok(())
}
