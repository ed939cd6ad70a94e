//! The channels notices go out through: e-mail over SMTP, SMS through an HTTP gateway, and a
//! signed webhook. Each sends one outbox row and says whether it was handed over. And Apple's
//! push service, which wakes iPhones.

use std::time::Duration;

use crate::config::Notifications;
use crate::domain::maintenance::Channel;
use crate::store::notices::Delivery;

pub mod apns;
pub mod email;
pub mod sms;
pub mod webhook;

/// The configured channels of a node.
#[derive(Debug)]
pub struct Channels {
    email: Option<email::Mailer>,
    sms: Option<sms::SmsGateway>,
    webhook: Option<webhook::Webhook>,
    timeout: Duration,
}

impl Channels {
    /// Builds the channels the configuration names; a wrong setting stops the server at start.
    pub fn from_config(config: &Notifications) -> anyhow::Result<Self> {
        let timeout = Duration::from_secs(config.send_timeout_seconds.max(1));
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Channels {
            email: email::Mailer::from_config(config, timeout)?,
            sms: sms::SmsGateway::from_config(config, http.clone())?,
            webhook: webhook::Webhook::from_config(config, http)?,
            timeout,
        })
    }

    /// Whether a webhook is configured (notices then get one webhook delivery each).
    pub fn has_webhook(&self) -> bool {
        self.webhook.is_some()
    }

    /// Hands one delivery to its channel; the error text is what the operator reads in the
    /// dead-letter list.
    pub async fn send(&self, d: &Delivery) -> Result<(), String> {
        let sending = async {
            match d.channel {
                Channel::Email => match &self.email {
                    Some(mailer) => mailer.send(d).await,
                    None => Err("no SMTP relay is configured (notifications.smtp_url)".to_string()),
                },
                Channel::Sms => match &self.sms {
                    Some(gateway) => gateway.send(d).await,
                    None => Err(
                        "no SMS gateway is configured (notifications.sms_gateway_url)".to_string(),
                    ),
                },
                Channel::Webhook => match &self.webhook {
                    Some(hook) => hook.send(d).await,
                    None => Err("no webhook is configured (notifications.webhook_url)".to_string()),
                },
            }
        };
        tokio::time::timeout(self.timeout + Duration::from_secs(1), sending)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {} s", self.timeout.as_secs())))
    }
}

/// A gateway's answer as an error text: the status and the start of the body.
async fn http_failure(response: reqwest::Response) -> String {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let body: String = body.chars().take(200).collect();
    format!("{status}: {}", body.trim())
}
