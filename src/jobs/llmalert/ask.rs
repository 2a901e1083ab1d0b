//! One metric's questions: which points may still alert, detection, then
//! verification of the candidates among them, and the rows the confirmed
//! ones become.

use std::collections::{BTreeMap, BTreeSet};

use super::answer::{self, Finding};
use super::prompt::{self, Point};
use super::{LlmAlertOptions, LlmAlertReport};
use crate::config::BatchSpec;
use crate::domain::{Judgement, JudgementMeta, Series};
use crate::llm::{ChatAnswer, ChatRequest, Client, LlmError};

/// Answer tokens asked for per call (a budget nearly spent asks fewer).
pub const ANSWER_TOKENS: u64 = 2_048;

/// The points that may still alert: among the newest `recent_n`, not
/// stored, and not within `snooze_n` observations after a stored one.
pub fn eligible(points: &[Point], spec: &BatchSpec, done: Option<&BTreeSet<i64>>) -> BTreeSet<i64> {
    let s = &spec.llmalert;
    let is_done = |t: &i64| done.is_some_and(|d| d.contains(t));
    let first = points.len().saturating_sub(s.recent_n as usize);
    (first..points.len())
        .filter(|&i| {
            let from = i.saturating_sub(s.snooze_n as usize);
            !points[from..=i].iter().any(|p| is_done(&p.timestamp_us))
        })
        .map(|i| points[i].timestamp_us)
        .collect()
}

/// The batch's detection instructions, or sandstack's.
pub fn detection_prompt(spec: &BatchSpec) -> &str {
    let s = &spec.llmalert;
    s.detection_prompt
        .as_deref()
        .or(s.system_prompt.as_deref())
        .filter(|p| !p.trim().is_empty())
        .unwrap_or(prompt::DETECTION)
}

fn verification_prompt(spec: &BatchSpec) -> &str {
    spec.llmalert
        .verification_prompt
        .as_deref()
        .filter(|p| !p.trim().is_empty())
        .unwrap_or(prompt::VERIFICATION)
}

/// A question about one metric's points.
pub fn question<'a>(
    text: String,
    image: Option<&'a [u8]>,
    schema: &'a serde_json::Value,
) -> ChatRequest<'a> {
    ChatRequest {
        system: prompt::SYSTEM,
        text,
        image_png: image,
        schema_name: "anomalies",
        schema,
        max_answer_tokens: ANSWER_TOKENS,
    }
}

/// The questions of one run, metric after metric.
pub struct Asking<'a> {
    pub spec: &'a BatchSpec,
    pub client: &'a mut Client,
    pub opts: &'a LlmAlertOptions<'a>,
    pub report: &'a mut LlmAlertReport,
}

impl Asking<'_> {
    /// Ask about one metric; returns the rows to store.
    pub fn metric(
        &mut self,
        metric: &str,
        series: &Series,
        done: Option<&BTreeSet<i64>>,
    ) -> Result<Vec<Judgement>, LlmError> {
        let points = prompt::points(series, &self.spec.llmalert);
        let open = eligible(&points, self.spec, done);
        if open.is_empty() {
            return Ok(Vec::new());
        }
        self.report.metrics_asked += 1;
        let image = self.plot(metric, &points);
        let schema = prompt::schema();
        let text = prompt::detection_text(detection_prompt(self.spec), metric, &points);
        let found = self
            .client
            .chat(&question(text, image.as_deref(), &schema))?;
        let detected = self.read(metric, "detection", &found, &points)?;
        let candidates: Vec<Finding> = detected
            .into_iter()
            .filter(|f| open.contains(&f.timestamp_us))
            .collect();
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let listed: Vec<(String, String)> = candidates
            .iter()
            .map(|f| (f.label.clone(), f.reason.clone()))
            .collect();
        let text =
            prompt::verification_text(verification_prompt(self.spec), metric, &points, &listed);
        let verified = self
            .client
            .chat(&question(text, image.as_deref(), &schema))?;
        let confirmed = self.read(metric, "verification", &verified, &points)?;
        Ok(self.rows(metric, &points, &candidates, confirmed, [&found, &verified]))
    }

    /// The points as a PNG, with `llmalert_include_plot`.
    fn plot(&self, metric: &str, points: &[Point]) -> Option<Vec<u8>> {
        if !self.spec.llmalert.include_plot {
            return None;
        }
        let shown = Series {
            timestamps_us: points.iter().map(|p| p.timestamp_us).collect(),
            values: points.iter().map(|p| p.value).collect(),
            extra: BTreeMap::new(),
        };
        (self.opts.plot)(metric, &shown)
    }

    /// An answer's findings; what it held that was refused is noted.
    fn read(
        &mut self,
        metric: &str,
        step: &str,
        a: &ChatAnswer,
        points: &[Point],
    ) -> Result<Vec<Finding>, LlmError> {
        let checked = answer::read(&a.json, points).map_err(LlmError::Answer)?;
        for r in &checked.refused {
            tracing::warn!(metric = %metric, step = %step, answer = %r, "llmalert: an answer was refused");
            self.report
                .problems
                .push(format!("metric {metric}: {step} answer: {r}"));
        }
        Ok(checked.findings)
    }

    /// The confirmed candidates as rows, oldest first, a confirmed point
    /// within `snooze_n` observations of the one before left out.
    fn rows(
        &mut self,
        metric: &str,
        points: &[Point],
        candidates: &[Finding],
        mut confirmed: Vec<Finding>,
        answers: [&ChatAnswer; 2],
    ) -> Vec<Judgement> {
        let tokens = |f: fn(&ChatAnswer) -> Option<u64>| -> u64 {
            answers.iter().map(|a| f(a).unwrap_or(0)).sum()
        };
        let index_of: BTreeMap<i64, usize> = points
            .iter()
            .enumerate()
            .map(|(i, p)| (p.timestamp_us, i))
            .collect();
        confirmed.sort_by_key(|f| f.timestamp_us);
        let mut out = Vec::new();
        let mut last: Option<usize> = None;
        for f in confirmed {
            let Some(detected) = candidates.iter().find(|c| c.timestamp_us == f.timestamp_us)
            else {
                self.report.problems.push(format!(
                    "metric {metric}: verification confirmed {}, which was not a candidate; ignored",
                    f.label
                ));
                continue;
            };
            let i = index_of[&f.timestamp_us];
            if last.is_some_and(|j| i - j <= self.spec.llmalert.snooze_n as usize) {
                continue;
            }
            last = Some(i);
            tracing::warn!(
                batch = %self.spec.metric_batch,
                metric = %metric,
                at = %f.label,
                reason = %f.reason,
                "LLMALERT"
            );
            out.push(Judgement {
                timestamp_us: f.timestamp_us,
                metric_name: metric.to_string(),
                value: 1.0,
                metadata: Some(
                    JudgementMeta::LlmAlert {
                        reason: f.reason.clone(),
                        anomaly_explanation: f.reason.clone(),
                        detection_reason: detected.reason.clone(),
                        value: points[i].value,
                        model: self.client.endpoint().model.clone(),
                        prompt_tokens: tokens(|a| a.prompt_tokens),
                        answer_tokens: tokens(|a| a.answer_tokens),
                        tags: self.spec.metric_tags.get(metric).cloned(),
                    }
                    .to_value(),
                ),
            });
        }
        out
    }
}
