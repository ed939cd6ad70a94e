//! The app catalogue as the renderings need it: how each app is found on each platform.

use serde::{Deserialize, Serialize};

/// An app of the catalogue. An app exists on a platform when it has an id there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogueApp {
    /// The key policies use (`phoniro`).
    pub key: String,
    pub name: String,
    /// Android package name (`se.phoniro.app`).
    pub android_package: Option<String>,
    /// iOS bundle id (`se.phoniro.ios`).
    pub ios_bundle_id: Option<String>,
    /// App Store id, for installing through Apple's MDM.
    pub app_store_id: Option<u64>,
    /// For an app licensed per provider: the licences each provider has included; phones
    /// beyond that are billed.
    #[serde(default)]
    pub included_licences: Option<u32>,
}

/// The platforms policies are rendered for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    Android,
    Ios,
}

impl CatalogueApp {
    /// The app's id on `platform`, if it exists there.
    pub fn id_on(&self, platform: Platform) -> Option<&str> {
        match platform {
            Platform::Android => self.android_package.as_deref(),
            Platform::Ios => self.ios_bundle_id.as_deref(),
        }
    }
}
