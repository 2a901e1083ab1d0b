//! OpenAI's chat completions, as OpenAI, OpenRouter, Ollama and vLLM speak
//! them: the structured answer is asked for with a JSON schema
//! (`response_format`), and read from the message's content, or from a
//! tool call's arguments for servers that answer that way.

use base64::Engine as _;
use serde_json::{json, Value};

use super::{AnswerError, ChatAnswer, ChatRequest};

/// The request body. `max_completion_tokens` is OpenAI's name (its newer
/// models refuse `max_tokens`); other servers are sent `max_tokens`.
pub fn body(model: &str, req: &ChatRequest<'_>, openai_itself: bool) -> Value {
    let content = match req.image_png {
        Some(png) => json!([
            {"type": "text", "text": req.text},
            {"type": "image_url", "image_url": {
                "url": format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(png))
            }},
        ]),
        None => json!(req.text),
    };
    let limit = if openai_itself {
        "max_completion_tokens"
    } else {
        "max_tokens"
    };
    json!({
        "model": model,
        "messages": [
            {"role": "system", "content": req.system},
            {"role": "user", "content": content},
        ],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": req.schema_name, "strict": true, "schema": req.schema},
        },
        limit: req.max_answer_tokens,
    })
}

/// The structured answer and token counts of a 2xx response body.
pub fn answer(body: &Value) -> Result<ChatAnswer, AnswerError> {
    let choice = body
        .pointer("/choices/0")
        .ok_or_else(|| AnswerError::Malformed("the response has no choices".into()))?;
    let message = choice
        .get("message")
        .ok_or_else(|| AnswerError::Malformed("the choice has no message".into()))?;
    if let Some(refusal) = message.get("refusal").and_then(Value::as_str) {
        return Err(AnswerError::Refused(refusal.to_string()));
    }
    if choice.get("finish_reason").and_then(Value::as_str) == Some("length") {
        return Err(AnswerError::Truncated);
    }
    let text = message
        .get("content")
        .and_then(Value::as_str)
        .filter(|t| !t.trim().is_empty())
        .or_else(|| {
            message
                .pointer("/tool_calls/0/function/arguments")
                .and_then(Value::as_str)
        })
        .ok_or_else(|| {
            AnswerError::Malformed("the message has neither content nor a tool call".into())
        })?;
    let json = super::parse_json_text(text)?;
    let usage = |k: &str| body.pointer(&format!("/usage/{k}")).and_then(Value::as_u64);
    Ok(ChatAnswer {
        json,
        prompt_tokens: usage("prompt_tokens"),
        answer_tokens: usage("completion_tokens"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(png: Option<&[u8]>) -> Value {
        let schema = json!({"type": "object"});
        let req = ChatRequest {
            system: "sys",
            text: "data".into(),
            image_png: png,
            schema_name: "anomalies",
            schema: &schema,
            max_answer_tokens: 100,
        };
        body("m", &req, true)
    }

    #[test]
    fn the_request_carries_the_schema_and_the_image() {
        let b = request(Some(b"\x89PNG"));
        assert_eq!(b["response_format"]["json_schema"]["name"], "anomalies");
        assert_eq!(b["max_completion_tokens"], 100);
        let url = b["messages"][1]["content"][1]["image_url"]["url"]
            .as_str()
            .unwrap_or_default();
        assert!(url.starts_with("data:image/png;base64,iVBORw"), "{url}");
        assert_eq!(request(None)["messages"][1]["content"], "data");
    }

    #[test]
    fn answers_come_from_content_or_a_tool_call_and_a_cut_one_is_refused() {
        let ok = json!({"choices": [{"message": {"content": "{\"anomalies\": []}"}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 12, "completion_tokens": 3}});
        let a = answer(&ok).expect("answer");
        assert_eq!(
            (
                a.json["anomalies"].as_array().map(Vec::len),
                a.prompt_tokens,
                a.answer_tokens
            ),
            (Some(0), Some(12), Some(3))
        );
        let tool = json!({"choices": [{"message": {"content": null, "tool_calls": [{"function": {"arguments": "{\"anomalies\": []}"}}]}}]});
        assert!(answer(&tool).is_ok());
        let cut =
            json!({"choices": [{"message": {"content": "{\"anoma"}, "finish_reason": "length"}]});
        assert!(matches!(answer(&cut), Err(AnswerError::Truncated)));
        let refused = json!({"choices": [{"message": {"content": null, "refusal": "no"}}]});
        assert!(matches!(answer(&refused), Err(AnswerError::Refused(_))));
        assert!(matches!(
            answer(&json!({"error": "x"})),
            Err(AnswerError::Malformed(_))
        ));
    }
}
