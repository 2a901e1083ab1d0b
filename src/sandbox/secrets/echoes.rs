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
    /// A value's echoes, or why they cannot be looked for (a value so
    /// long its pattern is over the size the matcher allows).
    pub fn of(value: &str) -> Result<Echoes, String> {
        if value.chars().count() > MAX_VALUE_CHARS {
            return Err(format!(
                "is longer than {MAX_VALUE_CHARS} characters, too long for its echoes to be looked for in what \
                 comes back"
            ));
        }
        let mut alternatives = vec![format!("(?i:{})", characters(value))];
        alternatives.extend(
            base64_cores(value.as_bytes())
                .iter()
                .map(|c| base64_form(c)),
        );
        let pattern = regex::bytes::RegexBuilder::new(&alternatives.join("|"))
            .size_limit(MAX_PATTERN_BYTES)
            .build()
            .map_err(|e| match e {
                regex::Error::CompiledTooBig(_) => format!(
                    "is {} characters long, too long for its echoes to be looked for in what comes back",
                    value.chars().count()
                ),
                other => format!("cannot be looked for in what comes back: {other}"),
            })?;
        Ok(Echoes { pattern })
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

/// The longest value looked for: a private key in PEM fits; its pattern
/// takes about 0.2 s to build in a debug build at 3,200 characters.
const MAX_VALUE_CHARS: usize = 16 * 1024;

/// The most memory one value's compiled pattern may take.
const MAX_PATTERN_BYTES: usize = 64 << 20;

/// A base64 run as it may be written: wrapped in lines (MIME, PEM, APIs
/// that send files), its `+` and `/` escaped as JSON or a URL would.
fn base64_form(core: &str) -> String {
    let mut out = String::new();
    for (i, c) in core.chars().enumerate() {
        if i > 0 {
            out.push_str("(?:\\r?\\n)?");
        }
        out.push_str(match c {
            '+' => "(?:\\+|%2[bB]|\\\\u002[bB])",
            '/' => "(?:/|%2[fF]|\\\\u002[fF]|\\\\/)",
            _ => "",
        });
        if c != '+' && c != '/' {
            out.push_str(&regex::escape(&c.to_string()));
        }
    }
    out
}

/// One group per character of `value`, each matching its forms.
fn characters(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        let mut buf = [0u8; 4];
        let bytes = c.encode_utf8(&mut buf).as_bytes();
        let once: String = bytes.iter().map(|b| format!("%{b:02x}")).collect();
        let twice: String = bytes.iter().map(|b| format!("%25{b:02x}")).collect();
        let n = c as u32;
        let mut forms = vec![
            regex::escape(&c.to_string()),
            once,
            twice,
            format!("&#0*{n};"),
            format!("&#x0*{n:x};"),
        ];
        if n <= 0xffff {
            forms.push(format!("\\\\u{n:04x}"));
        }
        if !c.is_ascii_alphanumeric() {
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
        let echoes = Echoes::of(VALUE).expect("echoes");
        String::from_utf8(echoes.replace(text.as_bytes(), b"P").into_owned()).expect("text")
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
            "\\u0073\\u0033cr3t value/+&\"x",
            "&#115;3&#99;r3t value/+&\"x",
        ] {
            assert_eq!(scrubbed(&format!("<{echo}>")), "<P>", "{echo}");
        }
        assert_eq!(scrubbed("s3cr3t value/+&\"y"), "s3cr3t value/+&\"y");
    }

    #[test]
    fn base64_wrapped_in_lines_or_escaped_is_found_too() {
        use base64::engine::general_purpose::STANDARD;
        let value = "k/+".repeat(30);
        let echoes = Echoes::of(&value).expect("echoes");
        let encoded = STANDARD.encode(format!("user:{value}"));
        let wrapped: Vec<String> = encoded
            .as_bytes()
            .chunks(60)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        for form in [
            wrapped.join("\n"),
            wrapped.join("\r\n"),
            encoded.replace('+', "\\u002B").replace('/', "\\/"),
            encoded.replace('+', "%2B").replace('/', "%2F"),
        ] {
            assert!(echoes.found_in(form.as_bytes()), "{form}");
        }
    }

    #[test]
    fn a_value_too_long_to_look_for_is_refused_not_matched_as_is() {
        let long = "x".repeat(MAX_VALUE_CHARS + 1);
        let e = Echoes::of(&long).expect_err("too long");
        assert!(
            e.contains("too long for its echoes to be looked for"),
            "{e}"
        );
        // A PEM private key's size is looked for.
        assert!(Echoes::of(&"k/+=".repeat(800)).is_ok());
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
