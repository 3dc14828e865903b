//! `groupbinder audit`: who has which K10 access, from RBAC as the API server sees it — every
//! binding to a K10 role, managed by groupbinder or not, with what is worth fixing.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::explain::{Output, shown};
use crate::grants::{self, Grant, Warning};
use crate::settings::SettingsArgs;

/// Flags of `groupbinder audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Read bindings from these files (as `kubectl get clusterrolebindings,rolebindings -A -o
    /// yaml` prints them) instead of the cluster.
    #[arg(short = 'f', long = "filename")]
    files: Vec<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    output: Output,
    #[command(flatten)]
    settings: SettingsArgs,
    #[command(flatten)]
    prefix: crate::k10values::PrefixArgs,
}

/// Runs `groupbinder audit`: exit code 1 when a grant has a warning, 2 when the bindings cannot
/// be read.
pub fn run(args: &AuditArgs) -> anyhow::Result<ExitCode> {
    let settings = args.settings.settings();
    let Some(bindings) = grants::load(&args.files)? else {
        return Ok(ExitCode::from(2));
    };
    let prefix = args.prefix.prefix(&settings.default_group_prefix)?;
    let grants = grants::grants(&bindings, &settings, &prefix);
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&grants)?),
        Output::Yaml => print!("{}", serde_saphyr::to_string(&grants)?),
        Output::Table => print!("{}", table(&grants)),
    }
    Ok(if grants.iter().any(|g| !g.warnings.is_empty()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The grants as a table for people, then what each warning means.
pub fn table(grants: &[Grant]) -> String {
    let header = [
        "BINDING",
        "ROLE",
        "SUBJECT",
        "OBJECT ID",
        "MANAGED BY",
        "WARNINGS",
    ];
    let rows: Vec<[String; 6]> = grants
        .iter()
        .map(|g| {
            let warnings: Vec<String> = g.warnings.iter().map(|w| format!("{w:?}")).collect();
            [
                shown(&g.binding),
                shown(&g.role),
                shown(&g.subject),
                g.object_id.clone().unwrap_or_else(|| "-".into()),
                g.managed_by.as_deref().map_or_else(|| "-".into(), shown),
                if warnings.is_empty() {
                    "-".into()
                } else {
                    warnings.join(",")
                },
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join("   ").trim_end())
    };
    let mut out = line(&header.map(str::to_owned));
    if rows.is_empty() {
        out.push_str("(no binding to a K10 role)\n");
    }
    for row in &rows {
        out.push_str(&line(row));
    }
    let mut seen: Vec<&Warning> = grants.iter().flat_map(|g| &g.warnings).collect();
    seen.sort();
    seen.dedup();
    if !seen.is_empty() {
        out.push_str("\nWarnings:\n");
        for w in seen {
            out.push_str(&format!("  {w:?}: {}\n", w.explain()));
        }
    }
    out
}
