//! Demo data for `serve --demo`: one operator, two providers, twenty phones of three models in
//! different states, and logins printed at start. Seeded once, into an empty installation.

use chrono::{Duration, NaiveDate};
use std::net::SocketAddr;

use crate::domain::audit::{AuditEvent, Outcome};
use crate::domain::contact::ItContact;
use crate::domain::device::{DeviceStatus, Imei, Platform, Serial};
use crate::domain::luhn::check_digit;
use crate::domain::organisation::{ContractPeriod, OrgNumber};
use crate::domain::role::Role;
use crate::http::AppState;
use crate::store::{NewAccount, NewDevice, NewProvider};

/// The password of every demo account. Demo mode is for trying the product, never for data.
pub const DEMO_PASSWORD: &str = "demo-telefon-flotta";

#[derive(Debug, Clone)]
pub struct DemoLogin {
    pub email: String,
    pub role: Role,
    pub organisation: String,
}

fn demo_event(action: &str) -> AuditEvent {
    AuditEvent {
        actor_id: None,
        actor_label: "demo".into(),
        org_id: None,
        source: None,
        action: action.into(),
        target_kind: None,
        target_id: None,
        outcome: Outcome::Success,
        details: "{}".into(),
    }
}

fn org_number(stem: &str) -> anyhow::Result<OrgNumber> {
    Ok(OrgNumber::parse(&format!("{stem}{}", check_digit(stem)))?)
}

/// An IMEI with a valid check digit from a 14-digit body.
pub fn imei(body: &str) -> anyhow::Result<Imei> {
    Ok(Imei::parse(&format!("{body}{}", check_digit(body)))?)
}

/// Seeds the demo data unless the installation already has providers, and returns the logins.
pub async fn seed(state: &AppState) -> anyhow::Result<Vec<DemoLogin>> {
    let store = &state.store;
    let now = state.clock.now();
    let today = state.clock.today(state.config.time_zone);
    let operator = store.organisation(state.operator_id).await?;
    let mut logins = vec![
        (
            operator.id,
            operator.name.clone(),
            "it-admin@kommun.example",
            "Iris IT-admin",
            Role::OperatorAdmin,
        ),
        (
            operator.id,
            operator.name.clone(),
            "servicedesk@kommun.example",
            "Sam Servicedesk",
            Role::OperatorStaff,
        ),
    ];
    let existing = store.list_providers().await?;
    if existing.is_empty() {
        let providers = [
            (
                "Hemtjänst Norr AB",
                "559012345",
                "Nora Norr",
                "it@norr.example",
                "+46701112233",
                "norr",
            ),
            (
                "Omsorg Syd AB",
                "559087654",
                "Sven Syd",
                "it@syd.example",
                "+46702223344",
                "syd",
            ),
        ];
        let mut provider_ids = Vec::new();
        for (name, stem, contact, email, mobile, short) in providers {
            let p = NewProvider {
                name: name.into(),
                org_number: org_number(stem)?,
                contract: ContractPeriod::new(
                    today - Duration::days(400),
                    Some(today + Duration::days(700)),
                )?,
                it_contacts: vec![ItContact::parse(contact, email, mobile)?],
            };
            let org = store
                .create_provider(&p, now, demo_event("provider.create"))
                .await?;
            provider_ids.push((org.id, name, short));
        }
        let models = [
            (Platform::Ios, "iPhone 11", None), // old stock, never recommended: flagged unsupported
            (
                Platform::Ios,
                "iPhone 16",
                NaiveDate::from_ymd_opt(2024, 9, 20),
            ),
            (
                Platform::Android,
                "Samsung Galaxy XCover7",
                NaiveDate::from_ymd_opt(2024, 2, 1),
            ),
        ];
        let mut model_ids = Vec::new();
        for (platform, name, since) in models {
            let m = store
                .create_model(platform, name, since, now, demo_event("model.create"))
                .await?;
            model_ids.push(m.id);
        }
        let statuses = [
            DeviceStatus::Leased,
            DeviceStatus::Leased,
            DeviceStatus::Leased,
            DeviceStatus::InStock,
            DeviceStatus::InRepair,
            DeviceStatus::Lost,
            DeviceStatus::AwaitingWipe,
        ];
        for i in 0..20usize {
            let status = statuses[i % statuses.len()];
            let provider_id = match status {
                DeviceStatus::InStock => None,
                _ => Some(provider_ids[i % 2].0),
            };
            let device = NewDevice {
                serial: Serial::parse(&format!("DEMO{i:04}"))?,
                imei: imei(&format!("35{:012}", 100_000 + i))?,
                model_id: model_ids[i % model_ids.len()],
                provider_id,
                purchase_date: Some(today - Duration::days(200 + 10 * i as i64)),
                warranty_end: Some(today + Duration::days(530 - 10 * i as i64)),
                supplier: Some("Telia Företag".into()),
            };
            let created = store
                .create_device(&device, now, demo_event("device.register"))
                .await?;
            if status != DeviceStatus::InStock {
                store
                    .set_device_status(created.id, status, now, demo_event("device.demo_status"))
                    .await?;
            }
        }
        for (org_id, name, short) in &provider_ids {
            let admin = format!("admin@{short}.example");
            let user = format!("personal@{short}.example");
            logins.push((
                *org_id,
                name.to_string(),
                leak(admin),
                "Provider admin",
                Role::ProviderAdmin,
            ));
            logins.push((
                *org_id,
                name.to_string(),
                leak(user),
                "Provider user",
                Role::ProviderUser,
            ));
        }
        let hash = crate::auth::hash_password(DEMO_PASSWORD);
        for (org_id, _, email, name, role) in &logins {
            let account = NewAccount {
                org_id: *org_id,
                email: email.to_string(),
                display_name: name.to_string(),
                role: *role,
                password_hash: hash.clone(),
                must_change_password: false,
                totp_secret: None,
            };
            store
                .create_account(&account, now, demo_event("account.create"))
                .await?;
        }
    } else {
        for p in existing {
            let short = p
                .it_contacts
                .first()
                .and_then(|c| c.email.as_str().split('@').nth(1).map(str::to_string));
            if let Some(domain) = short {
                logins.push((
                    p.id,
                    p.name.clone(),
                    leak(format!("admin@{domain}")),
                    "Provider admin",
                    Role::ProviderAdmin,
                ));
                logins.push((
                    p.id,
                    p.name.clone(),
                    leak(format!("personal@{domain}")),
                    "Provider user",
                    Role::ProviderUser,
                ));
            }
        }
    }
    Ok(logins
        .into_iter()
        .map(|(_, organisation, email, _, role)| DemoLogin {
            email: email.to_string(),
            role,
            organisation,
        })
        .collect())
}

// Demo logins live for the whole process; leaking a handful of short strings keeps the table
// above simple.
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// The loud banner printed when the server starts in demo mode.
pub fn banner(logins: &[DemoLogin], listen: SocketAddr) -> String {
    let mut out = String::new();
    let line = "=".repeat(78);
    out.push_str(&format!("{line}\n"));
    out.push_str("  DEMO MODE - NOT FOR REAL DATA. Logins need no second factor.\n");
    out.push_str(&format!(
        "  API: http://{listen}/api/v1   (document: /api/v1/openapi.json)\n"
    ));
    out.push_str(&format!(
        "  Password for every demo login: {DEMO_PASSWORD}\n\n"
    ));
    for l in logins {
        out.push_str(&format!(
            "  {:<32} {:<16} {}\n",
            l.email,
            l.role.as_str(),
            l.organisation
        ));
    }
    out.push_str(&format!(
        "\n  curl -s http://{listen}/api/v1/auth/login -H 'content-type: application/json' \\\n    -d '{{\"email\":\"it-admin@kommun.example\",\"password\":\"{DEMO_PASSWORD}\"}}'\n"
    ));
    out.push_str(&format!("{line}\n"));
    out
}
