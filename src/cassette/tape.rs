//! One run's HTTP to a service the operator configured (a warehouse's API),
//! through the run's [`Tape`]: sent for real, sent and kept for a cassette,
//! or answered from one with no network. The requests are sandstack's own,
//! not the batch's, so no HTTP policy applies; what comes back is capped,
//! and everything kept is scrubbed of the run's secrets first.

use std::time::Duration;

use super::{Interaction, RecordedError, ReplayBook, Response, Scrubber};

/// Where answers come from.
#[derive(Debug)]
pub enum Tape {
    /// From the server.
    Live,
    /// From the server, each exchange kept for a cassette.
    Record,
    /// From a cassette; with the book's `allow_new`, what it lacks is asked
    /// for real and kept.
    Replay(ReplayBook),
}

/// An answer: status, headers and the whole body.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Exchange {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TapeError {
    /// The server could not be reached, or its answer broke off.
    #[error("{0}")]
    Network(String),
    /// The request's own time ran out (the run's deadline).
    #[error("{0}")]
    TimedOut(String),
    /// The answer was bigger than the caller allows.
    #[error("the answer from {who} is over {limit_kib} KiB: it was refused")]
    TooBig { who: String, limit_kib: usize },
    /// A replay met a request its cassette does not hold.
    #[error(
        "the cassette has no answer to {request} (matching on {match_on}){closest}: the query or the \
         settings changed since it was recorded; record it again with --record"
    )]
    NotInCassette {
        request: String,
        match_on: String,
        closest: String,
    },
}

/// The HTTP client of one run, with its tape.
pub struct TapedHttp {
    http: reqwest::Client,
    tape: Tape,
    scrubber: Scrubber,
    /// Exchanges kept for the cassette.
    interactions: Vec<Interaction>,
}

impl TapedHttp {
    pub fn new(tape: Tape, scrubber: Scrubber) -> Result<TapedHttp, String> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
        Ok(TapedHttp {
            http,
            tape,
            scrubber,
            interactions: Vec::new(),
        })
    }

    /// Whether every answer comes from a cassette, so nothing leaves the
    /// process and no credentials are needed (`new_episodes` asks for real).
    pub fn offline(&self) -> bool {
        matches!(&self.tape, Tape::Replay(book) if !book.allow_new)
    }

    /// Scrub these values from everything kept, too (a token fetched
    /// during the run).
    pub fn learn_secret_headers(&mut self, headers: &[(String, String)]) {
        self.scrubber.learn_headers(headers);
    }

    pub fn scrubber(&self) -> &Scrubber {
        &self.scrubber
    }

    /// The exchanges to write to the cassette, taken once.
    pub fn take_interactions(&mut self) -> Vec<Interaction> {
        std::mem::take(&mut self.interactions)
    }

    /// Send a request (or find it in the cassette), reading at most
    /// `max_bytes` of the answer within `timeout`; kept when the tape
    /// records. `who` names the service in errors.
    #[allow(clippy::too_many_arguments)]
    pub fn send(
        &mut self,
        who: &str,
        method: reqwest::Method,
        url: &url::Url,
        headers: &[(String, String)],
        body: &[u8],
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<Exchange, TapeError> {
        let recorded = self
            .scrubber
            .request(method.as_str(), url.as_str(), headers, body);
        let keep = match &mut self.tape {
            Tape::Replay(book) => {
                if let Some(i) = book.find(&recorded) {
                    return replayed(i, who, max_bytes);
                }
                if !book.allow_new {
                    return Err(TapeError::NotInCassette {
                        request: format!("{} {}", recorded.method, recorded.url),
                        match_on: book.match_on_text(),
                        closest: book
                            .closest(&recorded)
                            .map(|c| format!("; the closest recorded request is {c}"))
                            .unwrap_or_default(),
                    });
                }
                true
            }
            Tape::Record => true,
            Tape::Live => false,
        };
        let result = self.fetch(who, method, url, headers, body, timeout, max_bytes);
        if keep {
            self.interactions.push(Interaction {
                request: recorded,
                response: result.as_ref().ok().map(|x| Response {
                    status: x.status,
                    reason: String::new(),
                    headers: self.scrubber.headers(&x.headers),
                    url: self.scrubber.url(url.as_str()),
                    body: self.scrubber.body(&x.body),
                }),
                error: result.as_ref().err().map(|e| RecordedError {
                    kind: "network".into(),
                    message: self.scrubber.text(&e.to_string()),
                }),
            });
        }
        result
    }

    /// A request that is never kept nor looked up (a credential exchange:
    /// its body holds a signed assertion that changes every run, and its
    /// answer a token); a replay never makes one.
    pub fn send_unrecorded(
        &self,
        who: &str,
        url: &url::Url,
        headers: &[(String, String)],
        body: &[u8],
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<Exchange, TapeError> {
        self.fetch(
            who,
            reqwest::Method::POST,
            url,
            headers,
            body,
            timeout,
            max_bytes,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn fetch(
        &self,
        who: &str,
        method: reqwest::Method,
        url: &url::Url,
        headers: &[(String, String)],
        body: &[u8],
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<Exchange, TapeError> {
        let mut req = self
            .http
            .request(method, url.clone())
            .timeout(timeout)
            .body(body.to_vec());
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let who = who.to_string();
        let read = async move {
            let failed = |what: &str, e: reqwest::Error| {
                let timeout = e.is_timeout();
                let text = format!("{who} {what}: {}", e.without_url());
                if timeout {
                    TapeError::TimedOut(text)
                } else {
                    TapeError::Network(text)
                }
            };
            let mut resp = req
                .send()
                .await
                .map_err(|e| failed("could not be reached", e))?;
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
                .map_err(|e| failed("answered, then broke off", e))?
            {
                body.extend_from_slice(&chunk);
                if body.len() > max_bytes {
                    return Err(TapeError::TooBig {
                        who,
                        limit_kib: max_bytes >> 10,
                    });
                }
            }
            Ok(Exchange {
                status,
                headers,
                body,
            })
        };
        crate::outbound::block_on(read).map_err(|e| TapeError::Network(e.to_string()))?
    }
}

fn replayed(i: Interaction, who: &str, max_bytes: usize) -> Result<Exchange, TapeError> {
    match (i.response, i.error) {
        (Some(r), _) => {
            // Bodies were checked to decode when the cassette was read.
            let body = r.body.bytes().unwrap_or_default();
            if body.len() > max_bytes {
                return Err(TapeError::TooBig {
                    who: who.to_string(),
                    limit_kib: max_bytes >> 10,
                });
            }
            Ok(Exchange {
                status: r.status,
                headers: r.headers,
                body,
            })
        }
        (None, Some(e)) => Err(TapeError::Network(e.message)),
        (None, None) => Err(TapeError::Network(
            "the recorded exchange has no answer".into(),
        )),
    }
}
