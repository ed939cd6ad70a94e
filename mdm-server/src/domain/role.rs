//! Roles and what each may do. Every permission question the API asks is answered here.

use serde::{Deserialize, Serialize};

use super::command::CommandKind;
use super::DomainError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Municipal IT: users, policy, providers, devices, the whole audit trail.
    OperatorAdmin,
    /// Municipal service desk: day-to-day device work, no user or policy administration.
    OperatorStaff,
    /// A provider's IT contact: the provider's own phones, staff accounts and audit trail.
    ProviderAdmin,
    /// A provider's staff member: the phone assigned to them.
    ProviderUser,
}

pub const ALL_ROLES: [Role; 4] = [
    Role::OperatorAdmin,
    Role::OperatorStaff,
    Role::ProviderAdmin,
    Role::ProviderUser,
];

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::OperatorAdmin => "operator_admin",
            Role::OperatorStaff => "operator_staff",
            Role::ProviderAdmin => "provider_admin",
            Role::ProviderUser => "provider_user",
        }
    }

    pub fn parse(s: &str) -> Result<Self, DomainError> {
        ALL_ROLES.into_iter().find(|r| r.as_str() == s).ok_or_else(|| {
            DomainError::invalid(
                "role",
                format!(
                    "unknown role '{s}'; expected one of operator_admin, operator_staff, provider_admin, provider_user"
                ),
            )
        })
    }

    pub fn is_operator(self) -> bool {
        matches!(self, Role::OperatorAdmin | Role::OperatorStaff)
    }

    /// A role for an account of an organisation: operator roles belong to the operator's
    /// people, provider roles to a provider's. A mismatch is a fault of the `role` field, not
    /// a lack of permission.
    pub fn parse_for(s: &str, org_is_operator: bool) -> Result<Self, DomainError> {
        let role = Self::parse(s)?;
        if role.is_operator() == org_is_operator {
            return Ok(role);
        }
        Err(DomainError::invalid(
            "role",
            if org_is_operator {
                "the operator's people have operator roles: operator_admin or operator_staff"
            } else {
                "a provider's people have provider roles: provider_admin or provider_user"
            },
        ))
    }
}

/// Who is acting: the account, its organisation and its role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    pub account_id: i64,
    pub org_id: i64,
    pub role: Role,
}

/// Which organisations' data an actor may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Everything,
    Organisation(i64),
}

impl Scope {
    pub fn allows(self, org_id: Option<i64>) -> bool {
        match self {
            Scope::Everything => true,
            Scope::Organisation(own) => org_id == Some(own),
        }
    }

    pub fn org(self) -> Option<i64> {
        match self {
            Scope::Everything => None,
            Scope::Organisation(id) => Some(id),
        }
    }
}

/// What the actor asked to do was not allowed. The API answers 403 when the actor may see the
/// target but not change it, and 404 when the target lies outside its scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forbidden;

impl Actor {
    pub fn scope(&self) -> Scope {
        if self.role.is_operator() {
            Scope::Everything
        } else {
            Scope::Organisation(self.org_id)
        }
    }

    pub fn require_operator_admin(&self) -> Result<(), Forbidden> {
        (self.role == Role::OperatorAdmin)
            .then_some(())
            .ok_or(Forbidden)
    }

    pub fn require_operator(&self) -> Result<(), Forbidden> {
        self.role.is_operator().then_some(()).ok_or(Forbidden)
    }

    /// Municipal IT sends commands to phones; only its admins may wipe one or send a command
    /// to every phone of a provider.
    pub fn may_send_command(&self, kind: CommandKind, fan_out: bool) -> Result<(), Forbidden> {
        match self.role {
            Role::OperatorAdmin => Ok(()),
            Role::OperatorStaff if kind != CommandKind::Wipe && !fan_out => Ok(()),
            _ => Err(Forbidden),
        }
    }

    /// Municipal IT and the provider's IT contacts hand phones to holders and take them back;
    /// a provider user does not.
    pub fn may_manage_phones(&self) -> Result<(), Forbidden> {
        match self.role {
            Role::OperatorAdmin | Role::OperatorStaff | Role::ProviderAdmin => Ok(()),
            Role::ProviderUser => Err(Forbidden),
        }
    }

    /// Anyone may report a phone lost; a provider user only the phone they hold.
    pub fn may_report_loss(&self, holder: Option<i64>) -> bool {
        self.role != Role::ProviderUser || holder == Some(self.account_id)
    }

    /// Whether the actor may list and read accounts at all.
    pub fn may_read_accounts(&self) -> bool {
        matches!(self.role, Role::OperatorAdmin | Role::ProviderAdmin)
    }

    /// Creating, changing or deactivating an account of `target_role` in organisation
    /// `target_org` (of kind `target_is_operator`). Operator admins manage everyone; provider
    /// admins manage their own organisation's provider accounts and nothing else.
    pub fn may_manage_account(
        &self,
        target_org: i64,
        target_org_is_operator: bool,
        target_role: Role,
    ) -> Result<(), Forbidden> {
        if target_role.is_operator() != target_org_is_operator {
            return Err(Forbidden);
        }
        match self.role {
            Role::OperatorAdmin => Ok(()),
            Role::ProviderAdmin if target_org == self.org_id && !target_role.is_operator() => {
                Ok(())
            }
            _ => Err(Forbidden),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_must_fit_the_kind_of_organisation_and_a_mismatch_names_the_field() {
        assert_eq!(
            Role::parse_for("provider_user", false),
            Ok(Role::ProviderUser)
        );
        assert_eq!(
            Role::parse_for("operator_staff", true),
            Ok(Role::OperatorStaff)
        );
        for (role, operator) in [("operator_admin", false), ("provider_admin", true)] {
            let e = Role::parse_for(role, operator).expect_err(role);
            assert_eq!(e.field(), "role");
        }
    }

    const OPERATOR_ORG: i64 = 1;
    const PROVIDER_A: i64 = 2;
    const PROVIDER_B: i64 = 3;

    fn actor(role: Role, org_id: i64) -> Actor {
        Actor {
            account_id: 10,
            org_id,
            role,
        }
    }

    #[test]
    fn roles_round_trip_and_unknown_role_is_refused() {
        for role in ALL_ROLES {
            assert_eq!(Role::parse(role.as_str()), Ok(role));
        }
        assert!(Role::parse("superuser").is_err());
    }

    #[test]
    fn operators_see_everything_and_providers_only_their_own() {
        assert_eq!(
            actor(Role::OperatorStaff, OPERATOR_ORG).scope(),
            Scope::Everything
        );
        let scope = actor(Role::ProviderUser, PROVIDER_A).scope();
        assert!(scope.allows(Some(PROVIDER_A)));
        assert!(!scope.allows(Some(PROVIDER_B)));
        assert!(!scope.allows(None));
    }

    #[test]
    fn operator_admin_manages_everyone() {
        let admin = actor(Role::OperatorAdmin, OPERATOR_ORG);
        assert!(admin
            .may_manage_account(OPERATOR_ORG, true, Role::OperatorStaff)
            .is_ok());
        assert!(admin
            .may_manage_account(PROVIDER_B, false, Role::ProviderAdmin)
            .is_ok());
    }

    #[test]
    fn roles_must_match_the_kind_of_organisation() {
        let admin = actor(Role::OperatorAdmin, OPERATOR_ORG);
        assert!(admin
            .may_manage_account(PROVIDER_A, false, Role::OperatorAdmin)
            .is_err());
        assert!(admin
            .may_manage_account(OPERATOR_ORG, true, Role::ProviderUser)
            .is_err());
    }

    #[test]
    fn provider_admin_manages_only_its_own_providers_accounts() {
        let padmin = actor(Role::ProviderAdmin, PROVIDER_A);
        assert!(padmin
            .may_manage_account(PROVIDER_A, false, Role::ProviderUser)
            .is_ok());
        assert!(padmin
            .may_manage_account(PROVIDER_A, false, Role::ProviderAdmin)
            .is_ok());
        assert!(padmin
            .may_manage_account(PROVIDER_B, false, Role::ProviderUser)
            .is_err());
        assert!(padmin
            .may_manage_account(OPERATOR_ORG, true, Role::OperatorAdmin)
            .is_err());
    }

    #[test]
    fn staff_and_provider_users_manage_no_accounts() {
        for who in [
            actor(Role::OperatorStaff, OPERATOR_ORG),
            actor(Role::ProviderUser, PROVIDER_A),
        ] {
            assert!(who
                .may_manage_account(PROVIDER_A, false, Role::ProviderUser)
                .is_err());
        }
        assert!(!actor(Role::OperatorStaff, OPERATOR_ORG).may_read_accounts());
    }

    #[test]
    fn only_operator_admins_wipe_or_fan_out_commands() {
        let actor = |role| Actor {
            account_id: 1,
            org_id: 1,
            role,
        };
        let admin = actor(Role::OperatorAdmin);
        let staff = actor(Role::OperatorStaff);
        assert!(admin.may_send_command(CommandKind::Wipe, false).is_ok());
        assert!(admin.may_send_command(CommandKind::Lock, true).is_ok());
        assert!(staff.may_send_command(CommandKind::Lock, false).is_ok());
        assert!(staff.may_send_command(CommandKind::Wipe, false).is_err());
        assert!(staff.may_send_command(CommandKind::Lock, true).is_err());
        assert!(actor(Role::ProviderAdmin)
            .may_send_command(CommandKind::Lock, false)
            .is_err());
    }

    #[test]
    fn phones_are_managed_by_it_staff_and_reported_lost_by_their_holder() {
        for role in [
            Role::OperatorAdmin,
            Role::OperatorStaff,
            Role::ProviderAdmin,
        ] {
            assert!(actor(role, PROVIDER_A).may_manage_phones().is_ok());
            assert!(actor(role, PROVIDER_A).may_report_loss(None));
        }
        let user = actor(Role::ProviderUser, PROVIDER_A);
        assert!(user.may_manage_phones().is_err());
        assert!(user.may_report_loss(Some(user.account_id)));
        assert!(!user.may_report_loss(Some(user.account_id + 1)));
        assert!(!user.may_report_loss(None));
    }
}
