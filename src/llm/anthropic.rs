//! Anthropic's messages API: the structured answer is asked for as the
//! input of one forced tool, whose input schema is the answer's schema.

use base64::Engine as _;
use serde_json::{json, Value};

use super::{AnswerError, ChatAnswer, ChatRequest};

/// The API version sandstack speaks (`anthropic-version`).
pub const VERSION: &str = "2023-06-01";

pub fn body(model: &str, req: &ChatRequest<'_>) -> Value {
    let mut content = Vec::new();
    if let Some(png) = req.image_png {
        content.push(json!({"type": "image", "source": {
            "type": "base64", "media_type": "image/png",
            "data": base64::engine::general_purpose::STANDARD.encode(png),
        }}));
    }
    content.push(json!({"type": "text", "text": req.text}));
    json!({
        "model": model,
        "max_tokens": req.max_answer_tokens,
        "system": req.system,
        "messages": [{"role": "user", "content": content}],
        "tools": [{
            "name": req.schema_name,
            "description": "Report the result in this structure.",
            "input_schema": req.schema,
        }],
        "tool_choice": {"type": "tool", "name": req.schema_name},
    })
}

/// The forced tool's input (or a text block holding JSON, from servers
/// that imitate the API without tools) and the token counts.
pub fn answer(body: &Value, schema_name: &str) -> Result<ChatAnswer, AnswerError> {
    if body.get("stop_reason").and_then(Value::as_str) == Some("max_tokens") {
        return Err(AnswerError::Truncated);
    }
    let blocks = body
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| AnswerError::Malformed("the response has no content".into()))?;
    let tool = blocks.iter().find(|b| {
        b.get("type").and_then(Value::as_str) == Some("tool_use")
            && b.get("name").and_then(Value::as_str) == Some(schema_name)
    });
    let json = match tool {
        Some(b) => b
            .get("input")
            .filter(|i| i.is_object())
            .cloned()
            .ok_or_else(|| AnswerError::Malformed("the tool call has no input object".into()))?,
        None => {
            let text = blocks
                .iter()
                .find_map(|b| b.get("text").and_then(Value::as_str))
                .ok_or_else(|| {
                    AnswerError::Malformed(format!("the answer has no `{schema_name}` tool call"))
                })?;
            super::parse_json_text(text)?
        }
    };
    let usage = |k: &str| body.pointer(&format!("/usage/{k}")).and_then(Value::as_u64);
    Ok(ChatAnswer {
        json,
        prompt_tokens: usage("input_tokens"),
        answer_tokens: usage("output_tokens"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_is_the_forced_tools_input() {
        let schema = json!({"type": "object"});
        let req = ChatRequest {
            system: "sys",
            text: "data".into(),
            image_png: Some(b"png"),
            schema_name: "anomalies",
            schema: &schema,
            max_answer_tokens: 50,
        };
        let b = body("claude", &req);
        assert_eq!(b["tool_choice"]["name"], "anomalies");
        assert_eq!(b["messages"][0]["content"][0]["type"], "image");
        let ok = json!({"content": [{"type": "text", "text": "thinking"}, {"type": "tool_use", "name": "anomalies", "input": {"anomalies": []}}],
                        "stop_reason": "tool_use", "usage": {"input_tokens": 7, "output_tokens": 2}});
        let a = answer(&ok, "anomalies").expect("answer");
        assert_eq!((a.prompt_tokens, a.answer_tokens), (Some(7), Some(2)));
        assert!(matches!(
            answer(
                &json!({"stop_reason": "max_tokens", "content": []}),
                "anomalies"
            ),
            Err(AnswerError::Truncated)
        ));
        assert!(matches!(
            answer(
                &json!({"content": [{"type": "text", "text": "no idea"}]}),
                "anomalies"
            ),
            Err(AnswerError::Malformed(_))
        ));
    }
}
