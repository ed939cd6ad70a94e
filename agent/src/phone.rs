//! The simulated phone's own state, which commands change: the lock screen, lost mode, the
//! apps installed or removed by command, restarts. The description file says what the phone
//! was given; this says what happened to it since. A real agent would call the platform's
//! device-policy API here instead.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::protocol::{CommandAction, CommandResult, CommandStatus, DeviceFacts, InstalledApp};

/// The version an app installed by command reports (the simulated store has one version).
pub const INSTALLED_VERSION: &str = "1.0.0";
/// Answers kept for repeats; older ones are forgotten.
const KEEP_ANSWERS: usize = 500;

/// What the lock screen shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockScreen {
    /// Lost mode: locked until municipal IT turns it off.
    pub lost_mode: bool,
    pub message: Option<String>,
    pub phone_number: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhoneState {
    /// Set while the phone is locked by command.
    pub lock_screen: Option<LockScreen>,
    /// Apps installed by command, beyond those in the description file.
    pub installed: Vec<InstalledApp>,
    /// Apps removed by command (package names or bundle ids).
    pub removed: Vec<String>,
    pub restarts: u32,
}

fn ok() -> CommandResult {
    CommandResult {
        status: CommandStatus::Acknowledged,
        error: None,
    }
}

impl PhoneState {
    /// The facts the phone reports now: the description's, with the commanded changes.
    pub fn facts(&self, base: &DeviceFacts) -> DeviceFacts {
        let mut facts = base.clone();
        facts
            .installed_apps
            .retain(|a| !self.removed.contains(&a.id));
        for app in &self.installed {
            if !facts.installed_apps.iter().any(|a| a.id == app.id) {
                facts.installed_apps.push(app.clone());
            }
        }
        facts
    }

    fn has_app(&self, base: &DeviceFacts, id: &str) -> bool {
        self.facts(base).installed_apps.iter().any(|a| a.id == id)
    }

    /// Carries out a command and says how it went. A wipe is only acknowledged here; erasing
    /// comes after the answer has reached the server.
    pub fn execute(&mut self, base: &DeviceFacts, action: &CommandAction) -> CommandResult {
        match action {
            CommandAction::Lock {
                message,
                phone_number,
            } => {
                // A phone in lost mode stays in lost mode; a plain lock does not lift it.
                if !self.lock_screen.as_ref().is_some_and(|l| l.lost_mode) {
                    self.lock_screen = Some(LockScreen {
                        lost_mode: false,
                        message: message.clone(),
                        phone_number: phone_number.clone(),
                    });
                }
                ok()
            }
            CommandAction::LostModeOn {
                message,
                phone_number,
            } => {
                self.lock_screen = Some(LockScreen {
                    lost_mode: true,
                    message: message.clone(),
                    phone_number: phone_number.clone(),
                });
                ok()
            }
            CommandAction::LostModeOff => {
                if self.lock_screen.as_ref().is_some_and(|l| l.lost_mode) {
                    self.lock_screen = None;
                }
                ok()
            }
            CommandAction::InstallApp { identifier, .. } => {
                self.removed.retain(|id| id != identifier);
                if !self.has_app(base, identifier) {
                    self.installed.push(InstalledApp {
                        id: identifier.clone(),
                        version: INSTALLED_VERSION.into(),
                    });
                }
                ok()
            }
            CommandAction::RemoveApp { identifier, .. } => {
                if !self.has_app(base, identifier) {
                    return CommandResult {
                        status: CommandStatus::Error,
                        error: Some(format!("{identifier} is not installed")),
                    };
                }
                self.installed.retain(|a| &a.id != identifier);
                if base.installed_apps.iter().any(|a| &a.id == identifier) {
                    self.removed.push(identifier.clone());
                }
                ok()
            }
            CommandAction::Restart => {
                self.restarts += 1;
                ok()
            }
            CommandAction::RefreshInformation | CommandAction::Wipe => ok(),
        }
    }
}

/// A command's answer as the phone keeps it, so that a repeat gets the same answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub result: CommandResult,
    pub wipe: bool,
    /// The server has stored it.
    pub reported: bool,
}

/// The answers given, by command id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerLog {
    pub answers: BTreeMap<i64, Answer>,
}

impl AnswerLog {
    pub fn remember(&mut self, id: i64, answer: Answer) {
        self.answers.insert(id, answer);
        while self.answers.len() > KEEP_ANSWERS {
            self.answers.pop_first();
        }
    }

    /// Answers the server has not stored yet, in command order.
    pub fn unreported(&self) -> Vec<(i64, Answer)> {
        self.answers
            .iter()
            .filter(|(_, a)| !a.reported)
            .map(|(id, a)| (*id, a.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> DeviceFacts {
        let mut facts =
            crate::swarm::simulated_facts("R58N12ABCDE", "490154203237518", "android", "X");
        facts.installed_apps = vec![InstalledApp {
            id: "se.phoniro.app".into(),
            version: "5.2.1".into(),
        }];
        facts
    }

    fn app(id: &str) -> (String, String) {
        ("key".into(), id.into())
    }

    #[test]
    fn installed_and_removed_apps_show_in_the_reported_facts() {
        let mut phone = PhoneState::default();
        let (key, id) = app("se.kommun.doc");
        let r = phone.execute(
            &base(),
            &CommandAction::InstallApp {
                app: key.clone(),
                identifier: id.clone(),
            },
        );
        assert_eq!(r.status, CommandStatus::Acknowledged);
        let ids = |p: &PhoneState| -> Vec<String> {
            p.facts(&base())
                .installed_apps
                .into_iter()
                .map(|a| a.id)
                .collect()
        };
        assert_eq!(ids(&phone), vec!["se.phoniro.app", "se.kommun.doc"]);
        for identifier in ["se.kommun.doc", "se.phoniro.app"] {
            let r = phone.execute(
                &base(),
                &CommandAction::RemoveApp {
                    app: key.clone(),
                    identifier: identifier.into(),
                },
            );
            assert_eq!(r.status, CommandStatus::Acknowledged, "{identifier}");
        }
        assert!(ids(&phone).is_empty());
        let again = phone.execute(
            &base(),
            &CommandAction::RemoveApp {
                app: key,
                identifier: "se.phoniro.app".into(),
            },
        );
        assert_eq!(again.status, CommandStatus::Error);
        assert!(again.error.expect("text").contains("not installed"));
    }

    #[test]
    fn lost_mode_outlasts_a_plain_lock_until_turned_off() {
        let mut phone = PhoneState::default();
        phone.execute(
            &base(),
            &CommandAction::LostModeOn {
                message: Some("Hittad? Ring".into()),
                phone_number: Some("+46812345678".into()),
            },
        );
        phone.execute(
            &base(),
            &CommandAction::Lock {
                message: None,
                phone_number: None,
            },
        );
        assert!(phone.lock_screen.as_ref().is_some_and(|l| l.lost_mode));
        phone.execute(&base(), &CommandAction::LostModeOff);
        assert_eq!(phone.lock_screen, None);
    }

    #[test]
    fn the_answer_log_keeps_the_newest_answers() {
        let mut log = AnswerLog::default();
        for id in 0..(KEEP_ANSWERS as i64 + 3) {
            log.remember(
                id,
                Answer {
                    result: ok(),
                    wipe: false,
                    reported: id % 2 == 0,
                },
            );
        }
        assert_eq!(log.answers.len(), KEEP_ANSWERS);
        assert_eq!(log.answers.keys().next(), Some(&3));
        assert!(log.unreported().iter().all(|(id, _)| id % 2 == 1));
    }
}
