//! `groupbinder plan` reads what `kubectl get agb -o yaml` prints: a List, from a file or from
//! standard input, as every command reads manifests (one reader). No cluster involved.

use std::io::Write;
use std::process::{Command, Stdio};

/// Two AzureGroupBindings as `kubectl get agb -o yaml` prints them: a List, with server fields.
const LIST: &str = r#"apiVersion: v1
kind: List
metadata:
  resourceVersion: ""
items:
- apiVersion: groupbinder.dev/v1alpha1
  kind: AzureGroupBinding
  metadata:
    name: k10-admins
    uid: 0b8f2b1e-1f5e-4c0a-9b61-2c4d8e0f7a13
    resourceVersion: "42"
  spec:
    groupObjectId: a318b1eb-8b78-4715-98ad-ffc8670ac79d
  status:
    conditions: []
- apiVersion: groupbinder.dev/v1alpha1
  kind: AzureGroupBinding
  metadata:
    name: shop
  spec:
    groupObjectId: 5b1e7c9a-3f2d-4e8b-9a61-2c4d8e0f7a13
    clusterRoles: [k10-config-view]
"#;

fn plan(file: Option<&std::path::Path>) -> anyhow::Result<std::process::Output> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_groupbinder"));
    command
        .args(["plan", "--default-group-prefix", "michael_azure_", "-f"])
        .arg(file.unwrap_or(std::path::Path::new("-")))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn()?;
    if let (Some(mut stdin), None) = (child.stdin.take(), file) {
        stdin.write_all(LIST.as_bytes())?;
    }
    Ok(child.wait_with_output()?)
}

#[test]
fn plan_reads_a_list_from_a_file_and_from_standard_input() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("agbs.yaml");
    std::fs::write(&file, LIST)?;
    for source in [Some(file.as_path()), None] {
        let out = plan(source)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{source:?}: {stderr}");
        let bindings: Vec<serde_json::Value> = serde_saphyr::from_str_multiple(&stdout)?;
        let mut names: Vec<&str> = bindings
            .iter()
            .filter_map(|b| b["metadata"]["name"].as_str())
            .collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "k10-admins:k10-admin",
                "k10-admins:k10-ns-admin",
                "shop:k10-config-view",
            ],
            "{source:?}: {stdout}"
        );
    }
    Ok(())
}
