//! The forms a secret's value may come back in from a host that holds it:
//! as is, in either case, each character possibly percent-encoded (in
//! either hex case, or twice), as an HTML character reference or entity,
//! JSON-escaped (`\uXXXX`, `\/`), `+` and space for each other; and inside
//! base64 at each alignment, in both alphabets. One regular expression per
//! value, so a mix of forms in one echo (`quote()` leaving `/` and encoding
//! `+`) is found too.

use std::borrow::Cow;

use base64::Engine as _;

/// A value's echoes.
#[derive(Debug, Clone)]
pub(super) struct Echoes {
    pattern: regex::bytes::Regex,
}

impl Echoes {
    pub fn of(value: &str) -> Echoes {
        let mut alternatives = vec![format!("(?i:{})", characters(value))];
        alternatives.extend(
            base64_cores(value.as_bytes())
                .iter()
                .map(|core| regex::escape(core)),
        );
        let pattern = regex::bytes::RegexBuilder::new(&alternatives.join("|"))
            .size_limit(1 << 24)
            .build()
            // Every piece is escaped or a fixed form: it always compiles,
            // and a value too long to compile is matched as is.
            .unwrap_or_else(|_| {
                regex::bytes::Regex::new(&regex::escape(value)).unwrap_or_else(|_| never())
            });
        Echoes { pattern }
    }

    /// `bytes` with every echo replaced by `with`.
    pub fn replace<'a>(&self, bytes: &'a [u8], with: &[u8]) -> Cow<'a, [u8]> {
        self.pattern
            .replace_all(bytes, regex::bytes::NoExpand(with))
    }

    pub fn found_in(&self, bytes: &[u8]) -> bool {
        self.pattern.is_match(bytes)
    }
}

fn never() -> regex::bytes::Regex {
    // An empty class matches nothing; it compiles.
    regex::bytes::Regex::new("[^\\x00-\\x{10FFFF}]").expect("a fixed pattern")
}

/// One group per character of `value`, each matching its forms.
fn characters(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        let mut buf = [0u8; 4];
        let bytes = c.encode_utf8(&mut buf).as_bytes();
        let once: String = bytes.iter().map(|b| format!("%{b:02x}")).collect();
        let twice: String = bytes.iter().map(|b| format!("%25{b:02x}")).collect();
        let mut forms = vec![regex::escape(&c.to_string()), once, twice];
        if !c.is_ascii_alphanumeric() {
            let n = c as u32;
            forms.push(format!("&#0*{n};"));
            forms.push(format!("&#x0*{n:x};"));
            if n <= 0xffff {
                forms.push(format!("\\\\u{n:04x}"));
            }
            forms.push(format!("\\\\{}", regex::escape(&c.to_string())));
            let named = match c {
                ' ' => "\\+",
                '+' => " ",
                '&' => "&amp;",
                '<' => "&lt;",
                '>' => "&gt;",
                '"' => "&quot;",
                '\'' => "&apos;",
                '/' => "&sol;",
                '=' => "&equals;",
                _ => "",
            };
            if !named.is_empty() {
                forms.push(named.to_string());
            }
        }
        out.push_str(&format!("(?:{})", forms.join("|")));
    }
    out
}

/// What base64 of any text holding `value` always holds, for each of the
/// three alignments and both alphabets: the characters that encode the
/// value's bytes alone (the groups shared with its neighbours left out).
fn base64_cores(value: &[u8]) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let mut cores = Vec::new();
    for engine in [STANDARD_NO_PAD, URL_SAFE_NO_PAD] {
        for shift in 0..3 {
            let mut bytes = vec![0u8; shift];
            bytes.extend_from_slice(value);
            let encoded = engine.encode(&bytes);
            let start = if shift == 0 { 0 } else { 4 };
            let end = bytes.len() / 3 * 4;
            if end >= start + 8 {
                cores.push(encoded[start..end].to_string());
            }
        }
    }
    cores.sort();
    cores.dedup();
    cores
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALUE: &str = "s3cr3t value/+&\"x";

    fn scrubbed(text: &str) -> String {
        String::from_utf8(
            Echoes::of(VALUE)
                .replace(text.as_bytes(), b"P")
                .into_owned(),
        )
        .expect("text")
    }

    #[test]
    fn every_form_of_the_value_is_found_mixed_forms_too() {
        for echo in [
            VALUE,
            "S3CR3T VALUE/+&\"X",
            "s3cr3t%20value%2F%2B%26%22x",
            "s3cr3t%20value%2f%2b%26%22x",
            "s3cr3t+value%2F%2B%26%22x",
            "s3cr3t%20value/%2B%26%22x",
            "s3cr3t%2520value%252F%252B%2526%2522x",
            "s3cr3t value\\/+&\\\"x",
            "s3cr3t\\u0020value\\u002f\\u002b\\u0026\\u0022x",
            "s3cr3t value/&#43;&amp;&quot;x",
            "s3cr3t&#x20;value&#47;+&#38;&#34;x",
            "s3cr3t value/ &\"x",
        ] {
            assert_eq!(scrubbed(&format!("<{echo}>")), "<P>", "{echo}");
        }
        assert_eq!(scrubbed("s3cr3t value/+&\"y"), "s3cr3t value/+&\"y");
    }

    #[test]
    fn base64_holding_the_value_at_any_alignment_no_longer_decodes_to_it() {
        use base64::engine::general_purpose::{STANDARD, URL_SAFE};
        for prefix in ["", "u", "us", "user:"] {
            for engine in [STANDARD, URL_SAFE] {
                let encoded = engine.encode(format!("{prefix}{VALUE} and more"));
                let back = scrubbed(&encoded);
                assert!(back.contains('P'), "{prefix}: {back}");
                let decoded = engine.decode(back.replace('P', "")).unwrap_or_default();
                assert!(
                    memchr::memmem::find(&decoded, VALUE.as_bytes()).is_none(),
                    "{prefix}"
                );
            }
        }
    }
}
