//! On Linux the phone's facts come from a description file, so tests and demos can play any
//! phone:
//!
//! ```toml
//! serial = "R58N12ABCDE"
//! imei = "490154203237518"
//! platform = "android"
//! model = "Samsung Galaxy XCover7"
//! os_version = "14"
//! iccid = "89460000000000000001"
//! phone_number = "+46701234567"
//! disk_encrypted = true
//!
//! [pin]
//! set = true
//! length = 6
//! numeric = true
//!
//! [[apps]]
//! id = "se.phoniro.app"
//! version = "5.2.1"
//! ```

use serde::Deserialize;
use std::path::Path;

use crate::protocol::{DeviceFacts, InstalledApp, PinState};
use crate::AGENT_VERSION;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceDescription {
    pub serial: String,
    pub imei: String,
    pub platform: String,
    pub model: String,
    pub os_version: String,
    pub iccid: Option<String>,
    pub phone_number: Option<String>,
    pub battery_percent: Option<u8>,
    pub storage_free_bytes: Option<u64>,
    pub storage_total_bytes: Option<u64>,
    #[serde(default)]
    pub disk_encrypted: bool,
    pub mobile_data_bytes_this_month: Option<u64>,
    #[serde(default)]
    pub pin: PinState,
    #[serde(default)]
    pub apps: Vec<InstalledApp>,
}

impl DeviceDescription {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!("cannot read the device description {}: {e}", path.display())
        })?;
        toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!("the device description {} is invalid: {e}", path.display())
        })
    }

    pub fn facts(&self) -> DeviceFacts {
        DeviceFacts {
            platform: self.platform.clone(),
            model: self.model.clone(),
            os_version: self.os_version.clone(),
            serial: self.serial.clone(),
            imei: self.imei.clone(),
            iccid: self.iccid.clone(),
            phone_number: self.phone_number.clone(),
            battery_percent: self.battery_percent,
            storage_free_bytes: self.storage_free_bytes,
            storage_total_bytes: self.storage_total_bytes,
            installed_apps: self.apps.clone(),
            pin: self.pin.clone(),
            disk_encrypted: self.disk_encrypted,
            mobile_data_bytes_this_month: self.mobile_data_bytes_this_month,
            agent_version: AGENT_VERSION.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_description_file_becomes_the_reported_facts() {
        let text = r#"
            serial = "R58N12ABCDE"
            imei = "490154203237518"
            platform = "android"
            model = "Samsung Galaxy XCover7"
            os_version = "14"
            [pin]
            set = true
            length = 6
            numeric = true
            [[apps]]
            id = "se.phoniro.app"
            version = "5.2.1"
        "#;
        let d: DeviceDescription = toml::from_str(text).expect("parse");
        let facts = d.facts();
        assert_eq!(facts.pin.length, Some(6));
        assert_eq!(facts.installed_apps[0].id, "se.phoniro.app");
        assert_eq!(facts.agent_version, AGENT_VERSION);
        assert!(toml::from_str::<DeviceDescription>("serial = 1").is_err());
    }
}
