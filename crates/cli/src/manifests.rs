//! The one way manifests come in, for every command: files, directories (read recursively,
//! `*.yaml`, `*.yml`, `*.json`; a directory link back to one already entered is reported, not
//! followed), `-` for standard input, multi-document YAML, JSON, and `kind: List` or any `*List`
//! (as `kubectl get ... -o yaml` prints), whose items count as documents of their own.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use groupbinder_api::AzureGroupBinding;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Why a manifest could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("{0}: {1}")]
    Read(String, std::io::Error),
    /// A directory link back to a directory already entered.
    #[error("{0}: a directory link that loops back to {1}: not followed")]
    Loop(String, String),
    /// Larger than [`MAX_FILE_BYTES`].
    #[error("{0}: larger than {1} bytes: not read")]
    TooLarge(String, u64),
    /// Not YAML (nor JSON).
    #[error("{0}: not YAML: {1}")]
    Parse(String, String),
    /// A document of the kind asked for that does not decode as that kind.
    #[error("{origin}: not a valid {kind}: {error}")]
    Decode {
        /// Where it is.
        origin: String,
        /// The kind it says it is.
        kind: String,
        /// Why it does not decode.
        error: String,
    },
}

/// One document, with where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    /// `FILE (document N)`, or `FILE (document N, item M)` for an item of a List.
    pub origin: String,
    /// The document.
    pub value: Value,
}

impl Document {
    /// Whether it is a `kind` (of API version `api_version`, when given).
    pub fn is(&self, api_version: Option<&str>, kind: &str) -> bool {
        self.value["kind"] == kind && api_version.is_none_or(|v| self.value["apiVersion"] == v)
    }

    /// The document as a `T`; `kind` names it in the error.
    pub fn decode<T: DeserializeOwned>(&self, kind: &str) -> Result<T, ManifestError> {
        serde_json::from_value(self.value.clone()).map_err(|e| ManifestError::Decode {
            origin: self.describe(),
            kind: kind.to_owned(),
            error: e.to_string(),
        })
    }

    /// Its origin and, when it has one, its name.
    pub fn describe(&self) -> String {
        match self.value["metadata"]["name"].as_str() {
            Some(name) => format!("{} {name:?}", self.origin),
            None => self.origin.clone(),
        }
    }
}

/// Every document in `paths`, and what could not be read; reading goes on past a bad file.
pub fn read(paths: &[PathBuf]) -> (Vec<Document>, Vec<ManifestError>) {
    let mut documents = Vec::new();
    let mut failures = Vec::new();
    for path in paths {
        let (files, loops) = files(path);
        failures.extend(loops);
        for file in files {
            match read_file(&file) {
                Ok(found) => documents.extend(found),
                Err(e) => failures.push(e),
            }
        }
    }
    (documents, failures)
}

/// Every document in `paths`, or the first reason one could not be read.
pub fn read_all(paths: &[PathBuf]) -> Result<Vec<Document>, ManifestError> {
    let (documents, failures) = read(paths);
    match failures.into_iter().next() {
        Some(failure) => Err(failure),
        None => Ok(documents),
    }
}

/// The documents of `kind` (and `api_version`, when given) decoded as `T`, and those that do not
/// decode; documents of other kinds are skipped.
pub fn of_kind<T: DeserializeOwned>(
    documents: &[Document],
    api_version: Option<&str>,
    kind: &str,
) -> (Vec<T>, Vec<ManifestError>) {
    let mut decoded = Vec::new();
    let mut failures = Vec::new();
    for document in documents.iter().filter(|d| d.is(api_version, kind)) {
        match document.decode(kind) {
            Ok(object) => decoded.push(object),
            Err(e) => failures.push(e),
        }
    }
    (decoded, failures)
}

/// The AzureGroupBindings in `paths` (files, directories, Lists), and what could not be read.
pub fn azure_group_bindings(paths: &[PathBuf]) -> (Vec<AzureGroupBinding>, Vec<ManifestError>) {
    let (documents, mut failures) = read(paths);
    let (agbs, invalid) = of_kind(
        &documents,
        Some("groupbinder.dev/v1alpha1"),
        "AzureGroupBinding",
    );
    failures.extend(invalid);
    (agbs, failures)
}

/// The text of `path` (`-` is standard input), at most [`MAX_FILE_BYTES`]: a larger input is
/// refused after that many bytes, not held in memory first.
pub fn text(path: &Path) -> Result<String, ManifestError> {
    use std::io::Read;
    let name = path.display().to_string();
    let reader: Box<dyn Read> = if name == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(path).map_err(|e| ManifestError::Read(name.clone(), e))?)
    };
    let mut bytes = Vec::new();
    reader
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ManifestError::Read(name.clone(), e))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(ManifestError::TooLarge(name, MAX_FILE_BYTES));
    }
    String::from_utf8(bytes).map_err(|_| ManifestError::Parse(name, "not UTF-8 text".into()))
}

/// The largest manifest file read: a dump of 20,000 bindings with their managedFields, as
/// `kubectl get clusterrolebindings,rolebindings -A -o yaml` prints it, is about 30 MiB.
pub const MAX_FILE_BYTES: u64 = 512 * 1024 * 1024;

/// The YAML parser's limits, sized for whole-cluster dumps: the defaults (250,000 nodes) stop at
/// about 6,000 bindings. Alias expansion keeps its default limits (no "billion laughs").
fn parse_options() -> serde_saphyr::Options {
    let budget = serde_saphyr::budget! {
        max_reader_input_bytes: Some(MAX_FILE_BYTES as usize),
        max_events: 200_000_000,
        max_nodes: 100_000_000,
        max_documents: 1_000_000,
        max_total_scalar_bytes: MAX_FILE_BYTES as usize,
    };
    serde_saphyr::options! { budget: budget }
}

/// The documents of one file, Lists unpacked.
fn read_file(path: &Path) -> Result<Vec<Document>, ManifestError> {
    let name = path.display().to_string();
    let docs: Vec<Value> =
        serde_saphyr::from_str_multiple_with_options(&text(path)?, parse_options())
            .map_err(|e| ManifestError::Parse(name.clone(), e.to_string()))?;
    let mut documents = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        let n = i + 1;
        let is_list = doc["kind"].as_str().is_some_and(|k| k.ends_with("List"));
        match doc {
            Value::Object(mut map) if is_list && map.get("items").is_some_and(Value::is_array) => {
                let items = match map.remove("items") {
                    Some(Value::Array(items)) => items,
                    _ => Vec::new(),
                };
                documents.extend(items.into_iter().enumerate().map(|(j, value)| Document {
                    origin: format!("{name} (document {n}, item {})", j + 1),
                    value,
                }));
            }
            Value::Null => {}
            value => documents.push(Document {
                origin: format!("{name} (document {n})"),
                value,
            }),
        }
    }
    Ok(documents)
}

/// `path` itself, or the manifest files below it, sorted; and the directory links that loop
/// (a directory is entered once: a link back to one already entered is reported, not followed).
fn files(path: &Path) -> (Vec<PathBuf>, Vec<ManifestError>) {
    if !path.is_dir() {
        return (vec![path.to_owned()], Vec::new());
    }
    let mut found = Vec::new();
    let mut loops = Vec::new();
    let mut entered: HashMap<PathBuf, PathBuf> = HashMap::new();
    let mut stack = vec![path.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(real) = std::fs::canonicalize(&dir) else {
            continue;
        };
        if let Some(first) = entered.get(&real) {
            loops.push(ManifestError::Loop(
                dir.display().to_string(),
                first.display().to_string(),
            ));
            continue;
        }
        entered.insert(real, dir.clone());
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
            {
                found.push(p);
            }
        }
    }
    found.sort();
    loops.sort_by_key(ToString::to_string);
    (found, loops)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> anyhow::Result<PathBuf> {
        let path = dir.join(name);
        std::fs::write(&path, text)?;
        Ok(path)
    }

    #[test]
    fn lists_yaml_streams_and_json_are_one_stream_of_documents() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let list = write(
            dir.path(),
            "list.yaml",
            "apiVersion: v1\nkind: List\nitems:\n- {kind: A, metadata: {name: a}}\n- {kind: B}\n---\nkind: C\n---\n",
        )?;
        let json = write(
            dir.path(),
            "x.json",
            r#"{"kind": "RoleBindingList", "items": [{"kind": "D"}]}"#,
        )?;
        let docs = read_all(&[list.clone(), json])?;
        let kinds: Vec<&str> = docs
            .iter()
            .filter_map(|d| d.value["kind"].as_str())
            .collect();
        assert_eq!(kinds, ["A", "B", "C", "D"]);
        assert_eq!(
            docs[0].describe(),
            format!("{} (document 1, item 1) \"a\"", list.display())
        );
        assert_eq!(docs[2].origin, format!("{} (document 2)", list.display()));
        Ok(())
    }

    #[test]
    fn documents_of_another_kind_are_skipped_and_bad_ones_named() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = write(
            dir.path(),
            "ns.yaml",
            "kind: Namespace\nmetadata: {name: shop}\n---\nkind: Namespace\nmetadata: 7\n---\nkind: Pod\n",
        )?;
        let docs = read_all(&[file])?;
        let (namespaces, failures) =
            of_kind::<k8s_openapi::api::core::v1::Namespace>(&docs, None, "Namespace");
        assert_eq!(namespaces.len(), 1);
        let [failure] = failures.as_slice() else {
            panic!("{failures:?}")
        };
        assert!(
            failure
                .to_string()
                .contains("(document 2): not a valid Namespace"),
            "{failure}"
        );
        Ok(())
    }

    #[test]
    fn unreadable_and_malformed_files_are_errors_and_reading_goes_on() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let bad = write(dir.path(), "bad.yaml", "a: [\n")?;
        let good = write(dir.path(), "good.yaml", "kind: A\n")?;
        let (docs, failures) = read(&[dir.path().join("missing.yaml"), bad, good]);
        assert_eq!(docs.len(), 1);
        assert_eq!(failures.len(), 2, "{failures:?}");
        assert!(matches!(failures[0], ManifestError::Read(..)));
        assert!(matches!(failures[1], ManifestError::Parse(..)));
        Ok(())
    }
}
