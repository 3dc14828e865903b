//! Text for people: the one escaping rule for every human-readable line groupbinder writes —
//! the CLI's reports and errors, the operator's status messages and events. Names are data: a
//! binding, subject or owner name may carry escape sequences (to set a terminal's title, erase a
//! line, fake "all grants imported OK"), carriage returns, new lines or bidirectional overrides
//! to forge or hide a line. They are written as escapes (`\u{1b}`) instead.

use unicode_general_category::{GeneralCategory, get_general_category};

/// The one definition of an invisible character, used by the CRD's CEL rule and the chart's
/// values schema (as [`INVISIBLE_PATTERN`]), the operator's flag check, `plan` and `audit`: a
/// control character (Cc), a format character (Cf: U+200B, U+FEFF, bidirectional controls, tag
/// characters), a separator (Z*: U+00A0, U+3000, ...), or a Default_Ignorable_Code_Point
/// (U+034F, U+115F, U+3164, the variation selectors U+FE00–U+FE0F, ...). Each shows as nothing, or
/// as a space, yet makes a group name that no token carries.
pub fn is_invisible(c: char) -> bool {
    matches!(
        get_general_category(c),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::SpaceSeparator
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    ) || is_default_ignorable(c)
}

/// Unicode's Default_Ignorable_Code_Point that are not Cf (those are in [`is_invisible`] already).
fn is_default_ignorable(c: char) -> bool {
    matches!(c,
        '\u{034F}' | '\u{115F}'..='\u{1160}' | '\u{17B4}'..='\u{17B5}' | '\u{180B}'..='\u{180F}'
        | '\u{2065}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FFA0}' | '\u{FFF0}'..='\u{FFF8}'
        | '\u{E0000}'..='\u{E0FFF}')
}

/// Whether `c` combines with the character before it (Mn, Mc, Me): at the start of a name it
/// attaches to whatever is printed before.
pub fn is_combining_mark(c: char) -> bool {
    matches!(
        get_general_category(c),
        GeneralCategory::NonspacingMark
            | GeneralCategory::SpacingMark
            | GeneralCategory::EnclosingMark
    )
}

/// [`is_invisible`] and a leading combining mark as an RE2 pattern (what CEL's `matches` and
/// Helm's JSON schema validator run): `text` matches it when it holds either.
pub const INVISIBLE_PATTERN: &str = "[\\p{Cc}\\p{Cf}\\p{Z}\\x{034F}\\x{115F}\\x{1160}\\x{17B4}\\x{17B5}\\x{180B}-\\x{180F}\\x{2065}\\x{3164}\\x{FE00}-\\x{FE0F}\\x{FFA0}\\x{FFF0}-\\x{FFF8}\\x{E0000}-\\x{E0FFF}]|^\\p{M}";

/// The first invisible character of `text` ([`is_invisible`]), or its leading combining mark.
pub fn invisible_in(text: &str) -> Option<char> {
    let leading = text.chars().next().filter(|c| is_combining_mark(*c));
    leading.or_else(|| text.chars().find(|c| is_invisible(*c)))
}

/// The first character of `text` outside ASCII: admitted in a prefix, since a look-alike (a
/// Cyrillic `а` for a Latin `a`) cannot be refused by rule, but worth a warning.
pub fn non_ascii_in(text: &str) -> Option<char> {
    text.chars().find(|c| !c.is_ascii())
}

/// `text` with every control character (C0, DEL, C1 — so ESC, CR, LF, BEL, U+0085, U+009B),
/// bidirectional control and other invisible character ([`is_invisible`], the plain space
/// excepted) written as a Rust-style escape.
pub fn shown(text: &str) -> String {
    if !text.chars().any(needs_escape) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if needs_escape(c) {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// [`shown`], cut to at most `max` characters (the last one `…` when cut): for text from outside
/// (a K10 version, a group's display name) that is stored or shown where its size is not ours.
pub fn bounded(text: &str, max: usize) -> String {
    let shown = shown(text);
    if shown.chars().count() <= max {
        return shown;
    }
    if max == 0 {
        return String::new();
    }
    let mut cut: String = shown.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Whether `c` is written as an escape by [`shown`].
pub fn needs_escape(c: char) -> bool {
    c != ' ' && is_invisible(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_text_is_escaped_then_cut() {
        assert_eq!(bounded("9.0.7", 64), "9.0.7");
        assert_eq!(bounded("abcdef", 4), "abc…");
        assert_eq!(bounded("a\u{1b}[2J", 64), "a\\u{1b}[2J");
        assert_eq!(bounded(&"x".repeat(1 << 20), 64).chars().count(), 64);
        assert_eq!(bounded("abc", 0), "");
    }

    #[test]
    fn the_pattern_and_the_function_agree_on_every_character() {
        let pattern = regex::Regex::new(INVISIBLE_PATTERN).unwrap();
        let mut buf = [0u8; 4];
        for c in (0..=0x10FFFF_u32).filter_map(char::from_u32) {
            let alone: &str = c.encode_utf8(&mut buf);
            assert_eq!(
                pattern.is_match(alone),
                invisible_in(alone).is_some(),
                "U+{:04X}",
                u32::from(c)
            );
        }
        // A combining mark is invisible only where it leads.
        assert!(pattern.is_match("\u{301}a") && invisible_in("\u{301}a").is_some());
        assert!(!pattern.is_match("a\u{301}") && invisible_in("a\u{301}").is_none());
    }

    #[test]
    fn what_the_issue_found_is_invisible() {
        for c in [
            '\u{034F}',
            '\u{FE0F}',
            '\u{3164}',
            '\u{115F}',
            '\u{E0041}',
            '\u{1D173}',
            '\u{FFF9}',
            '\u{0600}',
            '\u{00A0}',
            '\u{200B}',
            '\u{202E}',
        ] {
            assert!(is_invisible(c), "U+{:04X}", u32::from(c));
        }
        assert_eq!(non_ascii_in("michael_аzure_"), Some('а'));
        assert_eq!(invisible_in("\u{0301}azure_"), Some('\u{0301}'));
        assert_eq!(invisible_in("michael_azure_"), None);
    }

    #[test]
    fn control_and_bidi_characters_are_escaped_and_nothing_else() {
        let hostile = "a\u{1b}]0;t\u{7}b\rc\nd\u{85}e\u{9b}2Jf\u{202e}g\u{7f}";
        let out = shown(hostile);
        assert!(!out.chars().any(needs_escape), "{out:?}");
        assert_eq!(
            out,
            r"a\u{1b}]0;t\u{7}b\u{d}c\u{a}d\u{85}e\u{9b}2Jf\u{202e}g\u{7f}"
        );
        assert_eq!(
            shown("k10-admins:k10-admin ü → ok"),
            "k10-admins:k10-admin ü → ok"
        );
    }
}
