//! `tools/image.sh` builds the image the `Dockerfile` describes: one layer with the binary where
//! the `COPY` puts it, and the `USER`, `EXPOSE`, `ENTRYPOINT` and `CMD` of its final stage, the same
//! bytes every time. (`make test-node` runs that image on a real node.)

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `tools/image.sh` for `dockerfile` on a small stand-in binary, into `out`.
fn build(dockerfile: &Path, out: &Path) -> std::process::Output {
    let dir = out.parent().expect("a file in a directory");
    let binary = dir.join("binary");
    std::fs::write(&binary, b"#!/bin/sh\necho stand-in\n").expect("writing the stand-in");
    Command::new(repo().join("tools/image.sh"))
        .arg(dockerfile)
        .arg(&binary)
        .arg("ghcr.io/groupbinder/groupbinder:test")
        .arg(out)
        .output()
        .expect("running tools/image.sh")
}

fn list(tarball: &Path, member: Option<&str>) -> String {
    let mut command = Command::new("tar");
    match member {
        Some(m) => command.arg("-xOf").arg(tarball).arg(m),
        None => command.arg("-tvf").arg(tarball),
    };
    let out = command.output().expect("running tar");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_image_is_what_the_dockerfile_says_and_reproducible() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (first, second) = (dir.path().join("a.tar"), dir.path().join("b.tar"));
    for out in [&first, &second] {
        let run = build(&repo().join("Dockerfile"), out);
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
    }
    assert_eq!(
        std::fs::read(&first).expect("first"),
        std::fs::read(&second).expect("second"),
        "two builds of the same binary differ"
    );

    let manifest: serde_json::Value =
        serde_json::from_str(&list(&first, Some("./manifest.json"))).expect("manifest.json");
    let entry = &manifest[0];
    assert_eq!(
        entry["RepoTags"],
        serde_json::json!(["ghcr.io/groupbinder/groupbinder:test"])
    );
    let config_name = entry["Config"].as_str().expect("Config");
    let config: serde_json::Value =
        serde_json::from_str(&list(&first, Some(&format!("./{config_name}")))).expect("config");
    let c = &config["config"];
    assert_eq!(c["User"], "65532:65532");
    assert_eq!(c["Entrypoint"], serde_json::json!(["/groupbinder"]));
    assert_eq!(c["Cmd"], serde_json::json!(["run"]));
    assert_eq!(c["ExposedPorts"], serde_json::json!({"8080/tcp": {}}));
    assert_eq!(config["os"], "linux");

    // One layer: the binary at /groupbinder, executable, owned by root (read-only to 65532).
    let layers = entry["Layers"].as_array().expect("Layers");
    assert_eq!(layers.len(), 1);
    let layer = dir.path().join("layer.tar");
    std::fs::write(
        &layer,
        Command::new("tar")
            .arg("-xOf")
            .arg(&first)
            .arg(format!("./{}", layers[0].as_str().expect("a layer path")))
            .output()
            .expect("tar")
            .stdout,
    )
    .expect("writing the layer");
    let files = list(&layer, None);
    let binary = files
        .lines()
        .find(|l| l.ends_with(" ./groupbinder"))
        .unwrap_or_else(|| panic!("no ./groupbinder in the layer:\n{files}"));
    assert!(binary.starts_with("-rwxr-xr-x 0/0"), "{binary}");
}

#[test]
fn a_dockerfile_whose_final_stage_is_not_scratch_is_refused() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let dockerfile = dir.path().join("Dockerfile");
    std::fs::write(
        &dockerfile,
        "FROM debian:12\nCOPY x /x\nUSER 1:1\nENTRYPOINT [\"/x\"]\nCMD []\n",
    )
    .expect("writing the Dockerfile");
    let run = build(&dockerfile, &dir.path().join("out.tar"));
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("must be FROM scratch"), "{stderr}");
    assert!(!dir.path().join("out.tar").exists());
}
