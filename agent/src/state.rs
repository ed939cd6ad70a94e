//! The agent's state directory: its private key with its certificate (mode 0600; the key is
//! never sent anywhere), the pinned CA, the server's address, and the reports not yet acknowledged.
//! Reports are written before they are sent and removed only when the server has stored them,
//! so a network drop or a restart loses nothing.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::protocol::CheckinRequest;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Enrollment {
    pub server_url: String,
    pub ca_fingerprint: String,
    pub device_id: i64,
    pub checkin_interval_seconds: u64,
}

#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

fn context(path: &Path) -> impl FnOnce(std::io::Error) -> anyhow::Error + '_ {
    move |e| anyhow::anyhow!("{}: {e}", path.display())
}

impl StateDir {
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir.join("pending")).map_err(context(dir))?;
        Ok(StateDir {
            dir: dir.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes a file whole or not at all (write to a temporary name, then rename).
    fn write_atomic(&self, name: &str, bytes: &[u8], private: bool) -> anyhow::Result<()> {
        let target = self.file(name);
        let file_name = target
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("state");
        let temp = target.with_file_name(format!(".{file_name}.tmp"));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = private;
        let mut f = options.open(&temp).map_err(context(&temp))?;
        f.write_all(bytes).map_err(context(&temp))?;
        f.sync_all().map_err(context(&temp))?;
        std::fs::rename(&temp, &target).map_err(context(&target))
    }

    fn read(&self, name: &str) -> anyhow::Result<String> {
        let path = self.file(name);
        std::fs::read_to_string(&path).map_err(context(&path))
    }

    /// Keeps the private key and its certificate together in one file, written whole, so a
    /// crash during renewal never leaves a key with someone else's certificate.
    pub fn save_identity(
        &self,
        key_pem: &str,
        certificate_pem: &str,
        ca_chain_pem: &str,
    ) -> anyhow::Result<()> {
        self.write_atomic("ca.pem", ca_chain_pem.as_bytes(), false)?;
        self.write_atomic(
            "identity.pem",
            format!("{key_pem}{certificate_pem}").as_bytes(),
            true,
        )
    }

    /// The private key followed by the certificate chain.
    pub fn identity_pem(&self) -> anyhow::Result<String> {
        self.read("identity.pem")
    }

    pub fn ca_chain(&self) -> anyhow::Result<String> {
        self.read("ca.pem")
    }

    pub fn save_enrollment(&self, e: &Enrollment) -> anyhow::Result<()> {
        self.write_atomic("enrollment.json", &serde_json::to_vec_pretty(e)?, false)
    }

    pub fn enrollment(&self) -> anyhow::Result<Option<Enrollment>> {
        let path = self.file("enrollment.json");
        if !path.exists() {
            return Ok(None);
        }
        Ok(Some(serde_json::from_str(&self.read("enrollment.json")?)?))
    }

    /// Keeps a report until the server acknowledges it. Names sort by time of writing.
    pub fn enqueue(&self, report: &CheckinRequest) -> anyhow::Result<()> {
        let name = format!(
            "pending/{:020}-{}.json",
            report.reported_at.timestamp_micros(),
            report.report_id
        );
        self.write_atomic(&name, &serde_json::to_vec(report)?, false)
    }

    /// Unacknowledged reports, oldest first.
    pub fn pending(&self) -> anyhow::Result<Vec<(PathBuf, CheckinRequest)>> {
        let dir = self.file("pending");
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(context(&dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        entries.sort();
        entries
            .into_iter()
            .map(|p| {
                let text = std::fs::read_to_string(&p).map_err(context(&p))?;
                Ok((p, serde_json::from_str(&text)?))
            })
            .collect()
    }

    /// Moves a report the server will never take to `rejected/`, for a person to look at.
    pub fn set_aside(&self, path: &Path) -> anyhow::Result<()> {
        let rejected = self.file("rejected");
        std::fs::create_dir_all(&rejected).map_err(context(&rejected))?;
        let target = rejected.join(path.file_name().unwrap_or_default());
        std::fs::rename(path, &target).map_err(context(path))
    }

    /// Keeps the policy the server sent; on a phone this is where it would be applied.
    pub fn save_policy(&self, policy: &crate::protocol::PolicyUpdate) -> anyhow::Result<()> {
        self.write_atomic("policy.json", &serde_json::to_vec_pretty(policy)?, false)
    }

    /// The policy last applied, if any.
    pub fn policy(&self) -> anyhow::Result<Option<crate::protocol::PolicyUpdate>> {
        let path = self.file("policy.json");
        if !path.exists() {
            return Ok(None);
        }
        Ok(Some(serde_json::from_str(&self.read("policy.json")?)?))
    }

    fn read_json_or_default<T: serde::de::DeserializeOwned + Default>(
        &self,
        name: &str,
    ) -> anyhow::Result<T> {
        if !self.file(name).exists() {
            return Ok(T::default());
        }
        Ok(serde_json::from_str(&self.read(name)?)?)
    }

    /// What commands have done to the phone.
    pub fn phone(&self) -> anyhow::Result<crate::phone::PhoneState> {
        self.read_json_or_default("phone.json")
    }

    pub fn save_phone(&self, phone: &crate::phone::PhoneState) -> anyhow::Result<()> {
        self.write_atomic("phone.json", &serde_json::to_vec_pretty(phone)?, false)
    }

    /// The answers given to commands, for repeats and for answers not yet delivered.
    pub fn answers(&self) -> anyhow::Result<crate::phone::AnswerLog> {
        self.read_json_or_default("answers.json")
    }

    pub fn save_answers(&self, log: &crate::phone::AnswerLog) -> anyhow::Result<()> {
        self.write_atomic("answers.json", &serde_json::to_vec(log)?, false)
    }

    /// Erases everything: identity, enrollment, reports, policy, the phone's state. What a
    /// wipe leaves is a phone that must enroll again.
    pub fn erase(&self) -> anyhow::Result<()> {
        for entry in std::fs::read_dir(&self.dir).map_err(context(&self.dir))? {
            let path = entry.map_err(context(&self.dir))?.path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path).map_err(context(&path))?;
            } else {
                std::fs::remove_file(&path).map_err(context(&path))?;
            }
        }
        std::fs::create_dir_all(self.file("pending")).map_err(context(&self.dir))
    }

    pub fn acknowledge(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::remove_file(path).map_err(context(path))
    }
}
