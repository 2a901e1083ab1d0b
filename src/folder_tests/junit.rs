//! Test results as JUnit XML (`sandstack test --junit FILE`), the report
//! CI systems read: one `testsuite` per batch, one `testcase` per test,
//! with a `failure` (rows differ, or no expected file) or an `error` (it
//! could not run) holding what the terminal shows. Text from a batch is
//! escaped twice: what XML 1.0 cannot carry at all, escaped or not, as
//! `\u{..}` (`escape::xml`), then `<`, `&` and quotes by quick-xml.

use std::collections::BTreeMap;
use std::io::Write;

use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;

use super::run::{Outcome, TestResult};

/// The suite refused test files go in (they have no batch to go under).
const REFUSED_SUITE: &str = "refused test files";

/// The report's XML for `results`.
pub fn report(results: &[TestResult]) -> Result<String, std::io::Error> {
    let mut suites: BTreeMap<&str, Vec<&TestResult>> = BTreeMap::new();
    for r in results {
        let suite = if r.batch.is_empty() {
            REFUSED_SUITE
        } else {
            r.batch.as_str()
        };
        suites.entry(suite).or_default().push(r);
    }
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    let all: Vec<&TestResult> = results.iter().collect();
    let mut top = BytesStart::new("testsuites");
    top.push_attribute(("name", "sandstack test"));
    counts(&mut top, &all);
    w.write_event(Event::Start(top))?;
    for (name, results) in &suites {
        let mut suite = BytesStart::new("testsuite");
        suite.push_attribute(("name", line(name).as_str()));
        counts(&mut suite, results);
        w.write_event(Event::Start(suite))?;
        for r in results {
            case(&mut w, r)?;
        }
        w.write_event(Event::End(BytesEnd::new("testsuite")))?;
    }
    w.write_event(Event::End(BytesEnd::new("testsuites")))?;
    let mut out = w.into_inner();
    out.write_all(b"\n")?;
    String::from_utf8(out).map_err(std::io::Error::other)
}

/// The `tests`, `failures`, `errors`, `skipped` and `time` attributes.
fn counts(e: &mut BytesStart<'_>, results: &[&TestResult]) {
    let n = |f: fn(&Outcome) -> bool| results.iter().filter(|r| f(&r.outcome)).count().to_string();
    let time: f64 = results.iter().map(|r| r.elapsed.as_secs_f64()).sum();
    e.push_attribute(("tests", results.len().to_string().as_str()));
    e.push_attribute((
        "failures",
        n(|o| {
            matches!(
                o,
                Outcome::Failed(_) | Outcome::NoExpected | Outcome::BadExpected(_)
            )
        })
        .as_str(),
    ));
    e.push_attribute(("errors", n(|o| matches!(o, Outcome::Error(_))).as_str()));
    e.push_attribute(("skipped", n(|o| matches!(o, Outcome::NotRun)).as_str()));
    e.push_attribute(("time", format!("{time:.3}").as_str()));
}

fn case(w: &mut Writer<Vec<u8>>, r: &TestResult) -> Result<(), std::io::Error> {
    let mut e = BytesStart::new("testcase");
    let class = if r.batch.is_empty() {
        REFUSED_SUITE
    } else {
        r.batch.as_str()
    };
    e.push_attribute(("classname", line(class).as_str()));
    e.push_attribute(("name", line(&r.name).as_str()));
    e.push_attribute(("time", format!("{:.3}", r.elapsed.as_secs_f64()).as_str()));
    let (tag, message, body) = match &r.outcome {
        Outcome::Passed => (None, String::new(), String::new()),
        Outcome::Failed(diff) => {
            let mut lines = diff.lines.join("\n");
            let all = diff.changed + diff.missing + diff.extra;
            if all > diff.lines.len() {
                lines.push_str(&format!("\n... and {} more", all - diff.lines.len()));
            }
            (Some("failure"), diff.summary(), lines)
        }
        Outcome::NoExpected => (
            Some("failure"),
            "no expected rows: run `sandstack test --update` and review them".to_string(),
            String::new(),
        ),
        Outcome::BadExpected(message) => (Some("failure"), message.clone(), message.clone()),
        Outcome::Error(message) => (Some("error"), message.clone(), message.clone()),
        Outcome::NotRun => (
            Some("skipped"),
            "not run after an earlier failure (--fail-fast)".to_string(),
            String::new(),
        ),
    };
    // A batch's error may quote megabytes of its own text.
    let mut body = crate::escape::truncate(&body, 4_000);
    for note in &r.notes {
        body.push_str(&format!("\nnote: {note}"));
    }
    let Some(tag) = tag else {
        if r.notes.is_empty() {
            return w.write_event(Event::Empty(e));
        }
        w.write_event(Event::Start(e))?;
        text_element(w, BytesStart::new("system-out"), body.trim_start())?;
        return w.write_event(Event::End(BytesEnd::new("testcase")));
    };
    w.write_event(Event::Start(e))?;
    let mut inner = BytesStart::new(tag);
    inner.push_attribute((
        "message",
        line(&crate::escape::truncate(&message, 500)).as_str(),
    ));
    if body.trim().is_empty() {
        w.write_event(Event::Empty(inner))?;
    } else {
        text_element(w, inner, body.trim_start())?;
    }
    w.write_event(Event::End(BytesEnd::new("testcase")))
}

/// `start`, `text` (escaped) and the matching end.
fn text_element(
    w: &mut Writer<Vec<u8>>,
    start: BytesStart<'_>,
    text: &str,
) -> Result<(), std::io::Error> {
    let end = start.to_end().into_owned();
    w.write_event(Event::Start(start))?;
    let text = crate::escape::xml(text);
    w.write_event(Event::Text(BytesText::new(&text)))?;
    w.write_event(Event::End(end))
}

/// An attribute's value: one line, control characters escaped.
fn line(text: &str) -> String {
    crate::escape::xml(&crate::escape::terminal_line(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::folder_tests::expected::Diff;
    use std::time::Duration;

    fn result(batch: &str, name: &str, outcome: Outcome) -> TestResult {
        TestResult {
            id: format!("{batch}/{name}"),
            batch: batch.into(),
            name: name.into(),
            outcome,
            notes: Vec::new(),
            actual: None,
            expected: None,
            elapsed: Duration::from_millis(250),
        }
    }

    #[test]
    fn results_become_suites_cases_failures_and_errors() {
        let diff = Diff {
            changed: 1,
            lines: vec![
                "line 2 (a, metric, 2026-01-01T00:00:00Z): metric_value expected 1.0, got 2.0"
                    .into(),
            ],
            ..Diff::default()
        };
        let xml = report(&[
            result("hn", "front", Outcome::Passed),
            result("hn", "spike", Outcome::Failed(diff)),
            result(
                "rnd",
                "seeded",
                Outcome::Error("it <broke> & \"stopped\"".into()),
            ),
            result(
                "",
                "metrics/x/tests/y.yaml",
                Outcome::Error("it is a symlink".into()),
            ),
        ])
        .expect("xml");
        assert!(
            xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
            "{xml}"
        );
        assert!(xml.contains("<testsuites name=\"sandstack test\" tests=\"4\" failures=\"1\" errors=\"2\" skipped=\"0\" time=\"1.000\">"), "{xml}");
        assert!(
            xml.contains("<testsuite name=\"hn\" tests=\"2\" failures=\"1\" errors=\"0\""),
            "{xml}"
        );
        assert!(
            xml.contains("<testcase classname=\"hn\" name=\"front\" time=\"0.250\"/>"),
            "{xml}"
        );
        assert!(xml.contains("<failure message=\"1 row differs\">line 2 (a, metric, 2026-01-01T00:00:00Z): metric_value expected 1.0, got 2.0</failure>"), "{xml}");
        assert!(
            xml.contains("<error message=\"it &lt;broke&gt; &amp; &quot;stopped&quot;\">"),
            "{xml}"
        );
        assert!(
            xml.contains("<testsuite name=\"refused test files\""),
            "{xml}"
        );
    }

    #[test]
    fn a_batch_cannot_break_the_xml_or_smuggle_control_characters() {
        let hostile = "x\"/><testcase name=\"forged\u{1b}[31m\u{0}\u{7}\r\u{fffe}\u{ffff}";
        let mut r = result(
            hostile,
            hostile,
            Outcome::Error(format!("{hostile}\n{hostile}")),
        );
        r.notes.push(hostile.into());
        let xml = report(&[r]).expect("xml");
        assert!(!xml.contains("<testcase name=\"forged"), "{xml}");
        assert_eq!(xml.matches("<testcase ").count(), 1, "{xml}");
        assert!(
            !xml.chars()
                .any(|c| (c.is_control() && c != '\n') || matches!(c, '\u{fffe}' | '\u{ffff}')),
            "a character XML cannot carry reached it: {xml:?}"
        );
    }
}
