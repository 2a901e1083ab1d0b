//! Which chat model to call and how: the platform, its base URL, the model
//! and the key, from the operator's environment (Anomstack's variables plus
//! `SANDSTACK_LLM_BASE_URL`) and the batch's `llmalert_model`.

use std::collections::BTreeMap;
use std::fmt;

/// Picks the platform: `openai` (the default; any OpenAI-compatible
/// server with `SANDSTACK_LLM_BASE_URL`), `openrouter` or `anthropic`.
pub const PLATFORM_VAR: &str = "ANOMSTACK_LLM_PLATFORM";
/// Points the platform at another server (a local Ollama or vLLM, a test).
pub const BASE_URL_VAR: &str = "SANDSTACK_LLM_BASE_URL";

/// The variables that choose the endpoint (keys included, which a
/// cassette scrubs): recorded so a replay calls the same endpoint.
pub const VARIABLES: &[&str] = &[
    PLATFORM_VAR,
    BASE_URL_VAR,
    "OPENAI_BASE_URL",
    "OPENROUTER_BASE_URL",
    "ANOMSTACK_OPENAI_MODEL",
    "ANOMSTACK_ANTHROPIC_MODEL",
    "OPENAI_API_KEY",
    "ANOMSTACK_OPENAI_KEY",
    "OPENROUTER_API_KEY",
    "ANOMSTACK_ANTHROPIC_KEY",
    "ANTHROPIC_API_KEY",
];

/// The wire format an endpoint speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// OpenAI's chat completions (and every server that copies them).
    OpenAi,
    /// OpenRouter: OpenAI's format, its own address and key.
    OpenRouter,
    /// Anthropic's messages API.
    Anthropic,
}

impl Platform {
    pub fn name(self) -> &'static str {
        match self {
            Platform::OpenAi => "openai",
            Platform::OpenRouter => "openrouter",
            Platform::Anthropic => "anthropic",
        }
    }

    fn parse(text: &str) -> Result<Platform, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "" | "openai" => Ok(Platform::OpenAi),
            "openrouter" => Ok(Platform::OpenRouter),
            "anthropic" => Ok(Platform::Anthropic),
            other => Err(format!(
                "{PLATFORM_VAR}={other:?} is not a platform sandstack knows: use openai (also for any \
                 OpenAI-compatible server, with {BASE_URL_VAR}), openrouter or anthropic"
            )),
        }
    }

    /// The public address of the platform's API.
    fn default_base_url(self) -> &'static str {
        match self {
            Platform::OpenAi => "https://api.openai.com/v1",
            Platform::OpenRouter => "https://openrouter.ai/api/v1",
            Platform::Anthropic => "https://api.anthropic.com/v1",
        }
    }

    /// Variables holding the key, in the order they are tried.
    fn key_variables(self) -> &'static [&'static str] {
        match self {
            Platform::OpenAi => &["OPENAI_API_KEY", "ANOMSTACK_OPENAI_KEY"],
            Platform::OpenRouter => &[
                "OPENROUTER_API_KEY",
                "OPENAI_API_KEY",
                "ANOMSTACK_OPENAI_KEY",
            ],
            Platform::Anthropic => &["ANOMSTACK_ANTHROPIC_KEY", "ANTHROPIC_API_KEY"],
        }
    }

    /// Base URL variables Anomstack reads besides sandstack's own.
    fn base_url_variables(self) -> &'static [&'static str] {
        match self {
            Platform::OpenAi => &[BASE_URL_VAR, "OPENAI_BASE_URL"],
            Platform::OpenRouter => &[BASE_URL_VAR, "OPENROUTER_BASE_URL"],
            Platform::Anthropic => &[BASE_URL_VAR],
        }
    }

    fn model_variable(self) -> &'static str {
        match self {
            Platform::OpenAi | Platform::OpenRouter => "ANOMSTACK_OPENAI_MODEL",
            Platform::Anthropic => "ANOMSTACK_ANTHROPIC_MODEL",
        }
    }

    fn default_model(self) -> &'static str {
        match self {
            Platform::OpenAi | Platform::OpenRouter => "gpt-4o-mini",
            Platform::Anthropic => "claude-3-5-haiku-latest",
        }
    }
}

/// An API key: never printed, logged or stored.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<hidden>)")
    }
}

/// Where and what to ask.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub platform: Platform,
    /// Without a trailing slash.
    pub base_url: url::Url,
    pub model: String,
    /// None only for a server named by `SANDSTACK_LLM_BASE_URL` (a local
    /// server may take none).
    pub key: Option<ApiKey>,
}

/// Why there is no endpoint: the job is skipped with this line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct NotConfigured(pub String);

impl Endpoint {
    /// The endpoint `env` (the operator's variables) and `batch_model`
    /// (`llmalert_model`; empty: the platform's model variable or default)
    /// describe.
    pub fn from_env(
        env: &BTreeMap<String, String>,
        batch_model: &str,
    ) -> Result<Endpoint, NotConfigured> {
        let var = |name: &str| {
            env.get(name)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let platform =
            Platform::parse(&var(PLATFORM_VAR).unwrap_or_default()).map_err(NotConfigured)?;
        let own_url = var(BASE_URL_VAR);
        let (url_var, url_text) = platform
            .base_url_variables()
            .iter()
            .find_map(|name| var(name).map(|v| (*name, v)))
            .unwrap_or(("", platform.default_base_url().to_string()));
        let mut base_url = url::Url::parse(url_text.trim_end_matches('/')).map_err(|e| {
            NotConfigured(format!(
                "{url_var} is not a URL ({e}): give one like http://127.0.0.1:11434/v1"
            ))
        })?;
        if !matches!(base_url.scheme(), "http" | "https") || base_url.host_str().is_none() {
            return Err(NotConfigured(format!(
                "{url_var} must be an http(s) URL with a host, like http://127.0.0.1:11434/v1"
            )));
        }
        if !base_url.path().ends_with('/') {
            // Url::join keeps the last segment only after a slash.
            let path = format!("{}/", base_url.path());
            base_url.set_path(&path);
        }
        let key = platform
            .key_variables()
            .iter()
            .find_map(|name| var(name))
            .map(ApiKey);
        if key.is_none() && own_url.is_none() {
            return Err(NotConfigured(format!(
                "no API key for the {} platform ({PLATFORM_VAR}): set {}, or point {BASE_URL_VAR} at a local \
                 OpenAI-compatible server",
                platform.name(),
                platform.key_variables().join(" or ")
            )));
        }
        let model = Some(batch_model.trim().to_string())
            .filter(|m| !m.is_empty())
            .or_else(|| var(platform.model_variable()))
            .unwrap_or_else(|| platform.default_model().to_string());
        crate::config::sections::check_llm_model(&model).map_err(NotConfigured)?;
        Ok(Endpoint {
            platform,
            base_url,
            model,
            key,
        })
    }

    /// The URL requests go to.
    pub fn url(&self) -> url::Url {
        let path = match self.platform {
            Platform::OpenAi | Platform::OpenRouter => "chat/completions",
            Platform::Anthropic => "messages",
        };
        // A relative path joined to a URL ending in '/' cannot fail.
        self.base_url
            .join(path)
            .unwrap_or_else(|_| self.base_url.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn anomstack_variables_choose_the_platform_key_and_model() {
        let e = Endpoint::from_env(&env(&[("ANOMSTACK_OPENAI_KEY", "sk-1")]), "").expect("openai");
        assert_eq!(e.platform, Platform::OpenAi);
        assert_eq!(
            e.url().as_str(),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(e.model, "gpt-4o-mini");
        let e = Endpoint::from_env(
            &env(&[
                ("ANOMSTACK_LLM_PLATFORM", "Anthropic"),
                ("ANOMSTACK_ANTHROPIC_KEY", "k"),
                ("ANOMSTACK_ANTHROPIC_MODEL", "claude-x"),
            ]),
            "",
        )
        .expect("anthropic");
        assert_eq!(e.url().as_str(), "https://api.anthropic.com/v1/messages");
        assert_eq!(e.model, "claude-x");
        let e = Endpoint::from_env(
            &env(&[
                ("SANDSTACK_LLM_BASE_URL", "http://127.0.0.1:11434/v1/"),
                ("ANOMSTACK_OPENAI_MODEL", "env-model"),
            ]),
            "llama3.2",
        )
        .expect("a local server needs no key");
        assert_eq!(
            e.url().as_str(),
            "http://127.0.0.1:11434/v1/chat/completions"
        );
        assert_eq!(e.model, "llama3.2", "the batch's model wins");
        assert!(e.key.is_none());
        assert!(!format!(
            "{:?}",
            Endpoint::from_env(&env(&[("OPENAI_API_KEY", "sk-secret")]), "")
        )
        .contains("sk-secret"));
    }

    #[test]
    fn a_missing_key_or_a_bad_variable_says_what_to_set() {
        let err = Endpoint::from_env(&env(&[]), "").expect_err("no key");
        assert!(
            err.0.contains("OPENAI_API_KEY or ANOMSTACK_OPENAI_KEY"),
            "{err}"
        );
        let err = Endpoint::from_env(&env(&[("ANOMSTACK_LLM_PLATFORM", "gemini")]), "")
            .expect_err("platform");
        assert!(
            err.0.contains("openai") && err.0.contains("anthropic"),
            "{err}"
        );
        let err = Endpoint::from_env(
            &env(&[("SANDSTACK_LLM_BASE_URL", "file:///etc/passwd")]),
            "",
        )
        .expect_err("scheme");
        assert!(err.0.contains("http(s)"), "{err}");
        let err =
            Endpoint::from_env(&env(&[("OPENAI_API_KEY", "k")]), "bad\nmodel").expect_err("model");
        assert!(err.0.contains("llmalert_model"), "{err}");
    }
}
