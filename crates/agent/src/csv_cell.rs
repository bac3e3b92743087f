//! CSV cells that a spreadsheet will not run. Excel, LibreOffice and Google Sheets treat a cell
//! starting with `=`, `+`, `-` or `@` as a formula, and tab or carriage return ahead of one
//! can still trigger it; an answer from a model (or a question from a user) is untrusted text,
//! so such a cell gets a leading `'`, which the spreadsheet shows as text (OWASP's "CSV
//! Injection" advice). Reading strips exactly that `'` again, so a file written and read back
//! (`converse --resume`) keeps every text as it was.

use std::borrow::Cow;

const TRIGGERS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// Whether `s` gets a `'` in front: it starts with a trigger, or with a `'` ahead of text that
/// would itself get one (so that such text survives the round trip).
fn needs_quote(s: &str) -> bool {
    match s.chars().next() {
        Some(c) if TRIGGERS.contains(&c) => true,
        Some('\'') => needs_quote(&s[1..]),
        _ => false,
    }
}

/// The cell to write for the text `s`.
pub fn escape(s: &str) -> Cow<'_, str> {
    if needs_quote(s) {
        Cow::Owned(format!("'{s}"))
    } else {
        Cow::Borrowed(s)
    }
}

/// The text a cell written by [`escape`] holds.
pub fn unescape(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if needs_quote(rest) => rest,
        _ => cell,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_quoted_and_read_back_unchanged() {
        let cases = [
            ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
            ("+1", "'+1"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\t=1", "'\t=1"),
            ("\r=1", "'\r=1"),
            ("'=1", "''=1"),
            ("''@x", "'''@x"),
            ("plain text", "plain text"),
            ("it's = fine", "it's = fine"),
            ("'quoted'", "'quoted'"),
            ("", ""),
        ];
        for (text, cell) in cases {
            assert_eq!(escape(text), cell, "{text:?}");
            assert_eq!(unescape(cell), text, "{cell:?}");
        }
    }
}
