//! E-mail through the configured SMTP relay (lettre), STARTTLS where the relay offers it.

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;
use std::time::Duration;

use crate::config::Notifications;
use crate::store::notices::Delivery;

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// The domain of the sender, for Message-IDs.
    domain: String,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

impl Mailer {
    pub fn from_config(config: &Notifications, timeout: Duration) -> anyhow::Result<Option<Self>> {
        let Some(url) = &config.smtp_url else {
            return Ok(None);
        };
        let url = url::Url::parse(url.expose_secret())
            .map_err(|e| anyhow::anyhow!("notifications.smtp_url does not parse: {e}"))?;
        let host = url
            .host_str()
            .ok_or_else(|| anyhow::anyhow!("notifications.smtp_url names no host"))?
            .to_string();
        let tls_mode = url
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.to_string());
        let parameters = || TlsParameters::new(host.clone());
        let (tls, default_port) = match (url.scheme(), tls_mode.as_deref()) {
            ("smtps", _) => (Tls::Wrapper(parameters()?), 465),
            ("smtp", None | Some("opportunistic")) => (Tls::Opportunistic(parameters()?), 25),
            ("smtp", Some("required")) => (Tls::Required(parameters()?), 587),
            ("smtp", Some("none")) => (Tls::None, 25),
            (scheme, mode) => anyhow::bail!(
                "notifications.smtp_url: '{scheme}' with tls={mode:?} is not understood; use smtp:// \
                 (STARTTLS when offered), smtp://...?tls=required or smtps://"
            ),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host)
            .port(url.port().unwrap_or(default_port))
            .tls(tls)
            .timeout(Some(timeout));
        if !url.username().is_empty() {
            let user = percent_decode(url.username());
            let password = percent_decode(url.password().unwrap_or_default());
            builder = builder.credentials(Credentials::new(user, password));
        }
        let from: Mailbox = config.mail_from.parse().map_err(|e| {
            anyhow::anyhow!(
                "notifications.mail_from '{}' is not a mailbox: {e}",
                config.mail_from
            )
        })?;
        let domain = from.email.domain().to_string();
        Ok(Some(Mailer {
            transport: builder.build(),
            from,
            domain,
        }))
    }

    pub async fn send(&self, d: &Delivery) -> Result<(), String> {
        let to: Mailbox = d
            .recipient
            .parse()
            .map_err(|e| format!("'{}' is not an e-mail address: {e}", d.recipient))?;
        // The Message-ID is the idempotency key: a receiver that sees a message twice (a node
        // died after handing it over but before recording that) can tell.
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(&d.subject)
            .message_id(Some(format!("<{}@{}>", d.idempotency_key, self.domain)))
            .header(ContentType::TEXT_PLAIN)
            .body(d.body.clone())
            .map_err(|e| format!("the message cannot be built: {e}"))?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| format!("SMTP: {e}"))
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.to_string())
        .unwrap_or_default()
}
