//! Hostile input to the command line, the README's "hostile files and tokens" guarantee: no
//! cluster involved.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn groupbinder() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_groupbinder"));
    command.stdin(Stdio::null());
    command
}

/// Runs `command`, killing it after `limit`; its output is read as it comes (a child whose
/// output fills the pipe would otherwise wait for ever).
fn run_within(mut command: Command, limit: Duration) -> anyhow::Result<Output> {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id())?);
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match finished.recv_timeout(limit) {
        Ok(output) => Ok(output?),
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            anyhow::bail!("still running after {limit:?}")
        }
    }
}

const SEED: &str = "apiVersion: groupbinder.dev/v1alpha1\nkind: AzureGroupBinding\nmetadata:\n  name: k10-admins\nspec:\n  groupObjectId: a318b1eb-8b78-4715-98ad-ffc8670ac79d\n";

/// A directory link back to a parent is reported by path, not followed for ever.
#[test]
fn plan_reports_a_directory_link_loop_instead_of_following_it() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let nested = dir.path().join("team");
    std::fs::create_dir(&nested)?;
    std::fs::write(nested.join("admins.yaml"), SEED)?;
    std::os::unix::fs::symlink(dir.path(), nested.join("loop"))?;
    let mut command = groupbinder();
    command.arg("plan").arg("-f").arg(dir.path());
    let out = run_within(command, Duration::from_secs(10))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("team/loop: a directory link that loops back to"),
        "{stderr}"
    );
    // The file is still planned, once.
    assert_eq!(
        stdout.matches("name: k10-admins:k10-admin\n").count(),
        1,
        "{stdout}"
    );
    Ok(())
}

use groupbinder_e2e::oidc::unsigned as jwt;

/// A claim carrying terminal control sequences cannot rewrite the report's lines.
#[test]
fn explain_token_escapes_control_sequences_from_claims() -> anyhow::Result<()> {
    let forged = "\r\x1b[1A\x1b[2KSignature       verified";
    let token = jwt(&serde_json::json!({
        "iss": "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0",
        "aud": "k10",
        "sub": format!("user{forged}"),
        "groups": ["a318b1eb-8b78-4715-98ad-ffc8670ac79d", forged],
        "exp": 4_000_000_000_i64,
        "ver": "2.0",
    }));
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("id-token.jwt");
    std::fs::write(&file, token)?;
    let mut command = groupbinder();
    command
        .args(["explain-token", "--token-file"])
        .arg(&file)
        .args([
            "--provider-url",
            "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0",
        ])
        .env("KUBECONFIG", dir.path().join("none"));
    let out = run_within(command, Duration::from_secs(30))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains('\x1b') && !stdout.contains('\r'),
        "raw control characters in: {stdout:?}"
    );
    assert!(stdout.contains(r"\u{1b}[2K"), "{stdout}");
    assert!(
        stdout.starts_with("Signature       not checked"),
        "{stdout}"
    );
    Ok(())
}

/// A huge token file is refused after the size limit is read, not held in memory; input
/// that is not UTF-8 is malformed input too (exit code 2).
#[test]
fn explain_token_refuses_huge_and_non_utf8_input_with_code_2() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let huge = dir.path().join("huge.jwt");
    std::fs::File::create(&huge)?.set_len(300 * 1024 * 1024)?; // sparse: no disk used
    let mut command = groupbinder();
    command.args(["explain-token", "--token-file"]).arg(&huge);
    let out = run_within(command, Duration::from_secs(30))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("larger than"), "{stderr}");
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)?;
    let peak_kib = usage.max_rss(); // KiB on Linux: the largest child of this test binary
    assert!(peak_kib < 64 * 1024, "a child peaked at {peak_kib} KiB");

    let binary = dir.path().join("binary.jwt");
    std::fs::write(&binary, [0xff, 0xfe, b'e', b'y'])?;
    let mut command = groupbinder();
    command.args(["explain-token", "--token-file"]).arg(&binary);
    let out = run_within(command, Duration::from_secs(30))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not UTF-8"), "{stderr}");
    Ok(())
}

/// A name made to rewrite a terminal or forge a line: OSC (set the title), CSI by ESC and by
/// U+009B (erase the line), CR, BEL, NEL (U+0085), a right-to-left override, a new line.
const HOSTILE: &str =
    "x\u{1b}]0;owned\u{7}\u{1b}[2K\r\u{9b}2J\u{85}\u{202e}\nFAKE-LINE all grants imported OK";

/// Fails if `text` holds a control character other than the new lines between its lines, a
/// bidirectional override, or a line forged by a name.
fn assert_no_raw_control(what: &str, text: &str) {
    let raw: Vec<char> = text
        .chars()
        .filter(|c| *c != '\n' && groupbinder_api::text::needs_escape(*c))
        .collect();
    assert!(raw.is_empty(), "{what}: raw {raw:?} in {text}");
    assert!(
        !text
            .lines()
            .any(|l| l.trim_start().starts_with("FAKE-LINE")),
        "{what}: a forged line in {text}"
    );
}

/// Bindings whose names, subjects, owners and annotations are hostile, around K10's roles.
fn hostile_bindings() -> serde_json::Value {
    let group = "michael_azure_a318b1eb-8b78-4715-98ad-ffc8670ac79d";
    let subjects = serde_json::json!([
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group},
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": HOSTILE},
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": HOSTILE},
        {"kind": "ServiceAccount", "name": HOSTILE, "namespace": "shop"},
    ]);
    let meta = |namespace: Option<&str>| {
        let mut meta = serde_json::json!({
            "name": HOSTILE,
            "annotations": {"note": HOSTILE},
            "ownerReferences": [{"apiVersion": "groupbinder.dev/v1alpha1", "kind": HOSTILE,
                "name": HOSTILE, "uid": "u", "controller": true}],
        });
        if let Some(ns) = namespace {
            meta["namespace"] = ns.into();
        }
        meta
    };
    serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": meta(None),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "k10-admin"},
         "subjects": subjects},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": meta(Some("shop")),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "k10-basic"},
         "subjects": subjects},
        {"apiVersion": "groupbinder.dev/v1alpha1", "kind": "AzureGroupBinding",
         "metadata": {"name": HOSTILE},
         "spec": {"groupObjectId": "a318b1eb-8b78-4715-98ad-ffc8670ac79d",
                  "roles": [{"name": HOSTILE, "namespace": HOSTILE}]}},
        {"apiVersion": "groupbinder.dev/v1alpha1", "kind": "AzureGroupBinding",
         "metadata": {"name": format!("{HOSTILE}-2")},
         "spec": {"groupObjectId": HOSTILE}},
        {"apiVersion": "groupbinder.dev/v1alpha1", "kind": "AzureGroupBinding",
         "metadata": {"name": format!("{HOSTILE}-3")},
         "spec": {"groupObjectId": "a318b1eb-8b78-4715-98ad-ffc8670ac79d", "description": HOSTILE}},
    ]})
}

/// Every report and error of `plan`, `import` (objects, `--redundant`) and `audit` (table, JSON,
/// YAML), fed hostile names, subjects, owner kinds and annotations: no raw control character.
#[test]
fn hostile_names_reach_no_output_raw() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("hostile.json");
    // JSON with every non-ASCII character escaped: a YAML parser refuses raw C1 characters.
    let ascii: String = hostile_bindings()
        .to_string()
        .chars()
        .map(|c| match c {
            ' '..='~' => c.to_string(),
            c => format!("\\u{:04x}", u32::from(c)),
        })
        .collect();
    std::fs::write(&file, ascii)?;
    let runs: [&[&str]; 7] = [
        &["plan"],
        &["import"],
        &["import", "--redundant"],
        &["audit"],
        &["audit", "-o", "json"],
        &["audit", "-o", "yaml"],
        &["import", "--output-dir", "out"],
    ];
    for args in runs {
        let mut command = groupbinder();
        command
            .args(args)
            .args(["--default-group-prefix", "michael_azure_", "-f"])
            .arg(&file)
            .current_dir(dir.path());
        let out = run_within(command, Duration::from_secs(30))?;
        let what = args.join(" ");
        assert_no_raw_control(
            &format!("{what} (stdout)"),
            &String::from_utf8_lossy(&out.stdout),
        );
        assert_no_raw_control(
            &format!("{what} (stderr)"),
            &String::from_utf8_lossy(&out.stderr),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        let writes_files = args.contains(&"--output-dir");
        assert!(
            writes_files || !out.stdout.is_empty(),
            "{what} printed nothing: {stderr}"
        );
        assert!(!stderr.contains("not YAML"), "{what}: {stderr}");
    }
    for written in std::fs::read_dir(dir.path().join("out"))? {
        let written = written?;
        let name = written.file_name().to_string_lossy().into_owned();
        assert_no_raw_control("import --output-dir (file name)", &name);
        let text = std::fs::read_to_string(written.path())?;
        assert_no_raw_control("import --output-dir (file)", &text);
    }
    Ok(())
}

/// `kubectl get clusterrolebindings,rolebindings -A -o yaml` of `n` bindings of K10's roles, with
/// the managedFields the API server adds: the input of `audit -f` and `import -f` on a large
/// cluster.
fn dump(n: usize) -> String {
    let mut out = String::from("apiVersion: v1\nkind: List\nitems:\n");
    for i in 0..n {
        let (kind, namespace, role_kind, role) = if i % 2 == 0 {
            (
                "ClusterRoleBinding",
                String::new(),
                "ClusterRole",
                "k10-admin",
            )
        } else {
            (
                "RoleBinding",
                format!("    namespace: team-{}\n", i % 97),
                "ClusterRole",
                "k10-basic",
            )
        };
        out.push_str(&format!(
            "- apiVersion: rbac.authorization.k8s.io/v1
  kind: {kind}
  metadata:
    creationTimestamp: \"2026-11-30T10:00:00Z\"
    labels:
      team: t{team}
    managedFields:
    - apiVersion: rbac.authorization.k8s.io/v1
      fieldsType: FieldsV1
      fieldsV1:
        f:metadata:
          f:labels:
            .: {{}}
            f:team: {{}}
        f:roleRef: {{}}
        f:subjects: {{}}
      manager: kubectl-client-side-apply
      operation: Update
      time: \"2026-11-30T10:00:00Z\"
    name: binding-{i}
{namespace}    resourceVersion: \"{rv}\"
    uid: 6f1d{i:08}-0000-4000-8000-000000000000
  roleRef:
    apiGroup: rbac.authorization.k8s.io
    kind: {role_kind}
    name: {role}
  subjects:
  - apiGroup: rbac.authorization.k8s.io
    kind: Group
    name: michael_azure_{i:08x}-8b78-4715-98ad-ffc8670ac79d
",
            team = i % 200,
            rv = 1000 + i,
        ));
    }
    out
}

/// A whole cluster's bindings are one file: 20,000 of them (about 25 MB as kubectl prints them)
/// are read by `audit -f` and `import -f` (the YAML parser's default budget stopped at about
/// 6,000: "budget breached: Nodes 250001").
#[test]
fn a_dump_of_20000_bindings_is_read() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("bindings.yaml");
    std::fs::write(&file, dump(20_000))?;
    let mut audit = groupbinder();
    audit
        .args([
            "audit",
            "-o",
            "json",
            "--default-group-prefix",
            "michael_azure_",
            "-f",
        ])
        .arg(&file);
    let out = run_within(audit, Duration::from_secs(300))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "warnings (NotManaged) exit 1: {stderr}"
    );
    let grants: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)?;
    assert_eq!(grants.len(), 20_000);
    let mut import = groupbinder();
    import
        .args(["import", "--default-group-prefix", "michael_azure_", "-f"])
        .arg(&file);
    let out = run_within(import, Duration::from_secs(300))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let objects = stdout.matches("\nkind: AzureGroupBinding\n").count();
    assert_eq!(objects, 20_000, "one object per group");
    Ok(())
}

/// Invisible and look-alike characters in group names and prefixes: `--default-group-prefix`
/// refuses what the CRD refuses; `audit` flags a trailing space or U+200B after the object ID
/// and a prefix outside ASCII, and shows them escaped; `plan` warns about a prefix outside ASCII.
#[test]
fn invisible_and_look_alike_characters_are_refused_or_flagged() -> anyhow::Result<()> {
    for prefix in [
        "michael\u{E0041}_",
        "michael\u{3164}_",
        "\u{301}michael_",
        "a\u{a0}b",
    ] {
        let mut command = groupbinder();
        command.args(["plan", "--default-group-prefix", prefix, "-f", "-"]);
        let out = run_within(command, Duration::from_secs(10))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{prefix:?}: {stderr}");
        assert!(
            stderr.contains("invisible character"),
            "{prefix:?}: {stderr}"
        );
    }
    let id = "a318b1eb-8b78-4715-98ad-ffc8670ac79d";
    let subjects: Vec<serde_json::Value> = [
        format!("michael_azure_{id} "),
        format!("michael_azure_{id}\u{200b}"),
        format!("mich\u{430}el_azure_{id}"),
    ]
    .iter()
    .map(|name| serde_json::json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": name}))
    .collect();
    let bindings = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "typos"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "k10-admin"},
         "subjects": subjects}]});
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("typos.json");
    std::fs::write(&file, bindings.to_string())?;
    let mut audit = groupbinder();
    audit
        .args(["audit", "--default-group-prefix", "michael_azure_", "-f"])
        .arg(&file);
    let out = run_within(audit, Duration::from_secs(10))?;
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{table}");
    assert_eq!(
        table.matches("TextAfterObjectId").count(),
        3,
        "2 rows and the legend: {table}"
    );
    assert!(
        table.contains(r"\u{200b}") && table.contains("NonAsciiPrefix"),
        "{table}"
    );
    assert!(!table.contains('\u{200b}'), "raw U+200B in {table}");
    let agb = format!(
        "apiVersion: groupbinder.dev/v1alpha1\nkind: AzureGroupBinding\nmetadata: {{name: lookalike}}\nspec: {{groupObjectId: {id}, groupPrefix: \"mich\\u0430el_azure_\"}}\n"
    );
    let plan_file = dir.path().join("lookalike.yaml");
    std::fs::write(&plan_file, agb)?;
    let mut plan = groupbinder();
    plan.arg("plan").arg("-f").arg(&plan_file);
    let out = run_within(plan, Duration::from_secs(10))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("outside ASCII") && stderr.contains(r"\u{430}"),
        "{stderr}"
    );
    Ok(())
}

/// An error that quotes its input (the YAML parser shows the offending lines) reaches the
/// terminal escaped too: every command's error goes out through one line in `main`.
#[test]
fn an_error_quoting_hostile_input_is_escaped() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let values = dir.path().join("k10-values.yaml");
    std::fs::write(&values, "auth: \"x\u{1b}]0;owned\u{7}\"\n  oidcAuth: [\n")?;
    let bindings = dir.path().join("none.yaml");
    std::fs::write(&bindings, "apiVersion: v1\nkind: List\nitems: []\n")?;
    let mut command = groupbinder();
    command
        .args(["audit", "--k10-values"])
        .arg(&values)
        .arg("-f")
        .arg(&bindings);
    let out = run_within(command, Duration::from_secs(10))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("not YAML"),
        "{stderr}"
    );
    assert_no_raw_control("audit --k10-values (stderr)", &stderr);
    Ok(())
}
