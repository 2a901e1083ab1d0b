//! What the guest's HTTP may reach: the scheme, the `http_allow_hosts`
//! allowlist, IP literals against the address policy, and `http_rewrite`
//! in both directions (to the operator's target, and back to the URL the
//! code asked for, which is all the guest ever sees).

use std::net::IpAddr;

use super::HttpGate;
use crate::config::url_prefix::UrlPrefix;
use crate::sandbox::addresses::refusal;
use crate::sandbox::error::ExecError;

impl HttpGate {
    /// Apply the longest matching `http_rewrite` prefix, compared as URLs
    /// (scheme, host, port, path; a URL with user information matches
    /// none); None if none matches.
    pub(super) fn rewritten(&self, url: &reqwest::Url) -> Option<reqwest::Url> {
        self.rewrites()
            .filter(|(from, _)| from.contains(url))
            .max_by_key(|(from, _)| from.as_str().len())
            .and_then(|(from, to)| from.rebase(url, &to))
    }

    /// The URL as the guest would have it: a rewrite target's prefix turned
    /// back into the prefix the code asked for.
    pub(super) fn guest_view(&self, url: &reqwest::Url) -> reqwest::Url {
        self.rewrites()
            .filter(|(_, to)| to.contains(url))
            .max_by_key(|(_, to)| to.as_str().len())
            .and_then(|(from, to)| to.rebase(url, &from))
            .unwrap_or_else(|| url.clone())
    }

    /// The batch's rewrites as URL prefixes (each was checked at load).
    fn rewrites(&self) -> impl Iterator<Item = (UrlPrefix, UrlPrefix)> + '_ {
        self.policy.rewrite.iter().filter_map(|(from, to)| {
            Some((UrlPrefix::parse(from).ok()?, UrlPrefix::parse(to).ok()?))
        })
    }

    pub(super) fn check_allowlist(&self, url: &reqwest::Url) -> Result<(), ExecError> {
        let refuse = |reason: String| ExecError::Policy {
            target: url.to_string(),
            reason,
            hint: String::new(),
        };
        if !matches!(url.scheme(), "http" | "https") {
            return Err(refuse(format!(
                "scheme `{}` is not allowed (use http or https)",
                url.scheme()
            )));
        }
        let host = crate::config::hosts::of_url(url);
        if !self.policy.allow_hosts.is_empty()
            && !self
                .policy
                .allow_hosts
                .iter()
                .any(|h| crate::config::hosts::matches(h, &host))
        {
            return Err(ExecError::Policy {
                target: url.to_string(),
                reason: format!("host `{host}` is not in http_allow_hosts"),
                hint: format!(" (allowed: {})", self.policy.allow_hosts.join(", ")),
            });
        }
        Ok(())
    }

    /// IP literals skip DNS, so they are checked here; names are checked
    /// by the resolver.
    pub(super) fn check_address(&self, url: &reqwest::Url) -> Result<(), ExecError> {
        let host = crate::config::hosts::of_url(url);
        if let Ok(ip) = host.parse::<IpAddr>() {
            if !self.policy.allow_private {
                if let Some(reason) = refusal(ip) {
                    return Err(ExecError::Policy {
                        target: url.to_string(),
                        reason: format!("{ip} is {reason}"),
                        hint: " (set http_allow_private: true to allow it)".into(),
                    });
                }
            }
        }
        Ok(())
    }
}
