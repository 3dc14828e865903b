//! `groupbinder audit`: who has which K10 access, from RBAC as the API server sees it — every
//! binding to a K10 role, managed by groupbinder or not, with what is worth fixing.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::entra::EntraArgs;
use crate::grants::{self, Grant, Note, Warning};
use crate::k10values::PrefixArgs;
use crate::output::{self, Output};
use crate::settings::SettingsArgs;

/// Flags of `groupbinder audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Read bindings from these files instead of the cluster, with the AzureGroupBindings and
    /// Namespaces they are checked against: as `kubectl get
    /// azuregroupbindings,clusterrolebindings,rolebindings,namespaces -A -o yaml` prints them.
    #[arg(short = 'f', long = "filename")]
    files: Vec<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    output: Output,
    #[command(flatten)]
    settings: SettingsArgs,
    #[command(flatten)]
    prefix: PrefixArgs,
    #[command(flatten)]
    entra: EntraArgs,
}

/// Runs `groupbinder audit`: exit code 1 when a grant has a warning (a note is not one), 2 when
/// the bindings cannot be read.
pub async fn run(args: &AuditArgs) -> anyhow::Result<ExitCode> {
    let settings = args.settings.settings();
    let Some((bindings, client)) = grants::load(&args.files, &settings).await? else {
        return Ok(ExitCode::from(2));
    };
    let prefix = args.prefix.prefix(&settings, client.as_ref()).await?;
    let mut grants = grants::grants(&bindings, &settings, &prefix);
    let ids = grants.iter().filter_map(|g| g.object_id.as_deref());
    let named = match args.entra.answers(ids).await? {
        Some(answers) => {
            grants::name_groups(&mut grants, &answers);
            true
        }
        None => false,
    };
    print!(
        "{}",
        output::render(args.output, &grants, |g| table(g, named))?
    );
    Ok(if grants.iter().any(|g| !g.warnings.is_empty()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The grants as a table for people (with their groups' names when Entra ID was asked), then
/// what each warning means.
fn table(grants: &[Grant], named: bool) -> String {
    let header = [
        "BINDING",
        "ROLE",
        "SUBJECT",
        "OBJECT ID",
        "GROUP NAME",
        "MANAGED BY",
        "WARNINGS",
    ];
    let or_dash = |v: Option<&str>| v.unwrap_or("-").to_owned();
    let rows: Vec<[String; 7]> = grants
        .iter()
        .map(|g| {
            let warnings: Vec<String> = g
                .warnings
                .iter()
                .map(|w| format!("{w:?}"))
                .chain(g.notes.iter().map(|n| format!("({n:?})")))
                .collect();
            [
                g.binding.clone(),
                g.role.clone(),
                g.subject.clone(),
                or_dash(g.object_id.as_deref()),
                or_dash(g.group_display_name.as_deref()),
                or_dash(g.managed_by.as_deref()),
                if warnings.is_empty() {
                    "-".into()
                } else {
                    warnings.join(",")
                },
            ]
        })
        .collect();
    let mut out = if named {
        output::table(header, &rows)
    } else {
        let drop_name = |r: &[String; 7]| {
            [
                r[0].clone(),
                r[1].clone(),
                r[2].clone(),
                r[3].clone(),
                r[5].clone(),
                r[6].clone(),
            ]
        };
        let [a, b, c, d, _, f, g] = header;
        output::table(
            [a, b, c, d, f, g],
            &rows.iter().map(drop_name).collect::<Vec<_>>(),
        )
    };
    if rows.is_empty() {
        out.push_str("(no binding to a K10 role)\n");
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
    let mut noted: Vec<&Note> = grants.iter().flat_map(|g| &g.notes).collect();
    noted.sort();
    noted.dedup();
    if !noted.is_empty() {
        out.push_str("\nNotes (in parentheses; they do not change the exit code):\n");
        for n in noted {
            out.push_str(&format!("  {n:?}: {}\n", n.explain()));
        }
    }
    out
}
