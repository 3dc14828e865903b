//! `tools/image.sh` builds the image the `Dockerfile` describes: one layer with the binary where
//! the `COPY` puts it, and the `USER`, `EXPOSE`, `ENTRYPOINT` and `CMD` of its final stage, the same
//! bytes every time. (`make test-node` runs that image on a real node.)

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `tools/image.sh` for `dockerfile` on a small stand-in binary, into `out`.
fn build(dockerfile: &Path, out: &Path) -> anyhow::Result<std::process::Output> {
    let dir = out
        .parent()
        .ok_or_else(|| anyhow::anyhow!("{} is in no directory", out.display()))?;
    let binary = dir.join("binary");
    std::fs::write(&binary, b"#!/bin/sh\necho stand-in\n")?;
    Ok(Command::new(repo().join("tools/image.sh"))
        .arg(dockerfile)
        .arg(&binary)
        .arg("ghcr.io/groupbinder/groupbinder:test")
        .arg(out)
        .output()?)
}

/// The listing of `tarball` (`tar -tv`), or with `member` that member's contents.
fn tar(tarball: &Path, member: Option<&str>) -> anyhow::Result<String> {
    let mut command = Command::new("tar");
    match member {
        Some(m) => command.arg("-xOf").arg(tarball).arg(m),
        None => command.arg("-tvf").arg(tarball),
    };
    let out = command.output()?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn the_image_is_what_the_dockerfile_says_and_reproducible() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (first, second) = (dir.path().join("a.tar"), dir.path().join("b.tar"));
    for out in [&first, &second] {
        let run = build(&repo().join("Dockerfile"), out)?;
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
    }
    assert_eq!(
        std::fs::read(&first)?,
        std::fs::read(&second)?,
        "two builds of the same binary differ"
    );

    let manifest: serde_json::Value = serde_json::from_str(&tar(&first, Some("./manifest.json"))?)?;
    let entry = &manifest[0];
    assert_eq!(
        entry["RepoTags"],
        serde_json::json!(["ghcr.io/groupbinder/groupbinder:test"])
    );
    let config_name = entry["Config"].as_str().unwrap_or_default();
    let config: serde_json::Value =
        serde_json::from_str(&tar(&first, Some(&format!("./{config_name}")))?)?;
    let c = &config["config"];
    assert_eq!(c["User"], "65532:65532");
    assert_eq!(c["Entrypoint"], serde_json::json!(["/groupbinder"]));
    assert_eq!(c["Cmd"], serde_json::json!(["run"]));
    assert_eq!(c["ExposedPorts"], serde_json::json!({"8080/tcp": {}}));
    assert_eq!(config["os"], "linux");

    // One layer: the binary at /groupbinder, executable, owned by root (read-only to 65532).
    let layers = entry["Layers"].as_array().cloned().unwrap_or_default();
    assert_eq!(layers.len(), 1, "{layers:?}");
    let layer = dir.path().join("layer.tar");
    let path = format!("./{}", layers[0].as_str().unwrap_or_default());
    let contents = Command::new("tar")
        .arg("-xOf")
        .arg(&first)
        .arg(path)
        .output()?
        .stdout;
    std::fs::write(&layer, contents)?;
    let files = tar(&layer, None)?;
    let binary = files.lines().find(|l| l.ends_with(" ./groupbinder"));
    let binary = binary.ok_or_else(|| anyhow::anyhow!("no ./groupbinder in:\n{files}"))?;
    assert!(binary.starts_with("-rwxr-xr-x 0/0"), "{binary}");
    Ok(())
}

#[test]
fn a_dockerfile_whose_final_stage_is_not_scratch_is_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let dockerfile = dir.path().join("Dockerfile");
    std::fs::write(
        &dockerfile,
        "FROM debian:12\nCOPY x /x\nUSER 1:1\nENTRYPOINT [\"/x\"]\nCMD []\n",
    )?;
    let run = build(&dockerfile, &dir.path().join("out.tar"))?;
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("must be FROM scratch"), "{stderr}");
    assert!(!dir.path().join("out.tar").exists());
    Ok(())
}

/// The release workflow (`.github/workflows/release.yml`) passes actionlint, which would refuse
/// a broken one; and the versions a release tag must match agree already.
#[test]
fn the_release_workflow_passes_actionlint() -> anyhow::Result<()> {
    let actionlint = groupbinder_testenv::Binaries::locate()?.actionlint()?;
    let workflow = repo().join(".github/workflows/release.yml");
    let lint = |file: &Path| {
        Command::new(&actionlint)
            .arg("-no-color")
            .arg(file)
            .output()
    };
    let out = lint(&workflow)?;
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The linter does look: a step output that does not exist is refused.
    let dir = tempfile::tempdir()?;
    let broken = dir.path().join("release.yml");
    let text = std::fs::read_to_string(&workflow)?;
    std::fs::write(
        &broken,
        text.replace("steps.image.outputs.digest", "steps.nothing.outputs.digest"),
    )?;
    assert!(
        !lint(&broken)?.status.success(),
        "actionlint let a broken workflow pass"
    );
    // What the workflow checks at release time, checked now: one version everywhere.
    let chart = std::fs::read_to_string(repo().join("charts/groupbinder/Chart.yaml"))?;
    for key in ["version: ", "appVersion: "] {
        let found = chart
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().trim_matches('"'));
        assert_eq!(found, Some(env!("CARGO_PKG_VERSION")), "Chart.yaml {key}");
    }
    Ok(())
}
