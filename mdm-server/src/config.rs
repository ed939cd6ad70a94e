//! Configuration: an optional TOML file, then `MDM_*` environment variables on top, into one
//! typed struct that refuses keys it does not know.

use chrono_tz::Tz;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the HTTP API listens.
    pub listen: SocketAddr,
    /// Where the SQLite database and the device CA live.
    pub data_dir: PathBuf,
    /// The device listener: mutual TLS for device agents.
    pub device_listen: SocketAddr,
    /// Host names and addresses the device listener's certificate is issued for.
    pub device_hostnames: Vec<String>,
    /// The device listener's address as phones reach it (put in enrollment tokens); defaults to
    /// `https://` and `device_listen`.
    #[serde(default)]
    pub device_url: Option<String>,
    /// The API's address as people reach it (`https://mdm.kommun.se`), for links the server
    /// hands out such as calendar feeds; without it they are made from the request's host.
    #[serde(default)]
    pub public_url: Option<String>,
    /// How often devices check in, in seconds.
    pub checkin_interval_seconds: u64,
    /// `sqlite://...` or `postgres://...`; empty means SQLite in the data directory.
    #[serde(default)]
    pub database_url: DatabaseUrl,
    /// The municipality's IT unit, shown in notices and the console.
    pub operator_name: String,
    /// Where times are shown and working days are counted.
    pub time_zone: Tz,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Backward compatibility the contracts promise: models recommended before the current one
    /// that stay supported.
    pub supported_generations_back: usize,
    /// Log lines as JSON instead of text.
    pub log_json: bool,
    /// Reverse proxies whose `X-Forwarded-For` names the real client in the audit trail.
    #[serde(default)]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// How notices reach people: the SMTP relay, the SMS gateway, the webhook, retries.
    #[serde(default)]
    pub notifications: Notifications,
    /// Finished commands (answered, expired, cancelled) are deleted after this many days.
    pub command_retention_days: u32,
    /// How long a phone may break the policy before its provider's IT contacts are told.
    pub compliance_grace_hours: u32,
    /// Phone requests, support hours, lost phones.
    #[serde(default)]
    pub leasing: Leasing,
    /// iPhones: waking them through Apple's push service.
    #[serde(default)]
    pub apple: Apple,
}

/// Waking iPhones through Apple's push service (APNs) with the operator's push certificate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Apple {
    /// APNs' address: Apple's production host unless a proxy (or a test's stand-in) is used.
    pub push_url: String,
    /// A PEM file of certificate authorities to trust for `push_url` besides the system's (a
    /// TLS-inspecting proxy, or a test's stand-in).
    pub push_ca_file: Option<PathBuf>,
    /// Pushes handed to APNs per second at most (a fan-out to every phone is spread out).
    pub push_rate_per_second: u32,
    /// Pushes in flight at once on the one HTTP/2 connection.
    pub push_concurrency: usize,
    /// Commands queued for a phone within this many milliseconds share one push.
    pub push_coalesce_ms: u64,
    /// A push APNs has not answered within this many seconds has failed (and is tried again).
    pub push_timeout_seconds: u64,
    /// Tries per push when APNs is busy or unreachable; the first retry waits
    /// `push_retry_base_ms`, each further one twice as long.
    pub push_attempts: u32,
    pub push_retry_base_ms: u64,
    /// An iPhone not heard from in this many hours is pushed (once per period) so it connects.
    pub wake_silent_after_hours: u32,
    /// Every iPhone is asked for its inventory (information, security, profiles, apps) this
    /// often, besides at enrollment and when someone asks.
    pub inventory_interval_hours: u32,
    /// A signed Wi-Fi profile (`.mobileconfig`) an erased iPhone sets itself up with under
    /// Return to Service, to reach the server without mobile data.
    pub return_to_service_wifi_profile: Option<PathBuf>,
}

impl Default for Apple {
    fn default() -> Self {
        Apple {
            push_url: "https://api.push.apple.com".to_string(),
            push_ca_file: None,
            push_rate_per_second: 500,
            push_concurrency: 200,
            push_coalesce_ms: 250,
            push_timeout_seconds: 10,
            push_attempts: 5,
            push_retry_base_ms: 1000,
            wake_silent_after_hours: 24,
            inventory_interval_hours: 24,
            return_to_service_wifi_profile: None,
        }
    }
}

impl Apple {
    fn check(&self) -> Result<(), String> {
        let url = url::Url::parse(&self.push_url)
            .map_err(|e| format!("apple.push_url does not parse: {e}"))?;
        if url.scheme() != "https" {
            return Err("apple.push_url: APNs is reached over https only".into());
        }
        if self.push_rate_per_second == 0 || self.push_concurrency == 0 || self.push_attempts == 0 {
            return Err(
                "apple: push_rate_per_second, push_concurrency and push_attempts must be at least 1"
                    .into(),
            );
        }
        if let Some(file) = &self.return_to_service_wifi_profile {
            if !file.is_file() {
                return Err(format!(
                    "apple.return_to_service_wifi_profile: {} is not a readable file",
                    file.display()
                ));
            }
        }
        if self.push_timeout_seconds == 0
            || self.wake_silent_after_hours == 0
            || self.inventory_interval_hours == 0
        {
            return Err(
                "apple: push_timeout_seconds, wake_silent_after_hours and inventory_interval_hours must be at least 1".into(),
            );
        }
        Ok(())
    }
}

/// Leasing operations: the deadlines the contracts set and what happens to a lost phone.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Leasing {
    /// Working days municipal IT has to get a requested phone configured and ready.
    pub configuration_working_days: u32,
    /// Support hours on working days (local time); a request after closing counts from the next
    /// working day.
    pub support_opens: chrono::NaiveTime,
    pub support_closes: chrono::NaiveTime,
    /// Closing on a working day before a public holiday.
    pub support_closes_before_holiday: chrono::NaiveTime,
    /// The support number shown on a lost phone's lock screen (E.164).
    pub support_phone_number: Option<String>,
    /// The service desk's address: lost-phone reports go there, to confirm the SIM block.
    pub service_desk_email: Option<String>,
    /// Hours after a loss report before a phone not found is wiped; 0 turns automatic wipes off.
    pub lost_wipe_after_hours: u32,
}

impl Default for Leasing {
    fn default() -> Self {
        let hours = crate::domain::working_days::SupportHours::default();
        Leasing {
            configuration_working_days: crate::domain::working_days::CONFIGURATION_WORKING_DAYS,
            support_opens: hours.opens,
            support_closes: hours.closes,
            support_closes_before_holiday: hours.closes_before_holiday,
            support_phone_number: None,
            service_desk_email: None,
            lost_wipe_after_hours: crate::domain::lost_case::DEFAULT_ESCALATE_AFTER_HOURS,
        }
    }
}

impl Leasing {
    pub fn support_hours(&self) -> crate::domain::working_days::SupportHours {
        crate::domain::working_days::SupportHours {
            opens: self.support_opens,
            closes: self.support_closes,
            closes_before_holiday: self.support_closes_before_holiday,
        }
    }

    /// How long a lost phone has to be found before it is wiped; `None` when that is off.
    pub fn lost_wipe_after(&self) -> Option<chrono::Duration> {
        (self.lost_wipe_after_hours > 0)
            .then(|| chrono::Duration::hours(i64::from(self.lost_wipe_after_hours)))
    }

    fn check(&self) -> Result<(), String> {
        if !(1..=60).contains(&self.configuration_working_days) {
            return Err("leasing.configuration_working_days: 1 to 60".into());
        }
        if self.support_opens >= self.support_closes
            || self.support_closes_before_holiday > self.support_closes
        {
            return Err(
                "leasing: support must open before it closes, and close no later before a holiday"
                    .into(),
            );
        }
        if let Some(number) = &self.support_phone_number {
            crate::domain::command::automatic(
                crate::domain::command::CommandKind::LostModeOn,
                None,
                Some(number.clone()),
            )
            .map_err(|e| format!("leasing.support_phone_number: {}", e.message()))?;
        }
        if let Some(email) = &self.service_desk_email {
            crate::domain::contact::Email::parse(email)
                .map_err(|e| format!("leasing.service_desk_email: {}", e.message()))?;
        }
        Ok(())
    }
}

/// Delivery of notices. A channel that is not configured fails its deliveries, which end in
/// the dead-letter list where the operator sees them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Notifications {
    /// `smtp://host:port` (STARTTLS when the relay offers it), `smtp://host:port?tls=required`
    /// (STARTTLS or fail), `smtps://host:465` (TLS from the start); user and password may be
    /// given in the URL.
    pub smtp_url: Option<SecretString>,
    /// The sender of notice e-mails, `Name <address>` or an address.
    pub mail_from: String,
    /// The SMS gateway's send URL (46elks' wire format: a form POST of `from`, `to` and
    /// `message` with HTTP basic authentication).
    pub sms_gateway_url: Option<String>,
    pub sms_username: Option<String>,
    pub sms_password: Option<SecretString>,
    /// The sender name shown on the phone (at most 11 letters and digits).
    pub sms_sender: String,
    /// Where notices are also posted as JSON, signed with HMAC-SHA256 of `webhook_secret`.
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<SecretString>,
    /// Attempts before a delivery is dead-lettered.
    pub max_attempts: u32,
    /// The first retry waits this long; each further one twice as long, up to the maximum.
    pub retry_base_seconds: u64,
    pub retry_max_seconds: u64,
    /// How often a node looks for due notices and deliveries (new ones wake it at once).
    pub poll_interval_ms: u64,
    /// Deliveries a node sends at the same time.
    pub concurrency: usize,
    /// A send that takes longer than this has failed.
    pub send_timeout_seconds: u64,
    /// Sent and dead-lettered messages (they hold contacts' addresses and numbers) are deleted
    /// this many days after they were sent or given up.
    pub retention_days: u32,
}

impl Default for Notifications {
    fn default() -> Self {
        Notifications {
            smtp_url: None,
            mail_from: "MDM <noreply@localhost.localdomain>".to_string(),
            sms_gateway_url: None,
            sms_username: None,
            sms_password: None,
            sms_sender: "Kommunen".to_string(),
            webhook_url: None,
            webhook_secret: None,
            max_attempts: 8,
            retry_base_seconds: 30,
            retry_max_seconds: 3600,
            poll_interval_ms: 1000,
            concurrency: 16,
            send_timeout_seconds: 30,
            retention_days: 180,
        }
    }
}

#[derive(Serialize)]
struct Defaults {
    listen: &'static str,
    device_listen: &'static str,
    device_hostnames: [&'static str; 2],
    checkin_interval_seconds: u64,
    data_dir: &'static str,
    operator_name: &'static str,
    time_zone: &'static str,
    max_body_bytes: usize,
    supported_generations_back: usize,
    log_json: bool,
    command_retention_days: u32,
    compliance_grace_hours: u32,
}

const DEFAULTS: Defaults = Defaults {
    listen: "127.0.0.1:8080",
    device_listen: "127.0.0.1:8443",
    device_hostnames: ["localhost", "127.0.0.1"],
    checkin_interval_seconds: 900,
    data_dir: "./data",
    operator_name: "Kommunens IT – vård och omsorg",
    time_zone: "Europe/Stockholm",
    max_body_bytes: 256 * 1024,
    supported_generations_back: 2,
    log_json: false,
    command_retention_days: 90,
    compliance_grace_hours: crate::domain::compliance::DEFAULT_GRACE_HOURS,
};

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

impl Config {
    /// Defaults, then the file (if given), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(DEFAULTS));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError(format!(
                    "the file {} does not exist",
                    file.display()
                )));
            }
            figment = figment.merge(Toml::file(file));
        }
        // MDM_CONFIG_FILE names the file and MDM_LOG the log filter; neither is a setting.
        // A double underscore reaches into a table: MDM_NOTIFICATIONS__SMTP_URL.
        Self::extract(
            figment.merge(EnvText(
                Env::prefixed("MDM_")
                    .ignore(&["config_file", "log"])
                    .split("__"),
            )),
        )
    }

    /// Defaults with the given overrides; for tests and tools that build a config in code.
    pub fn from_overrides(overrides: impl Serialize) -> Result<Self, ConfigError> {
        Self::extract(
            Figment::from(Serialized::defaults(DEFAULTS)).merge(Serialized::defaults(overrides)),
        )
    }

    fn extract(figment: Figment) -> Result<Self, ConfigError> {
        // Lossy: a number or a yes/no setting also accepts its text ("600", "true"), which is
        // what the environment gives (see `EnvText`).
        let config: Config = figment.extract_lossy().map_err(|e| {
            let msgs: Vec<String> = e.into_iter().map(|e| e.to_string()).collect();
            ConfigError(msgs.join("; "))
        })?;
        config.leasing.check().map_err(ConfigError)?;
        config.apple.check().map_err(ConfigError)?;
        Ok(config)
    }

    /// The database to open: the configured URL, or the SQLite file in the data directory.
    pub fn database_url(&self) -> String {
        match self
            .database_url
            .0
            .as_ref()
            .map(|s| s.expose_secret().to_string())
        {
            Some(url) if !url.is_empty() => url,
            _ => format!("sqlite://{}", self.data_dir.join("mdm.sqlite3").display()),
        }
    }
}

/// The `MDM_*` environment as figment's `Env` reads it, except that a plain value stays the
/// text it was: figment would read `+46812345678` or an all-digit password as a number, and a
/// string setting would then refuse it (or lose the `+`). Lists and tables (`[10.0.0.5]`) are
/// still read as such; number and yes/no settings take their text through `extract_lossy`.
struct EnvText(Env);

impl figment::Provider for EnvText {
    fn metadata(&self) -> figment::Metadata {
        self.0.metadata()
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        use figment::value::{Dict, Value};
        // figment's own merging of dictionaries is private; the environment's keys are
        // distinct, so laying each nested key into the dictionary is all it takes.
        fn lay(into: &mut Dict, from: Dict) {
            for (key, value) in from {
                match (into.get_mut(&key), value) {
                    (Some(Value::Dict(_, inner)), Value::Dict(_, more)) => lay(inner, more),
                    (_, value) => {
                        into.insert(key, value);
                    }
                }
            }
        }
        let mut dict = Dict::new();
        for (key, text) in self.0.iter() {
            let value = match text.parse::<Value>() {
                Ok(v @ (Value::Dict(..) | Value::Array(..))) => v,
                _ => Value::from(text),
            };
            if let Some(nested) = figment::util::nest(key.as_str(), value).into_dict() {
                lay(&mut dict, nested);
            }
        }
        Ok(figment::Profile::Default.collect(dict))
    }
}

/// The database URL may carry a password, so it never shows in `Debug` output or logs.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(Option<SecretString>);

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            None => f.write_str("DatabaseUrl(default)"),
            Some(url) => {
                let scheme = url.expose_secret().split(':').next().unwrap_or("");
                write!(f, "DatabaseUrl({scheme}://[redacted])")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_listen_on_loopback_with_sqlite_in_data() {
        let c = Config::from_overrides(serde_json::json!({})).expect("defaults");
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database_url(), "sqlite://./data/mdm.sqlite3");
        assert_eq!(c.time_zone, chrono_tz::Europe::Stockholm);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = Config::from_overrides(serde_json::json!({ "listen_port": 80 }))
            .expect_err("unknown key");
        assert!(err.to_string().contains("listen_port"), "{err}");
    }

    #[test]
    fn database_password_never_shows_in_debug() {
        let c = Config::from_overrides(serde_json::json!({
            "database_url": "postgres://mdm:hemligt@db.kommun.se/mdm"
        }))
        .expect("config");
        let shown = format!("{c:?}");
        assert!(!shown.contains("hemligt"), "{shown}");
        assert!(shown.contains("postgres://[redacted]"));
        assert_eq!(c.database_url(), "postgres://mdm:hemligt@db.kommun.se/mdm");
    }

    #[test]
    fn notification_settings_have_defaults_and_refuse_unknown_keys() {
        let c = Config::from_overrides(serde_json::json!({
            "notifications": { "sms_gateway_url": "http://127.0.0.1:9/a1/sms", "max_attempts": 3 }
        }))
        .expect("config");
        assert_eq!(c.notifications.max_attempts, 3);
        assert_eq!(c.notifications.retry_base_seconds, 30);
        assert!(Config::from_overrides(serde_json::json!({
            "notifications": { "smtp_host": "relay" }
        }))
        .is_err());
    }

    #[test]
    // figment's test jail returns figment's own (large) error type.
    #[allow(clippy::result_large_err)]
    fn environment_variables_reach_into_the_notifications_table() {
        figment::Jail::expect_with(|jail| {
            jail.set_env(
                "MDM_NOTIFICATIONS__SMTP_URL",
                "smtp://relay.kommun.example:25",
            );
            jail.set_env("MDM_NOTIFICATIONS__MAX_ATTEMPTS", "4");
            jail.set_env("MDM_CHECKIN_INTERVAL_SECONDS", "600");
            let c = Config::load(None).expect("config");
            assert_eq!(
                c.notifications
                    .smtp_url
                    .as_ref()
                    .map(|u| u.expose_secret().to_string()),
                Some("smtp://relay.kommun.example:25".to_string())
            );
            assert_eq!(c.notifications.max_attempts, 4);
            assert_eq!(c.checkin_interval_seconds, 600);
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn string_settings_from_the_environment_keep_text_that_looks_like_a_number() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("MDM_LEASING__SUPPORT_PHONE_NUMBER", "+46812345678");
            jail.set_env("MDM_NOTIFICATIONS__SMS_PASSWORD", "0012345");
            jail.set_env(
                "MDM_NOTIFICATIONS__WEBHOOK_SECRET",
                "123456789012345678901234",
            );
            jail.set_env("MDM_OPERATOR_NAME", "2024");
            jail.set_env("MDM_LOG_JSON", "true");
            jail.set_env("MDM_TRUSTED_PROXIES", "[10.0.0.5]");
            let c = Config::load(None).expect("config");
            assert_eq!(
                c.leasing.support_phone_number.as_deref(),
                Some("+46812345678")
            );
            let secret =
                |s: &Option<SecretString>| s.as_ref().map(|s| s.expose_secret().to_string());
            assert_eq!(
                secret(&c.notifications.sms_password).as_deref(),
                Some("0012345")
            );
            assert_eq!(
                secret(&c.notifications.webhook_secret).as_deref(),
                Some("123456789012345678901234")
            );
            assert_eq!(c.operator_name, "2024");
            assert!(c.log_json);
            assert_eq!(
                c.trusted_proxies,
                vec!["10.0.0.5".parse::<std::net::IpAddr>().expect("ip")]
            );
            jail.set_env("MDM_CHECKIN_INTERVAL_SECONDS", "often");
            let err = Config::load(None).expect_err("a word where a number belongs");
            assert!(
                err.to_string()
                    .to_lowercase()
                    .contains("checkin_interval_seconds"),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    fn leasing_settings_have_the_contract_defaults_and_refuse_nonsense() {
        let c = Config::from_overrides(serde_json::json!({})).expect("defaults");
        assert_eq!(c.leasing.configuration_working_days, 3);
        assert_eq!(
            c.leasing.support_hours(),
            crate::domain::working_days::SupportHours::default()
        );
        assert_eq!(
            c.leasing.lost_wipe_after(),
            Some(chrono::Duration::hours(24))
        );
        let c = Config::from_overrides(serde_json::json!({
            "leasing": { "support_closes": "19:00:00", "lost_wipe_after_hours": 0,
                         "support_phone_number": "+46812345678" }
        }))
        .expect("config");
        assert_eq!(c.leasing.lost_wipe_after(), None);
        for bad in [
            serde_json::json!({ "leasing": { "support_phone_number": "ring oss" } }),
            serde_json::json!({ "leasing": { "support_opens": "17:00:00" } }),
            serde_json::json!({ "leasing": { "service_desk_email": "nope" } }),
            serde_json::json!({ "leasing": { "configuration_working_days": 0 } }),
        ] {
            assert!(Config::from_overrides(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bad_time_zone_is_refused() {
        assert!(
            Config::from_overrides(serde_json::json!({ "time_zone": "Mars/Olympus" })).is_err()
        );
    }
}
