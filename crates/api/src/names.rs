//! Names and labels of the bindings groupbinder manages: deterministic, valid, collision-free.

use sha2::{Digest, Sha256};

/// Field manager of every server-side apply groupbinder makes.
pub const FIELD_MANAGER: &str = "groupbinder";
/// Standard label saying which tool manages an object.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`] on groupbinder's bindings.
pub const MANAGED_BY: &str = "groupbinder";
/// Label naming the `AzureGroupBinding` a binding belongs to, for people (see
/// [`owner_label_value`]).
pub const OWNER_LABEL: &str = "groupbinder.dev/azuregroupbinding";
/// Label holding the uid of the `AzureGroupBinding` a binding belongs to: what the controller
/// selects by. Unlike a name, a uid is never reused, nor shared by two objects.
pub const OWNER_UID_LABEL: &str = "groupbinder.dev/azuregroupbinding-uid";
/// Label selector matching every binding groupbinder manages.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=groupbinder";

/// Longest name of a Kubernetes object (a DNS subdomain, and the RBAC limit).
const MAX_NAME: usize = 253;
/// Longest label value.
const MAX_LABEL_VALUE: usize = 63;
/// Hex digits of the hash suffix added to shortened names.
const HASH_LEN: usize = 10;

/// Name of the binding of `role` for the `AzureGroupBinding` named `owner`: `<owner>:<role>`.
///
/// `AzureGroupBinding` names are DNS subdomains and never contain `:`, so the first `:` always
/// separates the two parts and two different (owner, role) pairs never give the same name.
/// A name longer than 253 characters is cut and ends in a hash of the whole pair.
pub fn binding_name(owner: &str, role: &str) -> String {
    let full = format!("{owner}:{role}");
    shorten(&full, MAX_NAME, '-')
}

/// The name of the `AzureGroupBinding` that plans a binding named `name`: the part before the
/// first `:` (see [`binding_name`]), which only that object's plan can hold. `None` for a name
/// without `:` (written by hand, or cut to 253 characters: its object name was longer than 241).
pub fn planner_of(name: &str) -> Option<&str> {
    name.split_once(':')
        .map(|(owner, _)| owner)
        .filter(|o| !o.is_empty())
}

/// Value of [`OWNER_LABEL`] for the `AzureGroupBinding` named `owner`: the name itself when it
/// fits in a label value (63 characters), otherwise a cut of it, `_`, and a hash of the name.
/// Object names never hold `_`, so a cut value is never the name of another object.
pub fn owner_label_value(owner: &str) -> String {
    shorten(owner, MAX_LABEL_VALUE, '_')
}

/// The name `import` gives the AzureGroupBinding of group `object_id`: its Entra ID display name
/// as a DNS label (lower-case letters and digits, runs of anything else one `-`, at most 40
/// characters), then the first 8 characters of the object ID (display names are neither unique
/// nor stable); `azure-<object ID>` without a usable name.
pub fn group_object_name(display_name: Option<&str>, object_id: &str) -> String {
    let mut slug = String::new();
    for c in display_name.unwrap_or_default().chars() {
        if c.is_ascii_alphanumeric() {
            if slug.len() == 40 {
                break;
            }
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') && slug.len() < 40 {
            slug.push('-');
        }
    }
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() {
        return format!("azure-{object_id}");
    }
    let short: String = object_id.chars().take(8).collect();
    format!("{slug}-{short}")
}

/// Name of an event about the object named `object`, unique by `suffix` (a time, say):
/// `<object><suffix>`, the object's part cut (and ending in a hash of it) so that the whole stays
/// a valid name of at most 253 characters even for an object whose own name is that long.
pub fn event_name(object: &str, suffix: &str) -> String {
    let room = MAX_NAME.saturating_sub(suffix.len());
    format!("{}{suffix}", shorten(object, room, '-'))
}

/// Returns `s` if it has at most `max` bytes, else a prefix of it, `sep`, and a hash of all of `s`.
fn shorten(s: &str, max: usize, sep: char) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let digest = hex::encode(Sha256::digest(s.as_bytes()));
    let mut keep = max - HASH_LEN - sep.len_utf8();
    while !s.is_char_boundary(keep) {
        keep -= 1;
    }
    // A label value must start and end with an alphanumeric character: do not end the kept part
    // on a separator, so that `<kept><sep><hash>` never holds two separators in a row.
    let kept = s[..keep].trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    format!("{kept}{sep}{}", &digest[..HASH_LEN])
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_imported_object_is_named_after_its_group() {
        let id = "a318b1eb-8b78-4715-98ad-ffc8670ac79d";
        assert_eq!(
            group_object_name(Some("K10 Admins (prod)"), id),
            "k10-admins-prod-a318b1eb"
        );
        assert_eq!(group_object_name(Some("Ünïcode ✓"), id), "n-code-a318b1eb");
        assert_eq!(
            group_object_name(Some("\u{1b}[2J ;rm -rf /"), id),
            "2j-rm-rf-a318b1eb"
        );
        assert_eq!(group_object_name(Some("✓✓"), id), format!("azure-{id}"));
        assert_eq!(group_object_name(None, id), format!("azure-{id}"));
        let long = group_object_name(Some(&"x".repeat(500)), id);
        assert_eq!(long.len(), 40 + 9);
    }

    use super::*;

    #[test]
    fn event_names_stay_valid_for_the_longest_object_names() {
        assert_eq!(event_name("k10-admins", ".1f"), "k10-admins.1f");
        let long = event_name(&"a".repeat(253), ".18c2f0a1b2c3d4e5");
        assert_eq!(long.len(), 253);
        assert!(long.ends_with(".18c2f0a1b2c3d4e5"));
    }

    #[test]
    fn short_names_are_readable() {
        assert_eq!(
            binding_name("k10-admins", "k10-admin"),
            "k10-admins:k10-admin"
        );
        assert_eq!(owner_label_value("k10-admins"), "k10-admins");
    }

    #[test]
    fn a_binding_name_says_which_object_plans_it() {
        assert_eq!(
            planner_of(&binding_name("k10-admins", "k10-admin")),
            Some("k10-admins")
        );
        assert_eq!(planner_of("hand-written"), None);
        assert_eq!(planner_of(":x"), None);
        assert_eq!(
            planner_of(&binding_name(&"a".repeat(250), "k10-admin")),
            None
        );
    }

    #[test]
    fn pairs_that_concatenate_alike_still_differ() {
        // "a-b" + "c" and "a" + "b-c" would collide with a '-' separator.
        assert_ne!(binding_name("a-b", "c"), binding_name("a", "b-c"));
    }

    #[test]
    fn long_names_are_cut_to_253_with_a_hash() {
        let owner = "a".repeat(200);
        let one = binding_name(&owner, &"r".repeat(100));
        let two = binding_name(&owner, &"r".repeat(101));
        assert_eq!(one.len(), 253);
        assert_eq!(two.len(), 253);
        assert_ne!(one, two, "the hash of the whole pair keeps cut names apart");
        assert!(one.starts_with(&owner));
    }

    #[test]
    fn long_owner_labels_fit_and_end_alphanumeric() {
        let owner = format!("{}.{}", "x".repeat(51), "y".repeat(100));
        let value = owner_label_value(&owner);
        assert!(value.len() <= 63, "{value}");
        assert!(
            value
                .chars()
                .last()
                .is_some_and(|c| c.is_ascii_alphanumeric())
        );
        assert!(
            !value.contains(".-"),
            "no separator before the hash: {value}"
        );
        assert_ne!(value, owner_label_value(&format!("{owner}z")));
    }

    #[test]
    fn a_cut_label_value_is_never_another_objects_name() {
        // An object may be named exactly like another's cut label value: `-` would make them
        // share a label value, and `-l groupbinder.dev/azuregroupbinding=...` list both.
        let long = "x".repeat(70);
        let cut = owner_label_value(&long);
        assert!(cut.contains('_'), "{cut}");
        assert!(
            !cut.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'),
            "{cut} would be a valid object name"
        );
    }

    #[test]
    fn multibyte_role_names_are_cut_on_char_boundaries() {
        let name = binding_name(&"o".repeat(240), &"é".repeat(20));
        assert!(name.len() <= 253);
    }
}
