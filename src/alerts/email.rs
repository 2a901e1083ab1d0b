//! The `email` channel: SMTP through lettre, with implicit TLS, STARTTLS,
//! or plain (local relays and test sinks only), the plot attached as a PNG.
//! The subject goes through `escape::email_header` and the body through
//! `escape::email_body`: both can carry a batch's text.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
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
    pub fn new(
        from: &str,
        to: &str,
        host: &str,
        port: u16,
        security: Security,
        password: Option<String>,
    ) -> Result<Self, String> {
        let from: Mailbox = from
            .parse()
            .map_err(|e| format!("ANOMSTACK_ALERT_EMAIL_FROM `{from}` is not an address: {e}"))?;
        let to = to
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| {
                t.parse::<Mailbox>()
                    .map_err(|e| format!("ANOMSTACK_ALERT_EMAIL_TO: `{t}` is not an address: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if to.is_empty() {
            return Err("ANOMSTACK_ALERT_EMAIL_TO names no address".into());
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
        let mut body =
            MultiPart::mixed().singlepart(SinglePart::plain(escape::email_body(&m.text)));
        if let Some(p) = &m.plot {
            let png =
                ContentType::parse("image/png").map_err(|e| SendError::permanent(e.to_string()))?;
            body = body.singlepart(Attachment::new(p.filename.clone()).body(p.png.clone(), png));
        }
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
