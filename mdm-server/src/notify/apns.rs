//! Apple's push service (APNs): the HTTP/2 request that wakes an iPhone so that it connects
//! and collects its commands. An MDM push carries nothing but the phone's push magic
//! (`{"mdm": "…"}`); the phone learns what to do when it connects.
//!
//! The client is reqwest (hyper and h2 beneath it) rather than an APNs crate: the maintained
//! one, `a2`, fixes the endpoint to Apple's two hosts (no proxy, no stand-in for tests), always
//! writes an `aps` dictionary, which an MDM push does not carry, and reads certificates through
//! OpenSSL. reqwest keeps one multiplexed HTTP/2 connection per host, connects again by itself
//! when it drops, and takes the push certificate as PEM through rustls, like the rest of the
//! server.

use std::time::Duration;

use crate::config::Apple;

/// The HTTP/2 client of one push certificate.
#[derive(Debug)]
pub struct Apns {
    http: reqwest::Client,
    base: String,
}

/// One push: where it goes and what it carries.
#[derive(Debug, Clone, Copy)]
pub struct Push<'a> {
    /// The device token, hex.
    pub token: &'a str,
    pub magic: &'a str,
    pub topic: &'a str,
    /// Unix time after which APNs may drop the push if the phone was not reachable.
    pub expires_at: i64,
}

/// What APNs made of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    Delivered,
    /// The token is no longer valid (410 `Unregistered`, 400 `BadDeviceToken` or
    /// `DeviceTokenNotForTopic`): the phone cannot be woken until it sends a new one.
    TokenDead(String),
    /// Worth another try later: 429, 5xx, no answer in time, no connection.
    Retry(String),
    /// Refused for a reason another try will not fix (the certificate, the topic): the operator
    /// has to act.
    Refused(String),
}

impl Apns {
    /// A client presenting `identity_pem` (the push certificate and its key).
    pub fn new(config: &Apple, identity_pem: &[u8]) -> anyhow::Result<Self> {
        let identity = reqwest::Identity::from_pem(identity_pem)
            .map_err(|e| anyhow::anyhow!("the push certificate cannot be used for TLS: {e}"))?;
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .http2_prior_knowledge()
            .http2_keep_alive_interval(Duration::from_secs(60))
            .http2_keep_alive_while_idle(true)
            .identity(identity)
            .timeout(Duration::from_secs(config.push_timeout_seconds))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(file) = &config.push_ca_file {
            let pem = std::fs::read(file).map_err(|e| {
                anyhow::anyhow!("apple.push_ca_file {} cannot be read: {e}", file.display())
            })?;
            for certificate in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| anyhow::anyhow!("apple.push_ca_file: {e}"))?
            {
                builder = builder.add_root_certificate(certificate);
            }
        }
        Ok(Apns {
            http: builder.build()?,
            base: config.push_url.trim_end_matches('/').to_string(),
        })
    }

    pub async fn send(&self, push: Push<'_>) -> PushOutcome {
        let answer = self
            .http
            .post(format!("{}/3/device/{}", self.base, push.token))
            .header("apns-push-type", "mdm")
            .header("apns-topic", push.topic)
            .header("apns-priority", "10")
            .header("apns-expiration", push.expires_at.to_string())
            .json(&serde_json::json!({ "mdm": push.magic }))
            .send()
            .await;
        let response = match answer {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return PushOutcome::Retry("APNs did not answer".into()),
            Err(e) => return PushOutcome::Retry(format!("APNs cannot be reached: {e}")),
        };
        let status = response.status().as_u16();
        if status == 200 {
            return PushOutcome::Delivered;
        }
        // APNs explains a refusal as `{"reason": "…"}`.
        let reason = response
            .json::<serde_json::Value>()
            .await
            .ok()
            .and_then(|b| b["reason"].as_str().map(str::to_string))
            .unwrap_or_else(|| format!("HTTP {status}"));
        outcome(status, reason)
    }
}

fn outcome(status: u16, reason: String) -> PushOutcome {
    match (status, reason.as_str()) {
        (410, _) | (400, "BadDeviceToken" | "DeviceTokenNotForTopic") => {
            PushOutcome::TokenDead(reason)
        }
        (429 | 500..=599, _) => PushOutcome::Retry(format!("APNs answered {status} {reason}")),
        _ => PushOutcome::Refused(format!("APNs answered {status} {reason}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apns_answers_map_to_dead_tokens_retries_and_refusals() {
        assert_eq!(
            outcome(410, "Unregistered".into()),
            PushOutcome::TokenDead("Unregistered".into())
        );
        assert!(matches!(
            outcome(400, "BadDeviceToken".into()),
            PushOutcome::TokenDead(_)
        ));
        assert!(matches!(
            outcome(400, "BadTopic".into()),
            PushOutcome::Refused(_)
        ));
        assert!(matches!(
            outcome(403, "BadCertificate".into()),
            PushOutcome::Refused(_)
        ));
        assert!(matches!(
            outcome(429, "TooManyRequests".into()),
            PushOutcome::Retry(_)
        ));
        assert!(matches!(
            outcome(503, "ServiceUnavailable".into()),
            PushOutcome::Retry(_)
        ));
    }
}
