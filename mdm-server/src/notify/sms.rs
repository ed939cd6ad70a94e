//! SMS through an HTTP gateway. The wire format is 46elks' (a Swedish operator's gateway): a
//! form-encoded POST of `from`, `to` and `message` with HTTP basic authentication; any 2xx
//! answer means the gateway took the message.

use secrecy::{ExposeSecret, SecretString};

use crate::config::Notifications;
use crate::store::notices::Delivery;

#[derive(Debug)]
pub struct SmsGateway {
    http: reqwest::Client,
    url: String,
    username: Option<String>,
    password: Option<SecretString>,
    sender: String,
}

impl SmsGateway {
    pub fn from_config(
        config: &Notifications,
        http: reqwest::Client,
    ) -> anyhow::Result<Option<Self>> {
        let Some(url) = &config.sms_gateway_url else {
            return Ok(None);
        };
        url::Url::parse(url)
            .map_err(|e| anyhow::anyhow!("notifications.sms_gateway_url does not parse: {e}"))?;
        let sender_ok = !config.sms_sender.is_empty()
            && config.sms_sender.len() <= 11
            && config.sms_sender.chars().all(|c| c.is_ascii_alphanumeric());
        if !sender_ok {
            anyhow::bail!(
                "notifications.sms_sender '{}' must be 1 to 11 letters and digits",
                config.sms_sender
            );
        }
        Ok(Some(SmsGateway {
            http,
            url: url.clone(),
            username: config.sms_username.clone(),
            password: config.sms_password.clone(),
            sender: config.sms_sender.clone(),
        }))
    }

    pub async fn send(&self, d: &Delivery) -> Result<(), String> {
        let mut request = self
            .http
            .post(&self.url)
            .header("Idempotency-Key", &d.idempotency_key)
            .form(&[
                ("from", self.sender.as_str()),
                ("to", d.recipient.as_str()),
                ("message", d.body.as_str()),
            ]);
        if let Some(user) = &self.username {
            request = request.basic_auth(
                user,
                self.password
                    .as_ref()
                    .map(|p| p.expose_secret().to_string()),
            );
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("SMS gateway unreachable: {e}"))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!(
                "SMS gateway answered {}",
                super::http_failure(response).await
            ))
        }
    }
}
