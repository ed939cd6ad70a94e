//! Notices posted as JSON to the operator's webhook (a status page, a ticket system). Each
//! request carries `X-MDM-Timestamp` and `X-MDM-Signature: sha256=<hex>`, the HMAC-SHA256 of
//! `<timestamp>.<body>` under the shared secret, so the receiver can check where it came from
//! and refuse replays; `Idempotency-Key` lets it drop a repeat.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::config::Notifications;
use crate::store::notices::Delivery;

/// The recipient outbox rows name for the webhook; the address itself (which may carry a
/// token) stays in the configuration, out of the database and the API.
pub const RECIPIENT: &str = "webhook";

pub struct Webhook {
    http: reqwest::Client,
    url: String,
    secret: SecretString,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = url::Url::parse(&self.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string));
        f.debug_struct("Webhook")
            .field("host", &host)
            .finish_non_exhaustive()
    }
}

/// The signature header's value for a body sent at `timestamp` (Unix seconds).
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl Webhook {
    pub fn from_config(
        config: &Notifications,
        http: reqwest::Client,
    ) -> anyhow::Result<Option<Self>> {
        let Some(url) = &config.webhook_url else {
            return Ok(None);
        };
        url::Url::parse(url)
            .map_err(|e| anyhow::anyhow!("notifications.webhook_url does not parse: {e}"))?;
        let secret = config.webhook_secret.clone().ok_or_else(|| {
            anyhow::anyhow!("notifications.webhook_secret is required with a webhook_url")
        })?;
        if secret.expose_secret().len() < 16 {
            anyhow::bail!("notifications.webhook_secret must be at least 16 characters");
        }
        Ok(Some(Webhook {
            http,
            url: url.clone(),
            secret,
        }))
    }

    pub async fn send(&self, d: &Delivery) -> Result<(), String> {
        let timestamp = chrono::Utc::now().timestamp();
        let signed = signature(
            self.secret.expose_secret().as_bytes(),
            timestamp,
            d.body.as_bytes(),
        );
        let response = self
            .http
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", &d.idempotency_key)
            .header("X-MDM-Timestamp", timestamp.to_string())
            .header("X-MDM-Signature", signed)
            .body(d.body.clone())
            .send()
            .await
            .map_err(|e| format!("webhook unreachable: {e}"))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!(
                "webhook answered {}",
                super::http_failure(response).await
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hmac_sha256_of_timestamp_dot_body() {
        // Worked out independently with Python's hmac module.
        assert_eq!(
            signature(b"Jefe", 1_700_000_000, br#"{"a":1}"#),
            "sha256=fa5f6481efc59da48b19c9dc10196c9953e5651f8304b3a318b6b87d70272e0a"
        );
        assert_ne!(signature(b"Jefe", 1, b"{}"), signature(b"Jefe", 2, b"{}"));
    }
}
