//! Chat models, as the llmalert job uses them: which endpoint the
//! operator's environment names ([`endpoint`]), the two wire formats
//! ([`openai`] for every OpenAI-compatible server, [`anthropic`]), and one
//! [`client::Client`] per run that sends structured-output requests within
//! the run's budget of calls, tokens and time, retries what can pass, and
//! records or replays every exchange through a cassette.

pub mod anthropic;
pub mod client;
pub mod endpoint;
pub mod openai;

pub use client::{Budget, Client, LlmError, Tape};
pub use endpoint::{Endpoint, NotConfigured, Platform};

use serde_json::Value;

/// One question: instructions, the data as text, an optional image, and
/// the JSON schema the answer must follow.
#[derive(Debug, Clone)]
pub struct ChatRequest<'a> {
    pub system: &'a str,
    pub text: String,
    pub image_png: Option<&'a [u8]>,
    /// The schema's name (OpenAI) or the forced tool's (Anthropic).
    pub schema_name: &'static str,
    pub schema: &'a Value,
    pub max_answer_tokens: u64,
}

/// A structured answer (not yet checked against the question) and what
/// it cost, as the server counted it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatAnswer {
    pub json: Value,
    pub prompt_tokens: Option<u64>,
    pub answer_tokens: Option<u64>,
}

/// Why a 2xx answer holds no usable structure.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnswerError {
    #[error("malformed answer: {0}")]
    Malformed(String),
    #[error("the answer was cut off at its token limit")]
    Truncated,
    #[error("the model refused: {0}")]
    Refused(String),
}

/// A JSON object from a model's text, which some servers wrap in a
/// Markdown code fence.
fn parse_json_text(text: &str) -> Result<Value, AnswerError> {
    let t = text.trim();
    let t = t
        .strip_prefix("```json")
        .or_else(|| t.strip_prefix("```"))
        .and_then(|rest| rest.trim_end().strip_suffix("```"))
        .unwrap_or(t);
    let v: Value = serde_json::from_str(t.trim())
        .map_err(|e| AnswerError::Malformed(format!("not JSON ({e})")))?;
    if v.is_object() {
        Ok(v)
    } else {
        Err(AnswerError::Malformed("the JSON is not an object".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_text_may_be_fenced_and_must_be_an_object() {
        assert!(parse_json_text("```json\n{\"a\": 1}\n```").is_ok());
        assert!(parse_json_text(" {\"a\": 1} ").is_ok());
        assert!(matches!(
            parse_json_text("[1]"),
            Err(AnswerError::Malformed(_))
        ));
        assert!(matches!(
            parse_json_text("{\"a\": "),
            Err(AnswerError::Malformed(_))
        ));
    }
}
