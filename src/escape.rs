//! Text that came from a batch, escaped for where it goes: one function per
//! destination, and every line sandstack writes that carries such text goes
//! through the one for its destination.
//!
//! From a batch is everything the batch author wrote or made at run time:
//! names of metrics, files and YAML keys, tags, SQL results, errors that
//! echo its SQL or its code (DuckDB repeats a failing statement), what its
//! Python printed, logged and raised, a chat model's reasons. Metric names
//! are held to rules at ingest, but plain printable text is still live in
//! Slack (`<!channel>`, `<url|label>`), HTML and e-mail headers, and most
//! of the rest has no rules at all: so each destination escapes, whatever
//! checks came before.
//!
//! - a terminal, one line ([`terminal_line`]): a record (an error, a
//!   warning, a row) stays one line and acts on nothing;
//! - a terminal, several lines ([`terminal_block`], [`terminal_indented`]):
//!   a run's log or a traceback keeps its lines, and nothing else;
//! - a table ([`table`]): every cell and column name in one-line form before
//!   it is drawn, so no cell can break the frame;
//! - a log line ([`log_line`], installed for every field by [`log_fields`]);
//! - Slack ([`slack`]); e-mail ([`email_header`], [`email_body`]); the
//!   dashboard's HTML ([`html`]); Prometheus label values
//!   ([`prometheus_label`]).
//!
//! Webhooks need nothing here: their body is JSON made by serde_json, which
//! escapes quotes, backslashes and every control character
//! (`alerts/webhook.rs`); the control API's answers are JSON the same way.
//!
//! Hand-written: a dozen lines over `char::is_control`; the crates that deal
//! with terminal escapes strip them, and an operator should see that they
//! were there. HTML escaping is minijinja's, label values' quoting is
//! prometheus-client's, and tables are arrow's; what is added to each is
//! the control characters.

use std::fmt::{self, Write as _};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};

/// Unicode's explicit bidirectional formatting characters, which reorder
/// what a terminal shows ("Trojan Source").
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}')
}

/// A character that acts on a terminal instead of showing: a control
/// character (C0, DEL and C1: ESC, BEL, CR, ... and the 8-bit CSI) or a
/// bidirectional override.
pub fn acts_on_terminal(c: char) -> bool {
    c.is_control() || is_bidi_control(c)
}

/// Unicode's line and paragraph separators: not control characters, but
/// log viewers, editors and JavaScript break lines at them, so text that
/// must stay one line escapes them too.
fn is_line_separator(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}')
}

/// What every destination escapes.
fn escaped(c: char) -> bool {
    acts_on_terminal(c) || is_line_separator(c)
}

fn escape(c: char, out: &mut String) {
    let _ = write!(out, "\\u{{{:x}}}", c as u32);
}

/// For a terminal, several lines: control characters, bidirectional
/// overrides and line separators shown as `\u{..}`; newlines and tabs kept.
/// For what is meant to have lines (a run's log, a traceback, a table) and
/// is shown framed, indented or as the last thing printed.
pub fn terminal_block(text: &str) -> String {
    escape_where(text, |c| escaped(c) && c != '\n' && c != '\t')
}

/// For XML 1.0 text and attribute values (a JUnit report): as
/// [`terminal_block`], and the noncharacters U+FFFE and U+FFFF, which XML
/// cannot carry even as references, as `\u{..}` too. The XML writer then
/// escapes `<`, `&` and quotes.
pub fn xml(text: &str) -> String {
    escape_where(text, |c| {
        (escaped(c) && c != '\n' && c != '\t') || matches!(c, '\u{fffe}' | '\u{ffff}')
    })
}

/// `text` with each character `escaped` says as `\u{..}`.
fn escape_where(text: &str, escaped: impl Fn(char) -> bool) -> String {
    if !text.chars().any(&escaped) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if escaped(c) {
            escape(c, &mut out);
        } else {
            out.push(c);
        }
    }
    out
}

/// The first `max_chars` characters of `text`, with `…` if it was longer.
pub fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// For a terminal, one line: as [`terminal_block`], and newlines as `\n`
/// (tabs as a space), so a record is one line and nothing in it can pass
/// for a line of sandstack's own (an `error: batch other: ...`).
pub fn terminal_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push(' '),
            c if escaped(c) => escape(c, &mut out),
            c => out.push(c),
        }
    }
    out
}

/// For a terminal, a record that may have several lines (an error with its
/// traceback or notes): [`terminal_block`], with every line after the first
/// starting with `indent`, so none of them starts where a line of
/// sandstack's own does.
pub fn terminal_indented(text: &str, indent: &str) -> String {
    terminal_block(text).replace('\n', &format!("\n{indent}"))
}

/// Record batches as a text table (for a terminal, and the plain text of
/// alerts): every value and column name in [`terminal_line`] form before
/// arrow draws it, so a cell holding a newline cannot break the table, nor
/// one holding an escape act on a terminal. Values read as arrow's own
/// pretty printer shows them; nulls stay empty.
pub fn table(batches: &[RecordBatch]) -> Result<String, ArrowError> {
    let options = FormatOptions::default().with_display_error(true);
    let shown = batches
        .iter()
        .map(|b| as_escaped_text(b, &options))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(arrow::util::pretty::pretty_format_batches(&shown)?.to_string())
}

/// `batch` with each column as escaped text.
fn as_escaped_text(
    batch: &RecordBatch,
    options: &FormatOptions,
) -> Result<RecordBatch, ArrowError> {
    let fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| Field::new(terminal_line(f.name()), DataType::Utf8, true))
        .collect();
    let columns = batch
        .columns()
        .iter()
        .map(|column| {
            let formatter = ArrayFormatter::try_new(column.as_ref(), options)?;
            let text: StringArray = (0..column.len())
                .map(|i| {
                    (!column.is_null(i)).then(|| terminal_line(&formatter.value(i).to_string()))
                })
                .collect();
            Ok(Arc::new(text) as ArrayRef)
        })
        .collect::<Result<Vec<_>, ArrowError>>()?;
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

/// For a log line: [`terminal_line`]. tracing-subscriber escapes ESC, BEL,
/// BS, FF, DEL and C1 in an event's message, but neither `\n` nor `\r`
/// (nor anything in other fields), so a message could still forge a line
/// of the log.
pub fn log_line(text: &str) -> String {
    terminal_line(text)
}

/// How the fields of a log event are written: each value through
/// [`log_line`] (the message bare, others as `name=value`), so no event,
/// whichever call site logs it, can take more than its one line. Installed
/// by the command line's logger.
pub fn log_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + Send + Sync + 'static
{
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(write_log_field as LogFieldFn).delimited(" ")
}

type LogFieldFn = fn(
    &mut tracing_subscriber::fmt::format::Writer<'_>,
    &tracing::field::Field,
    &dyn fmt::Debug,
) -> fmt::Result;

fn write_log_field(
    w: &mut tracing_subscriber::fmt::format::Writer<'_>,
    field: &tracing::field::Field,
    value: &dyn fmt::Debug,
) -> fmt::Result {
    let name = field.name();
    // `log` crate records: their target and place are already said.
    if name.starts_with("log.") {
        return Ok(());
    }
    let text = log_line(&format!("{value:?}"));
    if name == "message" {
        w.write_str(&text)
    } else {
        write!(w, "{name}={text}")
    }
}

/// For Slack (mrkdwn and every other text field): `&`, `<` and `>` as
/// `&amp;`, `&lt;` and `&gt;`, the three characters Slack's "Formatting
/// text" asks to escape, because they make its control sequences: with them
/// escaped no `<!channel>`, `<!here>`, `<@U123>` or `<https://...|label>`
/// survives as a mention or a disguised link. A backtick becomes `ˋ`
/// (U+02CB, which looks the same): sandstack sends a batch's text inside a
/// code block, where Slack formats nothing and links no URL, and three
/// backticks would close it early and leave the rest live. Control
/// characters as in [`terminal_block`] (lines kept).
pub fn slack(text: &str) -> String {
    let block = terminal_block(text);
    let mut out = String::with_capacity(block.len());
    for c in block.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '`' => out.push('\u{2cb}'),
            c => out.push(c),
        }
    }
    out
}

/// For an e-mail header (the subject): [`terminal_line`], one line with no
/// control character. lettre already encodes a value holding CR or LF
/// (RFC 2047), so no header can be added, but it passes ESC and the other
/// control characters raw, and a mail read in a terminal would act on them.
pub fn email_header(text: &str) -> String {
    terminal_line(text)
}

/// For a plain-text e-mail body: [`terminal_block`] (its lines kept).
pub fn email_body(text: &str) -> String {
    terminal_block(text)
}

/// For HTML text and attribute values: control characters as in
/// [`terminal_block`] (invisible in a page, and bidirectional overrides
/// reorder it), then minijinja's HTML escaping (`&`, `<`, `>`, `"`, `'`
/// and `/`). The dashboard's templates write every value through this.
pub fn html(text: &str) -> String {
    minijinja::HtmlEscape(&terminal_block(text)).to_string()
}

/// JSON for a page's `<script type="application/json">` element: `<`, `>`
/// and `&` written as `\u003c`, `\u003e`, `\u0026` (still the same JSON),
/// so no value, a metric named `</script>` included, can end the element.
/// Text inside keeps its characters: the browser's script reads it, and
/// every page writes it with `textContent`.
pub fn script_json(value: &impl serde::Serialize) -> Result<String, serde_json::Error> {
    Ok(serde_json::to_string(value)?
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026"))
}

/// For a Prometheus / OpenMetrics label value: [`terminal_line`].
/// prometheus-client then escapes `\`, `"` and `\n` as the format requires,
/// and passes everything else raw, `\r` and ESC included (a scrape read
/// with curl is read in a terminal).
pub fn prometheus_label(text: &str) -> String {
    terminal_line(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_text_keeps_lines_and_escapes_what_xml_cannot_carry() {
        assert_eq!(xml("a\n\tb"), "a\n\tb");
        assert_eq!(
            xml("\u{1b}[31m\u{0}\u{fffe}\u{ffff}\r"),
            "\\u{1b}[31m\\u{0}\\u{fffe}\\u{ffff}\\u{d}"
        );
    }

    #[test]
    fn json_for_a_script_element_cannot_end_it() {
        let v = serde_json::json!({"metric": "</script><script>alert(1)</script> & <!--"});
        let text = script_json(&v).expect("json");
        assert!(
            !text.contains('<') && !text.contains('>') && !text.contains('&'),
            "{text}"
        );
        let back: serde_json::Value = serde_json::from_str(&text).expect("still JSON");
        assert_eq!(back, v);
    }

    /// An OSC 52 clipboard write, a title change, a screen clear, a
    /// carriage return, a bidirectional override and a forged line.
    const HOSTILE: &str =
        "\u{1b}]52;c;ZXZpbA==\u{7}\u{1b}]0;title\u{7}\u{1b}[2J\rok\u{202e}\nerror: batch victim: forged";

    const SLACK: &str = "<!channel> <https://evil.example/login|Sign in again>";

    #[test]
    fn escapes_terminal_controls_and_keeps_text() {
        assert_eq!(terminal_block("plain\n\ttext é"), "plain\n\ttext é");
        assert_eq!(
            terminal_block("\x1b]52;c;ZXZpbA==\x07\x1b[2J\rok\u{202e}"),
            "\\u{1b}]52;c;ZXZpbA==\\u{7}\\u{1b}[2J\\u{d}ok\\u{202e}"
        );
        assert_eq!(terminal_block("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(terminal_block("a\u{2028}b\u{7f}"), "a\\u{2028}b\\u{7f}");
    }

    #[test]
    fn terminal_line_cannot_forge_a_line() {
        let forged = terminal_line("fine\nerror: batch other: ingest exceeded ingest_fuel");
        assert!(!forged.contains('\n'));
        assert_eq!(
            forged,
            "fine\\nerror: batch other: ingest exceeded ingest_fuel"
        );
        assert_eq!(
            terminal_line(HOSTILE),
            "\\u{1b}]52;c;ZXZpbA==\\u{7}\\u{1b}]0;title\\u{7}\\u{1b}[2J\\u{d}ok\\u{202e}\\nerror: batch victim: forged"
        );
    }

    #[test]
    fn indented_lines_cannot_start_a_line_of_their_own() {
        assert_eq!(
            terminal_indented("boom\nerror: batch victim: forged\r\x1b[2J", "  "),
            "boom\n  error: batch victim: forged\\u{d}\\u{1b}[2J"
        );
    }

    #[test]
    fn a_table_cell_cannot_break_the_table() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("name\n| forged", DataType::Utf8, true),
            Field::new("rows", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some(HOSTILE), None])),
                Arc::new(arrow::array::Int64Array::from(vec![Some(7), Some(12)])),
            ],
        )
        .expect("batch");
        let cell = "\\u{1b}]52;c;ZXZpbA==\\u{7}\\u{1b}]0;title\\u{7}\\u{1b}[2J\\u{d}ok\\u{202e}\\nerror: batch victim: forged";
        let w = cell.len();
        let rule = format!("+{}+------+", "-".repeat(w + 2));
        let expected = format!(
            "{rule}\n| {:<w$} | rows |\n{rule}\n| {cell} | 7    |\n| {:<w$} | 12   |\n{rule}",
            "name\\n| forged", ""
        );
        assert_eq!(table(&[batch]).expect("table"), expected);
    }

    #[test]
    fn slack_text_has_no_mentions_or_links() {
        assert_eq!(
            slack(SLACK),
            "&lt;!channel&gt; &lt;https://evil.example/login|Sign in again&gt;"
        );
        assert_eq!(
            slack("<!here> & <@U123>\n\x1b[2J"),
            "&lt;!here&gt; &amp; &lt;@U123&gt;\n\\u{1b}[2J"
        );
        // No way out of the code block the text is sent in.
        let fenced = slack("cpu``` *URGENT: re-login at* https://evil.example/x ```");
        assert!(!fenced.contains('`'), "{fenced}");
        assert_eq!(
            fenced,
            "cpu\u{2cb}\u{2cb}\u{2cb} *URGENT: re-login at* https://evil.example/x \u{2cb}\u{2cb}\u{2cb}"
        );
    }

    #[test]
    fn an_email_header_is_one_line() {
        assert_eq!(
            email_header("cpu\r\nBcc: victim@example.com\x1b]0;t\x07"),
            "cpu\\u{d}\\nBcc: victim@example.com\\u{1b}]0;t\\u{7}"
        );
        assert_eq!(email_body("a\nb\x1b[2J"), "a\nb\\u{1b}[2J");
    }

    #[test]
    fn html_escapes_markup_and_shows_controls() {
        assert_eq!(
            html("<b x='1'>\"&</b>\x1b[2J\u{202e}\n"),
            "&lt;b x=&#x27;1&#x27;&gt;&quot;&amp;&lt;&#x2f;b&gt;\\u{1b}[2J\\u{202e}\n"
        );
    }

    #[test]
    fn prometheus_labels_are_one_line() {
        assert_eq!(
            prometheus_label("a\"} x{\n\r\x1b"),
            "a\"} x{\\n\\u{d}\\u{1b}"
        );
    }

    /// A writer the test's subscriber writes into.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_log_event_is_one_line() {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(log_fields())
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(batch = %"b\nx", "metric {}: {}", SLACK, HOSTILE);
        });
        let text = String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf-8");
        assert_eq!(
            text,
            " WARN metric <!channel> <https://evil.example/login|Sign in again>: \
             \\u{1b}]52;c;ZXZpbA==\\u{7}\\u{1b}]0;title\\u{7}\\u{1b}[2J\\u{d}ok\\u{202e}\\nerror: batch victim: forged \
             batch=b\\nx\n"
        );
    }
}
