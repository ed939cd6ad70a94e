//! Demo data for `serve --demo`: one operator, two providers, twenty phones of three models in
//! different states, and logins printed at start. Seeded once, into an empty installation.

use chrono::{Duration, NaiveDate};
use std::net::SocketAddr;

use crate::domain::audit::AuditEvent;
use crate::domain::contact::ItContact;
use crate::domain::device::{DeviceStatus, Imei, Platform, Serial};
use crate::domain::luhn::check_digit;
use crate::domain::organisation::{ContractPeriod, OrgNumber};
use crate::domain::role::Role;
use crate::state::AppState;
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
    AuditEvent::unattended("demo", action)
}

fn org_number(stem: &str) -> anyhow::Result<OrgNumber> {
    Ok(OrgNumber::parse(&format!("{stem}{}", check_digit(stem)))?)
}

/// An IMEI with a valid check digit from a 14-digit body.
pub fn imei(body: &str) -> anyhow::Result<Imei> {
    Ok(Imei::parse(&format!("{body}{}", check_digit(body)))?)
}

/// The demo logins: e-mail, name, role and which organisation (`None`: the operator, or the
/// index of the demo provider).
const DEMO_ACCOUNTS: [(&str, &str, Role, Option<usize>); 6] = [
    (
        "it-admin@kommun.example",
        "Iris IT-admin",
        Role::OperatorAdmin,
        None,
    ),
    (
        "servicedesk@kommun.example",
        "Sam Servicedesk",
        Role::OperatorStaff,
        None,
    ),
    (
        "admin@norr.example",
        "Nora Norr",
        Role::ProviderAdmin,
        Some(0),
    ),
    (
        "personal@norr.example",
        "Per Personal",
        Role::ProviderUser,
        Some(0),
    ),
    (
        "admin@syd.example",
        "Sven Syd",
        Role::ProviderAdmin,
        Some(1),
    ),
    (
        "personal@syd.example",
        "Signe Personal",
        Role::ProviderUser,
        Some(1),
    ),
];

/// Demo mode turns the second factor off, so it runs only on an installation made for it: an
/// empty one (which becomes a demo installation) or one that already is.
pub async fn check_installation(state: &AppState) -> anyhow::Result<()> {
    let store = &state.store;
    if store.installation_fact(DEMO_FACT).await?.as_deref() == Some("true") {
        return Ok(());
    }
    let has_accounts = !store
        .list_accounts(crate::domain::role::Scope::Everything)
        .await?
        .is_empty();
    if has_accounts || !store.list_providers().await?.is_empty() {
        anyhow::bail!(
            "this installation holds real data; demo mode would let its accounts in without a second factor. \
             Start the demo on an empty data directory, e.g. MDM_DATA_DIR=./demo-data mdm-server serve --demo"
        );
    }
    store.set_installation_fact(DEMO_FACT, "true").await?;
    Ok(())
}

const DEMO_FACT: &str = "demo";

/// Seeds the demo data into an installation without providers, and returns the demo logins
/// that exist.
pub async fn seed(state: &AppState) -> anyhow::Result<Vec<DemoLogin>> {
    let store = &state.store;
    if store.list_providers().await?.is_empty() {
        seed_empty(state).await?;
    }
    let mut logins = Vec::new();
    for (email, _, role, _) in DEMO_ACCOUNTS {
        if let Ok(account) = store.account_by_email(email).await {
            let organisation = store.organisation(account.org_id).await?.name;
            logins.push(DemoLogin {
                email: email.to_string(),
                role,
                organisation,
            });
        }
    }
    Ok(logins)
}

async fn seed_empty(state: &AppState) -> anyhow::Result<()> {
    let store = &state.store;
    let now = state.clock.now();
    let today = state.clock.today(state.config.time_zone);
    let providers = [
        (
            "Hemtjänst Norr AB",
            "559012345",
            "Nora Norr",
            "it@norr.example",
            "+46701112233",
        ),
        (
            "Omsorg Syd AB",
            "559087654",
            "Sven Syd",
            "it@syd.example",
            "+46702223344",
        ),
    ];
    let mut provider_ids = Vec::new();
    for (name, stem, contact, email, mobile) in providers {
        let p = NewProvider {
            name: name.into(),
            org_number: org_number(stem)?,
            contract: ContractPeriod::new(
                today - Duration::days(400),
                Some(today + Duration::days(700)),
            )?,
            it_contacts: vec![ItContact::parse(contact, email, mobile)?],
        };
        provider_ids.push(
            store
                .create_provider(&p, now, demo_event("provider.create"))
                .await?
                .id,
        );
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
        model_ids.push((m.id, platform));
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
        let provider_id = (status != DeviceStatus::InStock).then(|| provider_ids[i % 2]);
        let device = NewDevice {
            serial: Serial::parse(&format!("DEMO{i:04}"))?,
            imei: imei(&format!("35{:012}", 100_000 + i))?,
            model_id: model_ids[i % model_ids.len()].0,
            platform: model_ids[i % model_ids.len()].1,
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
    let hash = crate::auth::hash_password(DEMO_PASSWORD);
    for (email, name, role, provider) in DEMO_ACCOUNTS {
        let account = NewAccount {
            org_id: provider.map_or(state.operator_id, |i| provider_ids[i]),
            email: email.to_string(),
            display_name: name.to_string(),
            role,
            password_hash: hash.clone(),
            must_change_password: false,
            totp_secret: None,
        };
        store
            .create_account(&account, now, demo_event("account.create"))
            .await?;
    }
    Ok(())
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
