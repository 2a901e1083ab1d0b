//! Text that came from the guest (what it printed and logged, its
//! exceptions), made safe to show on the operator's terminal and in logs.
//! Control characters (ANSI and OSC escapes that set the clipboard or the
//! window title, clear the screen or hide text; carriage returns that
//! overwrite a line) and Unicode's bidirectional overrides are shown as
//! `\u{..}` escapes instead of acting; in one-line form newlines are escaped
//! too, so one guest record is one line and cannot pass for a line of the
//! host's own (an `error:` of another batch).
//!
//! Hand-written: a dozen lines over `char::is_control`; the crates that deal
//! with escapes strip them, and an operator should see that they were there.

/// Unicode's explicit bidirectional formatting characters, which reorder
/// what a terminal shows ("Trojan Source").
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}')
}

/// A character that acts on a terminal instead of showing: a control
/// character or a bidirectional override.
pub fn acts_on_terminal(c: char) -> bool {
    c.is_control() || is_bidi_control(c)
}

fn escape(c: char, out: &mut String) {
    use std::fmt::Write;
    let _ = write!(out, "\\u{{{:x}}}", c as u32);
}

/// Guest text with its control characters escaped; newlines and tabs kept.
pub fn terminal_block(text: &str) -> String {
    let escaped = |c: char| acts_on_terminal(c) && c != '\n' && c != '\t';
    if !text.chars().any(escaped) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if escaped(c) {
            escape(c, &mut out);
        } else {
            out.push(c);
        }
    }
    out
}

/// The first `max_chars` characters of `text`, with `…` if it was longer.
pub fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// Guest text on one line: control characters escaped, newlines as `\n`.
pub fn terminal_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push(' '),
            c if acts_on_terminal(c) => escape(c, &mut out),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_terminal_controls_and_keeps_text() {
        assert_eq!(terminal_block("plain\n\ttext é"), "plain\n\ttext é");
        assert_eq!(
            terminal_block("\x1b]52;c;ZXZpbA==\x07\x1b[2J\rok\u{202e}"),
            "\\u{1b}]52;c;ZXZpbA==\\u{7}\\u{1b}[2J\\u{d}ok\\u{202e}"
        );
        assert_eq!(terminal_block("\u{9b}31m"), "\\u{9b}31m");
    }

    #[test]
    fn terminal_line_cannot_forge_a_line() {
        let forged = terminal_line("fine\nerror: batch other: ingest exceeded ingest_fuel");
        assert!(!forged.contains('\n'));
        assert_eq!(
            forged,
            "fine\\nerror: batch other: ingest exceeded ingest_fuel"
        );
    }
}
