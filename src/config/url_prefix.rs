//! URL prefixes compared as URLs, not as text: `http_rewrite`'s source and
//! target and the policy's `http_rewrite_targets`. A prefix is a scheme
//! (http or https), a host, a port and a path; a URL lies under it when
//! all four match, its path at a segment boundary, and it carries no user
//! information. As text, `http://127.0.0.1:8080@127.0.0.1:9/` starts with
//! `http://127.0.0.1:8080`; as a URL it is port 9 of 127.0.0.1.

use url::Url;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlPrefix {
    url: Url,
}

impl UrlPrefix {
    /// An http(s) URL without user information, query or fragment.
    pub fn parse(text: &str) -> Result<UrlPrefix, String> {
        let url = Url::parse(text.trim()).map_err(|e| format!("not a URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("scheme `{}` (use http or https)", url.scheme()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("it holds user information (`user@`)".into());
        }
        if url.host().is_none() {
            return Err("it has no host".into());
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err("a prefix may not hold a query or a fragment".into());
        }
        Ok(UrlPrefix { url })
    }

    /// Whether `url` lies under this prefix.
    pub fn contains(&self, url: &Url) -> bool {
        url.username().is_empty()
            && url.password().is_none()
            && url.scheme() == self.url.scheme()
            && url.host() == self.url.host()
            && url.port_or_known_default() == self.url.port_or_known_default()
            && path_under(url.path(), self.url.path())
    }

    /// Whether everything under this prefix is also under `outer`.
    pub fn within(&self, outer: &UrlPrefix) -> bool {
        outer.contains(&self.url)
    }

    /// `url` (under this prefix) moved under `to`: `to`'s scheme, host and
    /// port, `to`'s path followed by the rest of `url`'s, and `url`'s query.
    pub fn rebase(&self, url: &Url, to: &UrlPrefix) -> Option<Url> {
        if !self.contains(url) {
            return None;
        }
        // `contains` checked that the path starts with the prefix's, its
        // trailing slash aside.
        let prefix = self.url.path().trim_end_matches('/');
        let rest = url
            .path()
            .get(prefix.len()..)
            .unwrap_or_default()
            .trim_start_matches('/');
        let mut out = to.url.clone();
        let base = to.url.path().trim_end_matches('/');
        out.set_path(&if rest.is_empty() && !url.path().ends_with('/') {
            if base.is_empty() {
                "/".to_string()
            } else {
                base.to_string()
            }
        } else {
            format!("{base}/{rest}")
        });
        out.set_query(url.query());
        Some(out)
    }

    pub fn as_str(&self) -> &str {
        self.url.as_str()
    }
}

/// `path` is `prefix` or below it (`/api` holds `/api` and `/api/x`, not
/// `/apix`).
fn path_under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: &str) -> UrlPrefix {
        UrlPrefix::parse(t).expect(t)
    }

    fn u(t: &str) -> Url {
        Url::parse(t).expect(t)
    }

    #[test]
    fn user_information_never_passes_for_a_host() {
        let allowed = p("http://127.0.0.1:8080");
        assert!(!allowed.contains(&u("http://127.0.0.1:8080@127.0.0.1:9/")));
        assert!(UrlPrefix::parse("http://127.0.0.1:8080@127.0.0.1:9/").is_err());
        assert!(allowed.contains(&u("http://127.0.0.1:8080/x?y=1")));
        assert!(!allowed.contains(&u("http://127.0.0.1:8081/")));
        assert!(!allowed.contains(&u("https://127.0.0.1:8080/")));
        assert!(!allowed.contains(&u("http://127.0.0.10:8080/")));
    }

    #[test]
    fn paths_match_at_segment_boundaries_and_ports_by_default() {
        let api = p("https://mirror.internal/api");
        assert!(api.contains(&u("https://mirror.internal:443/api/v1")));
        assert!(api.contains(&u("https://mirror.internal/api")));
        assert!(!api.contains(&u("https://mirror.internal/apix")));
        assert!(p("https://mirror.internal/api/v1").within(&api));
        assert!(!p("https://mirror.internal/").within(&api));
        assert!(!p("https://mirror.internal.evil.net/api").within(&api));
    }

    #[test]
    fn rebase_keeps_the_targets_authority() {
        let from = p("https://api.example.com");
        let to = p("http://127.0.0.1:8080/mirror");
        assert_eq!(
            from.rebase(&u("https://api.example.com/v1/x?q=2"), &to)
                .map(|x| x.to_string()),
            Some("http://127.0.0.1:8080/mirror/v1/x?q=2".into())
        );
        assert_eq!(
            from.rebase(&u("https://api.example.com@127.0.0.1:9/"), &to),
            None
        );
        assert_eq!(
            p("https://api.example.com/a")
                .rebase(&u("https://api.example.com/a"), &p("http://m:1"))
                .map(|x| x.to_string()),
            Some("http://m:1/".into())
        );
    }

    #[test]
    fn a_prefix_with_a_trailing_slash_rebases_the_bare_path_too() {
        let from = p("https://api.example.com/api/");
        let to = p("http://127.0.0.1:8080/mirror/");
        assert_eq!(
            from.rebase(&u("https://api.example.com/api"), &to)
                .map(|x| x.to_string()),
            Some("http://127.0.0.1:8080/mirror".into())
        );
        assert_eq!(
            from.rebase(&u("https://api.example.com/api/v1?x=1"), &to)
                .map(|x| x.to_string()),
            Some("http://127.0.0.1:8080/mirror/v1?x=1".into())
        );
    }

    #[test]
    fn a_prefix_is_an_http_url_with_a_host_and_nothing_after_its_path() {
        for bad in [
            "ftp://x/",
            "http://u:p@x/",
            "http://x/?q=1",
            "http://x/#f",
            "not a url",
        ] {
            assert!(UrlPrefix::parse(bad).is_err(), "{bad}");
        }
    }
}
