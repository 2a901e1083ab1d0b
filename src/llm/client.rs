//! One run's chat-model client: each [`Client::chat`] is sent within the
//! run's [`Budget`] (calls, tokens, a deadline), retried with backoff when
//! the failure can pass (network errors, 408, 429, 5xx; a `Retry-After`
//! is honoured), and goes through the run's [`Tape`]: sent for real,
//! recorded, or answered from a cassette with no network. The key is only
//! ever in the request's headers; cassettes and errors are scrubbed of it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::endpoint::{Endpoint, Platform};
use super::{anthropic, openai, AnswerError, ChatAnswer, ChatRequest};
use crate::cassette::{Interaction, RecordedError, Response, Scrubber};
use crate::escape;

/// Attempts per question, the first included.
pub const MAX_ATTEMPTS: u32 = 4;
/// Largest response body read; a bigger one is refused.
pub const MAX_RESPONSE_BYTES: usize = 1 << 20;
/// One request's own time limit (the run's deadline may cut it shorter).
const CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest wait between attempts when the server names none.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Tokens an image is counted as before the server says (a 1024x512 PNG
/// is about 800 at OpenAI's and Anthropic's rates).
const IMAGE_TOKENS: u64 = 1_000;

/// What one run may spend.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// `llmalert_max_calls`: requests sent, retries included.
    pub max_calls: u64,
    /// `llmalert_max_tokens`: prompt and answer tokens together.
    pub max_tokens: u64,
    /// The run's end (`job_timeout_s` after it started).
    pub deadline: Instant,
}

/// Where answers come from: the cassette module's, as for the warehouses.
pub use crate::cassette::tape::Tape;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LlmError {
    /// A budget is spent: the run asks nothing more.
    #[error("{0}")]
    Budget(String),
    /// The server failed this question (after retries, when they could help).
    #[error("{0}")]
    Http(String),
    #[error("{0}")]
    Answer(AnswerError),
    /// A replay met a question its cassette does not hold.
    #[error("{0}")]
    NotInCassette(String),
}

impl LlmError {
    /// Whether the run must stop asking (the next question would fail the
    /// same way), rather than go on to the next metric.
    pub fn stops_the_run(&self) -> bool {
        matches!(self, LlmError::Budget(_) | LlmError::NotInCassette(_))
    }
}

/// A response as the client reads it, live or replayed.
struct Exchange {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// What a failed attempt leaves.
enum Failure {
    /// Worth another attempt, after the wait the server asked for, if any.
    Passing(String, Option<Duration>),
    Final(LlmError),
}

pub struct Client {
    endpoint: Endpoint,
    http: reqwest::Client,
    budget: Budget,
    tape: Tape,
    scrubber: Scrubber,
    /// Exchanges kept for the cassette.
    pub interactions: Vec<Interaction>,
    /// Requests sent (or replayed) so far.
    pub calls: u64,
    /// Tokens spent so far.
    pub tokens: u64,
}

impl Client {
    /// A client for one run. `env` holds the operator's variables, whose
    /// secret values (and those of `scrub`, more names) are scrubbed from
    /// everything recorded.
    pub fn new(
        endpoint: Endpoint,
        budget: Budget,
        tape: Tape,
        env: &BTreeMap<String, String>,
        scrub: &[String],
    ) -> Result<Client, String> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
        let mut scrubber = Scrubber::new(env, scrub);
        scrubber.learn_headers(&headers(&endpoint));
        Ok(Client {
            endpoint,
            http,
            budget,
            tape,
            scrubber,
            interactions: Vec::new(),
            calls: 0,
            tokens: 0,
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub fn scrubber(&self) -> &Scrubber {
        &self.scrubber
    }

    fn replaying(&self) -> bool {
        matches!(self.tape, Tape::Replay(_))
    }

    /// Ask one question; the answer's tokens are added to the run's.
    pub fn chat(&mut self, req: &ChatRequest<'_>) -> Result<ChatAnswer, LlmError> {
        let estimate = estimate_tokens(req);
        let left = self.budget.max_tokens.saturating_sub(self.tokens);
        if estimate >= left {
            return Err(LlmError::Budget(format!(
                "llmalert_max_tokens={} reached: {} spent, the next question needs about {estimate}",
                self.budget.max_tokens, self.tokens
            )));
        }
        let req = ChatRequest {
            max_answer_tokens: req.max_answer_tokens.min(left - estimate),
            ..req.clone()
        };
        let body = match self.endpoint.platform {
            Platform::OpenAi | Platform::OpenRouter => {
                let openai_itself = self.endpoint.base_url.host_str() == Some("api.openai.com");
                openai::body(&self.endpoint.model, &req, openai_itself)
            }
            Platform::Anthropic => anthropic::body(&self.endpoint.model, &req),
        };
        let body = body.to_string().into_bytes();
        let mut last = String::new();
        for attempt in 1..=MAX_ATTEMPTS {
            match self.attempt(&body) {
                Ok(x) => return self.read_answer(&x, &req, estimate),
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::Passing(why, asked)) => {
                    last = why;
                    if attempt == MAX_ATTEMPTS {
                        break;
                    }
                    let wait = asked.unwrap_or_else(|| backoff(attempt));
                    if Instant::now() + wait >= self.budget.deadline {
                        return Err(LlmError::Budget(format!(
                            "{last}; the next attempt would start after {:.0} s, past the run's job_timeout_s",
                            wait.as_secs_f64()
                        )));
                    }
                    // A replay answers at once: the wait was the server's.
                    if !self.replaying() {
                        std::thread::sleep(wait);
                    }
                }
            }
        }
        Err(LlmError::Http(format!(
            "{last} (after {MAX_ATTEMPTS} attempts)"
        )))
    }

    /// One request within the budget.
    fn attempt(&mut self, body: &[u8]) -> Result<Exchange, Failure> {
        if self.calls >= self.budget.max_calls {
            return Err(Failure::Final(LlmError::Budget(format!(
                "llmalert_max_calls={} reached",
                self.budget.max_calls
            ))));
        }
        let now = Instant::now();
        if now >= self.budget.deadline {
            return Err(Failure::Final(LlmError::Budget(
                "the run reached its job_timeout_s".into(),
            )));
        }
        self.calls += 1;
        let x = self.exchange(body, self.budget.deadline - now)?;
        let who = self.endpoint.platform.name();
        match x.status {
            200..=299 => Ok(x),
            408 | 429 | 500..=599 => Err(Failure::Passing(
                format!(
                    "{who} answered HTTP {}{}",
                    x.status,
                    self.error_detail(&x.body)
                ),
                retry_after(&x.headers),
            )),
            status => Err(Failure::Final(LlmError::Http(format!(
                "{who} answered HTTP {status}{}",
                self.error_detail(&x.body)
            )))),
        }
    }

    /// The server's own error message, scrubbed and cut short: it names
    /// the problem (an unknown model, a bad key) and may echo the key.
    fn error_detail(&self, body: &[u8]) -> String {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let message = v
            .pointer("/error/message")
            .or_else(|| v.get("error"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned());
        let clean = escape::terminal_line(&self.scrubber.text(message.trim()));
        if clean.is_empty() {
            String::new()
        } else {
            format!(": {}", escape::truncate(&clean, 300))
        }
    }

    fn read_answer(
        &mut self,
        x: &Exchange,
        req: &ChatRequest<'_>,
        estimate: u64,
    ) -> Result<ChatAnswer, LlmError> {
        let parsed: Result<Value, _> = serde_json::from_slice(&x.body);
        let answer = match &parsed {
            Ok(v) => match self.endpoint.platform {
                Platform::OpenAi | Platform::OpenRouter => openai::answer(v),
                Platform::Anthropic => anthropic::answer(v, req.schema_name),
            },
            Err(e) => Err(AnswerError::Malformed(format!(
                "the response is not JSON ({e})"
            ))),
        };
        let (prompt, answered) = match &answer {
            Ok(a) => (a.prompt_tokens, a.answer_tokens),
            Err(_) => (None, None),
        };
        // Counted as the server says; as estimated when it does not.
        self.tokens += prompt.unwrap_or(estimate) + answered.unwrap_or(x.body.len() as u64 / 4);
        answer.map_err(LlmError::Answer)
    }

    /// Send `body` (or find it in the cassette), recording what the tape
    /// keeps.
    fn exchange(&mut self, body: &[u8], left: Duration) -> Result<Exchange, Failure> {
        let url = self.endpoint.url();
        let headers = headers(&self.endpoint);
        let recorded = self.scrubber.request("POST", url.as_str(), &headers, body);
        let allow_new = match &mut self.tape {
            Tape::Replay(book) => {
                if let Some(i) = book.find(&recorded) {
                    return replayed(i);
                }
                if !book.allow_new {
                    let closest = book
                        .closest(&recorded)
                        .map(|c| format!("; the closest recorded request is {c}"))
                        .unwrap_or_default();
                    return Err(Failure::Final(LlmError::NotInCassette(format!(
                        "the cassette has no answer to this question (matching on {}){closest}: the data or the \
                         prompts changed since it was recorded; record it again with --record",
                        book.match_on_text()
                    ))));
                }
                true
            }
            Tape::Record => true,
            Tape::Live => false,
        };
        let result = self.send(&url, &headers, body, left.min(CALL_TIMEOUT));
        if allow_new {
            self.interactions.push(Interaction {
                request: recorded,
                response: result.as_ref().ok().map(|x| Response {
                    status: x.status,
                    reason: String::new(),
                    headers: self.scrubber.headers(&x.headers),
                    url: url.to_string(),
                    body: self.scrubber.body(&x.body),
                }),
                error: result.as_ref().err().map(|e| RecordedError {
                    kind: "network".into(),
                    message: self.scrubber.text(e),
                }),
            });
        }
        result.map_err(|e| {
            if e.starts_with(TOO_BIG) {
                Failure::Final(LlmError::Http(e))
            } else {
                Failure::Passing(e, None)
            }
        })
    }

    fn send(
        &self,
        url: &url::Url,
        headers: &[(String, String)],
        body: &[u8],
        timeout: Duration,
    ) -> Result<Exchange, String> {
        let who = self.endpoint.platform.name();
        let mut req = self
            .http
            .post(url.clone())
            .timeout(timeout)
            .body(body.to_vec());
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let read = async move {
            let mut resp = req
                .send()
                .await
                .map_err(|e| format!("{who} could not be reached: {}", e.without_url()))?;
            let status = resp.status().as_u16();
            let headers = resp
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let mut body = Vec::new();
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| format!("{who}'s answer broke off: {}", e.without_url()))?
            {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_RESPONSE_BYTES {
                    return Err(format!(
                        "{TOO_BIG} ({} KiB): it was refused",
                        MAX_RESPONSE_BYTES >> 10
                    ));
                }
            }
            Ok(Exchange {
                status,
                headers,
                body,
            })
        };
        crate::outbound::block_on(read).map_err(|e| e.to_string())?
    }
}

const TOO_BIG: &str = "the answer is over the size an answer may have";

/// The request's headers, the key included.
fn headers(e: &Endpoint) -> Vec<(String, String)> {
    let mut h = vec![("content-type".to_string(), "application/json".to_string())];
    match (e.platform, &e.key) {
        (Platform::Anthropic, key) => {
            h.push(("anthropic-version".into(), anthropic::VERSION.into()));
            if let Some(k) = key {
                h.push(("x-api-key".into(), k.expose().to_string()));
            }
        }
        (_, Some(k)) => h.push(("authorization".into(), format!("Bearer {}", k.expose()))),
        (_, None) => {}
    }
    h
}

fn replayed(i: Interaction) -> Result<Exchange, Failure> {
    match (i.response, i.error) {
        (Some(r), _) => Ok(Exchange {
            status: r.status,
            headers: r.headers,
            // Bodies were checked to decode when the cassette was read.
            body: r.body.bytes().unwrap_or_default(),
        }),
        (None, Some(e)) => Err(Failure::Passing(e.message, None)),
        (None, None) => Err(Failure::Passing(
            "the recorded exchange has no answer".into(),
            None,
        )),
    }
}

/// About how many tokens a question costs before the server counts it,
/// rounded up: two tokens per three bytes of text, plus the image. Prompts
/// are mostly timestamps and numbers, which tokenise densely: a 1,000-point
/// metric's CSV is 28 KB and 17,992 tokens in OpenAI's o200k encoding
/// (1.58 bytes a token), where prose is nearer 4.
pub fn estimate_tokens(req: &ChatRequest<'_>) -> u64 {
    let text = (req.system.len() + req.text.len() + req.schema.to_string().len()) as u64;
    let image = if req.image_png.is_some() {
        IMAGE_TOKENS
    } else {
        0
    };
    (text * 2).div_ceil(3) + image
}

/// 1, 2, 4 ... seconds, at most [`MAX_BACKOFF`].
fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << (attempt - 1).min(5)).min(MAX_BACKOFF)
}

/// A `Retry-After` in seconds or as an HTTP date.
fn retry_after(headers: &[(String, String)]) -> Option<Duration> {
    let v = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
        .map(|(_, v)| v.trim())?;
    if let Ok(s) = v.parse::<f64>() {
        return (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s.min(86_400.0)));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let wait = at.signed_duration_since(chrono::Utc::now());
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// The variables a cassette records: those choosing the endpoint, keys
/// scrubbed.
pub fn recorded_env(env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    env.iter()
        .filter(|(k, _)| super::endpoint::VARIABLES.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let h = |v: &str| vec![("Retry-After".to_string(), v.to_string())];
        assert_eq!(retry_after(&h("2")), Some(Duration::from_secs(2)));
        assert_eq!(
            retry_after(&h("Wed, 21 Oct 2015 07:28:00 GMT")),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&h("soon")), None);
        assert_eq!(retry_after(&[]), None);
        assert_eq!(
            (backoff(1), backoff(3), backoff(30)),
            (Duration::from_secs(1), Duration::from_secs(4), MAX_BACKOFF)
        );
    }
}
