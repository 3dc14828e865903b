//! Everything the commands print for people and scripts: the `-o` formats, tables, names made
//! safe to show, and object references that tools read as data (never as words for a shell or
//! `xargs`). Every cell of a table is escaped here, so no command can forget to.

use clap::ValueEnum;
use serde::Serialize;
use serde_json::{Value, json};

pub use groupbinder_api::text::{needs_escape, shown};

/// Output format.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Output {
    /// A readable report.
    Table,
    /// JSON, for scripts.
    Json,
    /// YAML, for scripts.
    Yaml,
}

/// `value` as `output` asks: JSON or YAML (data: serializers quote every string), or the text
/// `table` makes for people.
pub fn render<T: Serialize>(
    output: Output,
    value: &T,
    table: impl FnOnce(&T) -> String,
) -> anyhow::Result<String> {
    Ok(match output {
        Output::Json => json(value)?,
        Output::Yaml => yaml(value)?,
        Output::Table => table(value),
    })
}

/// `value` as pretty JSON, with every character [`shown`] would escape written as a `\uXXXX`
/// escape: the same JSON to a parser, nothing raw on a terminal.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<String> {
    let text = serde_json::to_string_pretty(value)?;
    let mut out = String::with_capacity(text.len() + 1);
    for c in text.chars() {
        // Outside strings JSON is ASCII punctuation and white space: only strings change.
        if c != '\n' && needs_escape(c) {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    out.push('\n');
    Ok(out)
}

/// `value` as YAML, every string with a control character double-quoted and escaped (never a
/// block scalar, whose lines a name could forge). The YAML serializer leaves bidirectional
/// controls raw: a value holding one is written as [`json`] instead, which is YAML too.
pub fn yaml<T: Serialize>(value: &T) -> anyhow::Result<String> {
    let options = serde_saphyr::ser_options! { prefer_block_scalars: false };
    let text = serde_saphyr::to_string_with_options(value, options)?;
    if text.chars().any(|c| c != '\n' && needs_escape(c)) {
        return json(value);
    }
    Ok(text)
}

/// A table: the header, then one line a row, columns padded to their widest cell, every cell
/// [`shown`] (escaped) first.
pub fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let rows: Vec<[String; N]> = rows
        .iter()
        .map(|r| r.each_ref().map(|c| shown(c)))
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; N]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join("   ").trim_end())
    };
    let mut out = line(header);
    for row in &rows {
        out.push_str(&line(row.each_ref().map(String::as_str)));
    }
    out
}

/// Whether `name` is made of visible ASCII only: no white space, control, invisible or
/// look-alike character. Only such names are printed as references for other tools to act on.
pub fn is_plain(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_graphic())
}

/// One object to act on: `(apiVersion, kind, namespace, name)`.
pub type Reference<'a> = (&'a str, &'a str, Option<&'a str>, &'a str);

/// A `kind: List` of references, as YAML: `kubectl delete -f -` reads it and deletes exactly
/// these objects, whatever their names hold (a name is a YAML string, never a word to split).
pub fn reference_list<'a>(
    references: impl IntoIterator<Item = Reference<'a>>,
) -> anyhow::Result<String> {
    let items: Vec<Value> = references
        .into_iter()
        .map(|(api_version, kind, namespace, name)| {
            let mut metadata = json!({ "name": name });
            if let Some(ns) = namespace {
                metadata["namespace"] = json!(ns);
            }
            json!({ "apiVersion": api_version, "kind": kind, "metadata": metadata })
        })
        .collect();
    Ok(serde_saphyr::to_string(
        &json!({ "apiVersion": "v1", "kind": "List", "items": items }),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_cells_are_escaped_and_aligned() {
        let rows = [
            ["a\u{1b}[2Kb".to_owned(), "x".to_owned()],
            ["c".to_owned(), "y\r\nz".to_owned()],
        ];
        let out = table(["ONE", "TWO"], &rows);
        assert!(!out.contains('\u{1b}') && !out.contains('\r'), "{out:?}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert_eq!(lines[1], r"a\u{1b}[2Kb   x");
        assert_eq!(lines[2], r"c             y\u{d}\u{a}z");
    }

    #[test]
    fn only_visible_ascii_names_are_plain() {
        assert!(is_plain("k10-admins:k10-admin"));
        for hostile in [
            "",
            "team-basic\nnamespace victim",
            "a b",
            "a\tb",
            "x\u{1b}]0;owned\u{7}",
            "a\u{200B}",
            "k10-аdmins", // Cyrillic а
            "a\u{85}b",
        ] {
            assert!(!is_plain(hostile), "{hostile:?}");
        }
    }

    #[test]
    fn a_reference_list_is_data_whatever_the_name() -> anyhow::Result<()> {
        let name = "x\nnamespace victim --all";
        let yaml = reference_list([
            (
                "rbac.authorization.k8s.io/v1",
                "RoleBinding",
                Some("shop"),
                name,
            ),
            (
                "rbac.authorization.k8s.io/v1",
                "ClusterRoleBinding",
                None,
                "plain",
            ),
        ])?;
        let back: Value = serde_saphyr::from_str(&yaml)?;
        assert_eq!(back["kind"], "List");
        assert_eq!(back["items"][0]["metadata"]["name"], name);
        assert_eq!(back["items"][0]["metadata"]["namespace"], "shop");
        assert_eq!(back["items"][1]["metadata"].get("namespace"), None);
        Ok(())
    }
}
