//! A swarm of simulated iPhones in one process, for fan-out tests and load: each enrolls over
//! the real wire (SCEP, `Authenticate`, `TokenUpdate`, and the work a new phone is given), and
//! when the APNs stand-in receives a push for its token it connects and carries out what the
//! server hands it, as an iPhone does when woken. The phones share a few RSA keys: making
//! thousands would outlast everything measured.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;

use crate::apns::ApnsStandIn;
use crate::iphone::{rsa_key, InstalledProfile, SimulatedIphone};

type Phone = Arc<tokio::sync::Mutex<SimulatedIphone>>;

#[derive(Debug)]
pub struct IphoneSwarm {
    /// By push token (hex).
    phones: HashMap<String, Phone>,
    /// What each phone carried out after being pushed, by push token.
    done: Arc<Mutex<HashMap<String, Vec<String>>>>,
}

/// Where the swarm enrolls.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub store: &'a dyn mdm_server::store::Store,
    pub device_url: &'a str,
    pub root_der: &'a [u8],
    /// The push certificate's topic.
    pub topic: &'a str,
    pub now: chrono::DateTime<chrono::Utc>,
}

/// A simulated iPhone for each of `devices`, with an enrollment token of its own made
/// straight through the store and the enrollment profile's settings installed (what the
/// profile download would give it), sharing a few RSA keys.
pub async fn prepared(
    target: Target<'_>,
    devices: Vec<mdm_server::store::Device>,
) -> Vec<SimulatedIphone> {
    use mdm_server::domain::device::Channel;
    let keys: Vec<rsa::RsaPrivateKey> = (0..8).map(|_| rsa_key()).collect();
    let mut phones = Vec::with_capacity(devices.len());
    for (i, device) in devices.into_iter().enumerate() {
        let (secret, _) = mdm_server::auth::generate_token();
        crate::store_enrollment_token(
            target.store,
            device.id,
            &secret,
            Channel::AppleMdm,
            target.now,
        )
        .await;
        let mut phone = SimulatedIphone::with_key(
            &device.serial,
            Some(&device.imei),
            keys[i % keys.len()].clone(),
        );
        phone.install(InstalledProfile {
            root_der: target.root_der.to_vec(),
            scep_url: format!("{}/scep", target.device_url),
            challenge: secret,
            checkin_url: format!("{}/mdm/checkin", target.device_url),
            server_url: format!("{}/mdm/connect", target.device_url),
            topic: target.topic.to_string(),
            profile: plist::Dictionary::new(),
        });
        phones.push(phone);
    }
    phones
}

impl std::fmt::Debug for Target<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("device_url", &self.device_url)
            .finish_non_exhaustive()
    }
}

impl IphoneSwarm {
    /// Registers `count` iPhones of `model_id` placed with `provider_id` (serials
    /// `{prefix}{n:08}`) straight through the store, and enrolls them, `concurrency` at a time.
    pub async fn enroll(
        target: Target<'_>,
        model_id: i64,
        provider_id: Option<i64>,
        prefix: &str,
        count: u32,
        concurrency: usize,
    ) -> IphoneSwarm {
        let devices = crate::import_placed_iphones(
            target.store,
            model_id,
            prefix,
            700_000,
            count,
            provider_id,
        )
        .await;
        let phones = prepared(target, devices).await;
        let enrolled: Vec<SimulatedIphone> = futures::stream::iter(phones)
            .map(|mut phone| async move {
                phone.enroll_installed().await;
                phone.hang_up();
                phone
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        IphoneSwarm {
            phones: enrolled
                .into_iter()
                .map(|p| (p.push_token_hex(), Arc::new(tokio::sync::Mutex::new(p))))
                .collect(),
            done: Arc::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.phones.len()
    }

    pub fn is_empty(&self) -> bool {
        self.phones.is_empty()
    }

    /// From now on each push the stand-in takes wakes its phone, which connects and carries
    /// out what it is handed (at most `concurrency` phones at once); ends when the task is
    /// aborted.
    pub fn answer_pushes(
        &self,
        apns: &ApnsStandIn,
        concurrency: usize,
    ) -> tokio::task::JoinHandle<()> {
        let mut pushed = apns.subscribe();
        let phones = self.phones.clone();
        let done = self.done.clone();
        let slots = Arc::new(tokio::sync::Semaphore::new(concurrency));
        tokio::spawn(async move {
            loop {
                let token = match pushed.recv().await {
                    Ok(token) => token,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                let Some(phone) = phones.get(&token).cloned() else {
                    continue;
                };
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let done = done.clone();
                tokio::spawn(async move {
                    let carried_out = {
                        let mut phone = phone.lock().await;
                        let carried_out = phone.work().await;
                        phone.hang_up();
                        carried_out
                    };
                    drop(slot);
                    done.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(token)
                        .or_default()
                        .extend(carried_out);
                });
            }
        })
    }

    /// Every phone connects once with `Idle`, `concurrency` at a time, and must be given
    /// nothing.
    pub async fn idle_round(&self, concurrency: usize) {
        futures::stream::iter(self.phones.values())
            .map(|phone| async move {
                let mut phone = phone.lock().await;
                let (status, body) = phone.idle().await;
                assert!(status.is_success() && body.is_empty(), "{status} {body}");
                phone.hang_up();
            })
            .buffer_unordered(concurrency)
            .collect::<Vec<()>>()
            .await;
    }

    /// What each phone carried out after being pushed, by push token.
    pub fn done(&self) -> HashMap<String, Vec<String>> {
        self.done.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// How many phones have carried out `request_type` at least once.
    pub fn carried_out(&self, request_type: &str) -> usize {
        self.done()
            .values()
            .filter(|d| d.iter().any(|r| r == request_type))
            .count()
    }
}
