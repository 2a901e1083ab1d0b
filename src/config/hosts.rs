//! Host patterns, as `http_allow_hosts` (a batch's and the policy's) holds
//! them: a host name, `*.` and a domain (any name under it), or an IP
//! address. Anything else (`evil.net/.example.com`, a port, user info) is
//! refused at load rather than compared as text.

use std::net::IpAddr;

/// `pattern` is a host name, `*.domain` or an IP address; or why not.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    let p = pattern.trim();
    let ip = p.trim_start_matches('[').trim_end_matches(']');
    if ip.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let name = p.strip_prefix("*.").unwrap_or(p);
    check_name(name).map_err(|why| {
        format!(
            "`{}` is not a host pattern ({why}): write a host name (api.example.com), `*.` and a domain \
             (*.example.com) or an IP address",
            pattern.escape_default()
        )
    })
}

/// A URL's host as patterns name it: lower-case, an IPv6 address without
/// its brackets.
pub fn of_url(url: &url::Url) -> String {
    url.host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_ascii_lowercase()
}

/// Whether `host` (lower-case, without brackets) is one `pattern` allows:
/// the name itself, or for `*.domain` any name under the domain.
pub fn matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim().to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(suffix) => host.ends_with(&format!(".{suffix}")),
        None => pattern == host,
    }
}

/// A DNS name of ASCII letters, digits, `-` and `_`, in labels of 1 to 63
/// characters, at most 253 in all.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".into());
    }
    if name.len() > 253 {
        return Err("it is longer than 253 characters".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        return Err(if c.is_ascii() {
            format!("it holds `{}`", c.escape_default())
        } else {
            "it holds a character that is not ASCII; write an international name in its xn-- form"
                .into()
        });
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("each part between dots must have 1 to 63 characters".into());
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a part between dots may not start or end with `-`".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{check_pattern, matches};

    #[test]
    fn allowlist_patterns() {
        assert!(matches("api.example.com", "api.example.com"));
        assert!(matches("*.example.com", "a.example.com"));
        assert!(!matches("*.example.com", "example.com.evil.net"));
        assert!(!matches("example.com", "badexample.com"));
    }

    #[test]
    fn names_domains_and_addresses_pass() {
        for ok in [
            "api.example.com",
            "*.example.com",
            "localhost",
            "127.0.0.1",
            "::1",
            "[::1]",
            "xn--bcher-kva.example",
            "Api.Example.COM",
        ] {
            assert_eq!(check_pattern(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn anything_else_is_refused_with_the_reason() {
        for (bad, why) in [
            ("evil.net/.example.com", "it holds `/`"),
            ("user@example.com", "it holds `@`"),
            ("example.com:8080", "it holds `:`"),
            ("*.*.example.com", "it holds `*`"),
            ("exa mple.com", "it holds ` `"),
            ("example..com", "1 to 63"),
            ("-example.com", "may not start or end"),
            ("", "it is empty"),
            ("*.", "it is empty"),
            ("bücher.example", "xn--"),
            ("a\u{1b}]52;c;x\u{7}.com", "it holds `\\u{1b}`"),
        ] {
            let e = check_pattern(bad).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
            assert!(!e.contains('\u{1b}'), "escaped: {e}");
        }
    }
}
