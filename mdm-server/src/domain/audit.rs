//! The audit trail's hash chain: each entry commits to the one before it, so a changed,
//! inserted or deleted row breaks the chain at a place `audit verify` can name.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The hash the first entry chains to.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Denied,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "success" => Some(Outcome::Success),
            "denied" => Some(Outcome::Denied),
            "failed" => Some(Outcome::Failed),
            _ => None,
        }
    }
}

/// One audited event: who, when, from where, what, on which target, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEvent {
    pub actor_id: Option<i64>,
    /// The actor as a person reads it: an e-mail address, `cli` or `system`.
    pub actor_label: String,
    /// The organisation the event belongs to; provider admins read their own organisation's.
    pub org_id: Option<i64>,
    pub source: Option<String>,
    pub action: String,
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
    pub outcome: Outcome,
    /// Free-form facts as a JSON object text.
    pub details: String,
}

impl AuditEvent {
    /// A successful event done by no person: the command line, demo seeding, a benchmark.
    pub fn unattended(actor_label: &str, action: &str) -> Self {
        AuditEvent {
            actor_id: None,
            actor_label: actor_label.to_string(),
            org_id: None,
            source: None,
            action: action.to_string(),
            target_kind: None,
            target_id: None,
            outcome: Outcome::Success,
            details: "{}".to_string(),
        }
    }

    /// The event belongs to this organisation (so its provider admin can read it).
    pub fn in_org(mut self, org_id: Option<i64>) -> Self {
        if org_id.is_some() {
            self.org_id = org_id;
        }
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details.to_string();
        self
    }

    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }
}

/// A stored entry: the event, its place in the chain and its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub event: AuditEvent,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Serialize)]
struct Canonical<'a> {
    seq: i64,
    at: String,
    prev_hash: &'a str,
    #[serde(flatten)]
    event: &'a AuditEvent,
}

/// The entry's hash: SHA-256 over a canonical JSON text of its fields and the previous hash.
/// Times are hashed at microsecond precision, the finest both databases keep.
pub fn entry_hash(seq: i64, at: DateTime<Utc>, prev_hash: &str, event: &AuditEvent) -> String {
    let canonical = Canonical {
        seq,
        at: at.to_rfc3339_opts(SecondsFormat::Micros, true),
        prev_hash,
        event,
    };
    let text = serde_json::to_vec(&canonical).expect("audit entry serialises");
    hex::encode(Sha256::digest(&text))
}

/// Where and why the chain broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub seq: i64,
    pub reason: String,
}

/// Walks the chain in order. Feed it every entry by ascending `seq`; it keeps only the last
/// hash, so a million entries need no more memory than one.
#[derive(Debug)]
pub struct ChainVerifier {
    expected_seq: i64,
    prev_hash: String,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        ChainVerifier {
            expected_seq: 1,
            prev_hash: GENESIS_HASH.to_string(),
        }
    }
}

impl ChainVerifier {
    pub fn check(&mut self, entry: &AuditEntry) -> Result<(), ChainBreak> {
        let fail = |reason: String| ChainBreak {
            seq: entry.seq,
            reason,
        };
        if entry.seq != self.expected_seq {
            return Err(ChainBreak {
                seq: self.expected_seq,
                reason: format!(
                    "entry {} is missing (next stored entry is {})",
                    self.expected_seq, entry.seq
                ),
            });
        }
        if entry.prev_hash != self.prev_hash {
            return Err(fail("its link to the previous entry does not match".into()));
        }
        let recomputed = entry_hash(entry.seq, entry.at, &entry.prev_hash, &entry.event);
        if recomputed != entry.hash {
            return Err(fail("its content was changed after it was written".into()));
        }
        self.expected_seq += 1;
        self.prev_hash = entry.hash.clone();
        Ok(())
    }

    /// After the last entry: the chain head the store keeps must match the last entry, which
    /// catches deleted entries at the end of the chain.
    pub fn finish(&self, head_seq: i64, head_hash: &str) -> Result<i64, ChainBreak> {
        let last = self.expected_seq - 1;
        if head_seq != last || head_hash != self.prev_hash {
            return Err(ChainBreak {
                seq: last + 1,
                reason: format!("the chain head says {head_seq} entries but {last} were found"),
            });
        }
        Ok(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(action: &str) -> AuditEvent {
        AuditEvent {
            actor_id: Some(1),
            actor_label: "it@kommun.se".into(),
            org_id: Some(1),
            source: Some("127.0.0.1".into()),
            action: action.into(),
            target_kind: Some("device".into()),
            target_id: Some("7".into()),
            outcome: Outcome::Success,
            details: "{}".into(),
        }
    }

    fn chain(n: i64) -> Vec<AuditEntry> {
        let mut prev = GENESIS_HASH.to_string();
        let at: DateTime<Utc> = "2026-11-23T08:00:00.123456Z".parse().expect("time");
        (1..=n)
            .map(|seq| {
                let ev = event(&format!("action.{seq}"));
                let hash = entry_hash(seq, at, &prev, &ev);
                let entry = AuditEntry {
                    seq,
                    at,
                    event: ev,
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                };
                prev = hash;
                entry
            })
            .collect()
    }

    fn verify(entries: &[AuditEntry]) -> Result<(), ChainBreak> {
        let mut v = ChainVerifier::default();
        entries.iter().try_for_each(|e| v.check(e))?;
        let last = entries.last().expect("entries");
        v.finish(last.seq, &last.hash).map(|_| ())
    }

    #[test]
    fn an_untouched_chain_verifies() {
        assert_eq!(verify(&chain(5)), Ok(()));
    }

    #[test]
    fn a_changed_entry_is_named() {
        let mut entries = chain(5);
        entries[2].event.action = "device.delete".into();
        assert_eq!(verify(&entries).expect_err("broken").seq, 3);
    }

    #[test]
    fn a_deleted_entry_is_named() {
        let mut entries = chain(5);
        entries.remove(1);
        assert_eq!(verify(&entries).expect_err("broken").seq, 2);
    }

    #[test]
    fn a_truncated_tail_is_caught_by_the_head() {
        let entries = chain(5);
        let mut v = ChainVerifier::default();
        entries[..3]
            .iter()
            .try_for_each(|e| v.check(e))
            .expect("prefix ok");
        assert!(v.finish(5, &entries[4].hash).is_err());
    }
}
