//! Text for people: the one escaping rule for every human-readable line groupbinder writes —
//! the CLI's reports and errors, the operator's status messages and events. Names are data: a
//! binding, subject or owner name may carry escape sequences (to set a terminal's title, erase a
//! line, fake "all grants imported OK"), carriage returns, new lines or bidirectional overrides
//! to forge or hide a line. They are written as escapes (`\u{1b}`) instead.

/// `text` with every control character (C0, DEL, C1 — so ESC, CR, LF, BEL, U+0085, U+009B) and
/// every bidirectional formatting character (U+202A–U+202E, U+2066–U+2069, U+200E, U+200F,
/// U+061C) written as a Rust-style escape.
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

/// Whether `c` is written as an escape by [`shown`].
pub fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

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
