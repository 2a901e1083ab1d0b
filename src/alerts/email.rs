//! The `email` channel: SMTP through lettre, with implicit TLS, STARTTLS,
//! or plain (local relays and test sinks only). A message is a plain-text
//! body and, as Anomstack sends, an HTML one with the plot shown inline
//! (a PNG part the HTML names by Content-ID). The subject goes through
//! `escape::email_header`, the plain body through `escape::email_body` and
//! every text in the HTML through `escape::html`: all can carry a batch's
//! text.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{SmtpTransport, Transport};

use super::{Channel, Message, SendError};
use crate::escape;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// TLS from the first byte (usually port 465).
    Tls,
    /// Plain connection upgraded with STARTTLS, required (usually 587).
    StartTls,
    /// No encryption: only for a relay on the same machine or network.
    Plain,
}

impl Security {
    pub fn parse(s: &str) -> Result<Security, String> {
        match s.to_ascii_lowercase().as_str() {
            "tls" | "ssl" => Ok(Security::Tls),
            "starttls" => Ok(Security::StartTls),
            "plain" | "none" => Ok(Security::Plain),
            _ => Err(format!(
                "SANDSTACK_ALERT_EMAIL_SECURITY must be tls, starttls or plain, found `{s}`"
            )),
        }
    }
}

pub struct EmailChannel {
    from: Mailbox,
    to: Vec<Mailbox>,
    transport: SmtpTransport,
    server: String,
}

impl EmailChannel {
    /// `from` and `to` are (variable, value): an error names the variable
    /// the value came from.
    pub fn new(
        (from_var, from): (&str, &str),
        (to_var, to): (&str, &str),
        host: &str,
        port: u16,
        security: Security,
        password: Option<String>,
    ) -> Result<Self, String> {
        let from: Mailbox = from
            .parse()
            .map_err(|e| format!("{from_var} `{from}` is not an address: {e}"))?;
        let to = to
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| {
                t.parse::<Mailbox>()
                    .map_err(|e| format!("{to_var}: `{t}` is not an address: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if to.is_empty() {
            return Err(format!("{to_var} names no address"));
        }
        let builder = match security {
            Security::Tls => SmtpTransport::relay(host),
            Security::StartTls => SmtpTransport::starttls_relay(host),
            Security::Plain => Ok(SmtpTransport::builder_dangerous(host)),
        }
        .map_err(|e| format!("SMTP host `{host}`: {e}"))?;
        let mut builder = builder.port(port).timeout(Some(Duration::from_secs(20)));
        if let Some(pw) = password {
            // Anomstack logs in as the sender address.
            builder = builder.credentials(Credentials::new(from.email.to_string(), pw));
        }
        Ok(EmailChannel {
            from,
            to,
            transport: builder.build(),
            server: format!("{host}:{port}"),
        })
    }
}

/// The Content-ID of the `i`-th plot's part, which the HTML body shows.
fn plot_id(i: usize) -> String {
    if i == 0 {
        "plot".into()
    } else {
        format!("plot{i}")
    }
}

/// The HTML body: the subject as a heading, the text as preformatted
/// lines, the plot below. Every text is escaped; nothing from the message
/// is markup.
fn html_body(m: &Message) -> String {
    let plot: String = m
        .plots
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!(
                "<p><img src=\"cid:{}\" alt=\"{}\" style=\"max-width:100%\"></p>\n",
                plot_id(i),
                escape::html(&p.filename)
            )
        })
        .collect();
    format!(
        "<!doctype html>\n<html><body style=\"font-family:sans-serif\">\n<h3>{}</h3>\n\
         <pre style=\"white-space:pre-wrap;font-family:inherit\">{}</pre>\n{plot}</body></html>\n",
        escape::html(&escape::email_header(&m.subject)),
        escape::html(&m.text)
    )
}

impl Channel for EmailChannel {
    fn name(&self) -> &'static str {
        "email"
    }

    fn send(&self, m: &Message) -> Result<(), SendError> {
        let mut b = lettre::Message::builder()
            .from(self.from.clone())
            .subject(escape::email_header(&m.subject));
        for to in &self.to {
            b = b.to(to.clone());
        }
        let text = MultiPart::alternative_plain_html(escape::email_body(&m.text), html_body(m));
        let body = if m.plots.is_empty() {
            text
        } else {
            let png =
                ContentType::parse("image/png").map_err(|e| SendError::permanent(e.to_string()))?;
            let mut related = MultiPart::related().multipart(text);
            for (i, p) in m.plots.iter().enumerate() {
                related = related.singlepart(
                    Attachment::new_inline_with_name(plot_id(i), p.filename.clone())
                        .body(p.png.clone(), png.clone()),
                );
            }
            related
        };
        let mail = b
            .multipart(body)
            .map_err(|e| SendError::permanent(format!("building the e-mail: {e}")))?;
        self.transport.send(&mail).map(|_| ()).map_err(|e| {
            let message = format!("SMTP server {}: {e}", self.server);
            // A 5xx reply refuses this mail for good; anything else (4xx,
            // a dropped connection, a timeout) may pass later.
            if e.is_permanent() {
                SendError::permanent(message)
            } else {
                SendError::transient(message)
            }
        })
    }
}
