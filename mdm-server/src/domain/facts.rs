//! What a device reports about itself: bounds on every field, the check that it is the device
//! the record says it is, and the canonical form whose hash tells whether anything changed.

use agent_protocol::DeviceFacts;
use sha2::{Digest, Sha256};

use super::contact::MobileNumber;
use super::device::{Imei, Platform, Serial};
use super::organisation::check_text;
use super::DomainError;

pub const MAX_APPS: usize = 1000;
const MAX_TEXT: usize = 200;

/// An ICCID (the SIM card's number): `89` (telecom) and 18 to 22 digits. The trailing Luhn digit
/// is not checked: some operators' 20-digit ICCIDs carry none.
pub fn check_iccid(iccid: &str) -> Result<(), DomainError> {
    let ok = (18..=22).contains(&iccid.len())
        && iccid.starts_with("89")
        && iccid.bytes().all(|b| b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(DomainError::invalid(
            "iccid",
            format!("'{iccid}' is not an ICCID: 18 to 22 digits starting with 89"),
        ))
    }
}

/// Every bound a report must keep; all the reasons at once.
pub fn check_facts(f: &DeviceFacts) -> Vec<DomainError> {
    let mut errors = Vec::new();
    let mut keep = |r: Result<(), DomainError>| {
        if let Err(e) = r {
            errors.push(e);
        }
    };
    keep(Platform::parse(&f.platform).map(|_| ()));
    keep(Serial::parse(&f.serial).map(|_| ()));
    keep(Imei::parse(&f.imei).map(|_| ()));
    keep(check_text("model", &f.model, MAX_TEXT));
    keep(check_text("os_version", &f.os_version, 64));
    keep(check_text("agent_version", &f.agent_version, 64));
    if let Some(iccid) = &f.iccid {
        keep(check_iccid(iccid));
    }
    if let Some(number) = &f.phone_number {
        keep(MobileNumber::parse(number).map(|_| ()));
    }
    if f.battery_percent.is_some_and(|b| b > 100) {
        keep(Err(DomainError::invalid(
            "battery_percent",
            "must be at most 100",
        )));
    }
    if let (Some(free), Some(total)) = (f.storage_free_bytes, f.storage_total_bytes) {
        if free > total {
            keep(Err(DomainError::invalid(
                "storage_free_bytes",
                "cannot exceed storage_total_bytes",
            )));
        }
    }
    if f.pin.length.is_some_and(|l| l > 64) || (!f.pin.set && f.pin.length.is_some_and(|l| l > 0)) {
        keep(Err(DomainError::invalid(
            "pin.length",
            "must be at most 64, and 0 or absent without a PIN",
        )));
    }
    if f.installed_apps.len() > MAX_APPS {
        keep(Err(DomainError::invalid(
            "installed_apps",
            format!("at most {MAX_APPS} apps"),
        )));
    }
    for app in f.installed_apps.iter().take(MAX_APPS) {
        keep(check_text("installed_apps.id", &app.id, MAX_TEXT));
        keep(check_text("installed_apps.version", &app.version, 64));
        if app.id.trim().is_empty() {
            keep(Err(DomainError::invalid(
                "installed_apps.id",
                "must not be empty",
            )));
        }
    }
    errors
}

/// Whether a report names another phone than the record: serial, IMEI and platform must match.
pub fn contradiction(
    serial: &str,
    imei: &str,
    platform: Platform,
    f: &DeviceFacts,
) -> Option<String> {
    let reported_serial = Serial::parse(&f.serial)
        .map(String::from)
        .unwrap_or_else(|_| f.serial.clone());
    let reported_imei = Imei::parse(&f.imei)
        .map(String::from)
        .unwrap_or_else(|_| f.imei.clone());
    if reported_serial != serial {
        return Some(format!(
            "the device reports serial {reported_serial}, but it is enrolled as {serial}"
        ));
    }
    if reported_imei != imei {
        return Some(format!(
            "the device reports IMEI {reported_imei}, but it is enrolled with {imei}"
        ));
    }
    if Platform::parse(&f.platform).ok() != Some(platform) {
        return Some(format!(
            "the device reports platform {}, but it is registered as {}",
            f.platform,
            platform.as_str()
        ));
    }
    None
}

/// The facts as stored (canonical JSON, apps sorted) and the hash that says whether they
/// changed since the last report.
pub fn canonical(f: &DeviceFacts) -> (String, String) {
    let mut sorted = f.clone();
    sort_apps(&mut sorted);
    let json = serde_json::to_string(&sorted).expect("facts serialise");
    let hash = hex::encode(Sha256::digest(json.as_bytes()));
    (json, hash)
}

/// The hash [`canonical`] gives, found without copying the facts or keeping their text: most
/// check-ins only need to know that nothing changed. Puts the apps in canonical order.
pub fn canonical_hash(f: &mut DeviceFacts) -> String {
    sort_apps(f);
    let mut hasher = HashingWriter(Sha256::new());
    serde_json::to_writer(&mut hasher, f).expect("facts serialise");
    hex::encode(hasher.0.finalize())
}

fn sort_apps(f: &mut DeviceFacts) {
    let order = |a: &agent_protocol::InstalledApp, b: &agent_protocol::InstalledApp| {
        a.id.cmp(&b.id).then(a.version.cmp(&b.version))
    };
    if !f.installed_apps.is_sorted_by(|a, b| order(a, b).is_le()) {
        f.installed_apps.sort_by(order);
    }
}

/// Feeds what is written to it into a hash.
struct HashingWriter(Sha256);

impl std::io::Write for HashingWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_protocol::{InstalledApp, PinState};

    fn facts() -> DeviceFacts {
        DeviceFacts {
            platform: "android".into(),
            model: "Samsung Galaxy XCover7".into(),
            os_version: "14".into(),
            serial: "r58n12abcde".into(),
            imei: "490154203237518".into(),
            iccid: Some("89460000000000000018".into()),
            phone_number: Some("+46701234567".into()),
            battery_percent: Some(80),
            storage_free_bytes: Some(10),
            storage_total_bytes: Some(100),
            installed_apps: vec![
                InstalledApp {
                    id: "b.app".into(),
                    version: "1".into(),
                },
                InstalledApp {
                    id: "a.app".into(),
                    version: "2".into(),
                },
            ],
            pin: PinState {
                set: true,
                length: Some(6),
                numeric: Some(true),
                by_profile: None,
            },
            disk_encrypted: true,
            mobile_data_bytes_this_month: Some(1),
            agent_version: "0.1.0".into(),
        }
    }

    #[test]
    fn a_plausible_report_passes() {
        assert_eq!(check_facts(&facts()), vec![]);
    }

    #[test]
    fn every_broken_field_is_named() {
        let mut f = facts();
        f.battery_percent = Some(140);
        f.iccid = Some("1234".into());
        f.phone_number = Some("0701234567".into());
        f.storage_free_bytes = Some(1000);
        let fields: Vec<&str> = check_facts(&f).iter().map(|e| e.field()).collect();
        assert_eq!(
            fields,
            vec!["iccid", "mobile", "battery_percent", "storage_free_bytes"]
        );
    }

    #[test]
    fn another_serial_or_imei_is_a_contradiction() {
        let f = facts();
        assert_eq!(
            contradiction("R58N12ABCDE", "490154203237518", Platform::Android, &f),
            None
        );
        assert!(contradiction("OTHER0001", "490154203237518", Platform::Android, &f).is_some());
        assert!(contradiction("R58N12ABCDE", "356938035643809", Platform::Android, &f).is_some());
        assert!(contradiction("R58N12ABCDE", "490154203237518", Platform::Ios, &f).is_some());
    }

    #[test]
    fn the_order_of_apps_does_not_change_the_hash_but_a_new_version_does() {
        let mut reordered = facts();
        reordered.installed_apps.reverse();
        assert_eq!(canonical(&facts()).1, canonical(&reordered).1);
        let mut upgraded = facts();
        upgraded.installed_apps[0].version = "9".into();
        assert_ne!(canonical(&facts()).1, canonical(&upgraded).1);
    }

    #[test]
    fn the_hash_without_the_text_is_the_hash_of_the_text() {
        let mut reordered = facts();
        reordered.installed_apps.reverse();
        let (_, hash) = canonical(&facts());
        assert_eq!(canonical_hash(&mut reordered), hash);
        assert_eq!(canonical_hash(&mut facts()), hash);
    }
}
