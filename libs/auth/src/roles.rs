//! The role model: what each role of a token may do, as one table ([`allows`]).
//!
//! Roles come from the token's `roles` claim. Five are known, each a superset of the one below
//! it except that `operator` and `builder` are siblings (both extend `member`):
//!
//! | role | may |
//! |---|---|
//! | `viewer` | read: agents, models, skills, workflows, runs, desktops, knowledge bases (search included), data sources (tables and sample rows included), the tenant's events, its own profile |
//! | `member` | viewer + chat (asking a model included), write its own desktops and windows, search its own memory |
//! | `operator` | member + execute and cancel runs, approve human_approval nodes, schedules |
//! | `builder` | member + create, update and delete agents, skills, workflows, knowledge bases (and their documents) and data sources |
//! | `admin` | everything, the audit stream, other users' turns and memory, and adding users included |
//!
//! `user` (what early tokens carried) is an alias of `member`. Any other role grants nothing,
//! and a token without roles may do nothing but fail with `permission_denied`: a permission is
//! never assumed. Ownership (a member's *own* desktops, turns, memory) and tenant isolation are
//! enforced by the services on top of this table, never by it.

use std::fmt;
use std::str::FromStr;

/// A role of the model. Parsing accepts the alias `user` (= [`Role::Member`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Everything, audit and other users' data included.
    Admin,
    /// Member, plus writing agents, skills, workflows, knowledge bases and data sources.
    Builder,
    /// Chat, own desktops and memory, and every read.
    Member,
    /// Member, plus running, cancelling, approving and scheduling workflows.
    Operator,
    /// Read-only.
    Viewer,
}

impl Role {
    /// Every role, strongest first.
    pub const ALL: [Role; 5] = [Role::Admin, Role::Builder, Role::Operator, Role::Member, Role::Viewer];

    /// The role's name in tokens.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Builder => "builder",
            Self::Member => "member",
            Self::Operator => "operator",
            Self::Viewer => "viewer",
        }
    }

    /// Whether this role grants `permission` (the table of the module documentation).
    pub const fn grants(self, permission: Permission) -> bool {
        use Permission as P;
        let read = matches!(
            permission,
            P::AgentsRead
                | P::DataSourcesRead
                | P::DesktopsRead
                | P::EventsRead
                | P::KnowledgeBasesRead
                | P::ProfileRead
                | P::RunsRead
                | P::SkillsRead
                | P::WorkflowsRead
        );
        let member = read || matches!(permission, P::Chat | P::DesktopsWrite | P::MemoryRead);
        match self {
            Self::Admin => true,
            Self::Builder => {
                member
                    || matches!(
                        permission,
                        P::AgentsWrite
                            | P::DataSourcesWrite
                            | P::KnowledgeBasesWrite
                            | P::SkillsWrite
                            | P::WorkflowsWrite
                    )
            }
            Self::Operator => member || matches!(permission, P::RunsApprove | P::RunsExecute | P::SchedulesWrite),
            Self::Member => member,
            Self::Viewer => read,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not in the model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role '{0}'")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw {
            "admin" => Ok(Self::Admin),
            "builder" => Ok(Self::Builder),
            // Tokens issued before the role model carried `user` for an ordinary member.
            "member" | "user" => Ok(Self::Member),
            "operator" => Ok(Self::Operator),
            "viewer" => Ok(Self::Viewer),
            other => Err(UnknownRole(other.to_owned())),
        }
    }
}

/// Something a route or gRPC method needs the caller to be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// Read agents and the model list.
    AgentsRead,
    /// Create, update and delete agents.
    AgentsWrite,
    /// Read the tenant's audit stream.
    AuditRead,
    /// Chat with the pipeline, query an agent or ask a model; read one's own turns.
    Chat,
    /// Read the tenant's data sources: list them, test their connection, list their tables and
    /// columns, sample rows (never their connection parameters).
    DataSourcesRead,
    /// Register and delete the tenant's data sources.
    DataSourcesWrite,
    /// Read desktops and windows (and watch them over the desktop WebSocket).
    DesktopsRead,
    /// Create, change and delete desktops and windows (WebSocket window commands included).
    DesktopsWrite,
    /// Subscribe to the tenant's event stream (the audit domain needs [`Permission::AuditRead`] too).
    EventsRead,
    /// List, read and search the tenant's knowledge bases (never the platform's memory one).
    KnowledgeBasesRead,
    /// Create and delete the tenant's knowledge bases and insert their documents.
    KnowledgeBasesWrite,
    /// Search one's own conversation memory.
    MemoryRead,
    /// Read one's own identity (`/api/v1/me`, `WhoAmI`).
    ProfileRead,
    /// Decide a human_approval node of a run.
    RunsApprove,
    /// Start and cancel workflow runs.
    RunsExecute,
    /// Read workflow runs, their events and job history.
    RunsRead,
    /// Create and remove workflow schedules.
    SchedulesWrite,
    /// Read skills.
    SkillsRead,
    /// Create and delete skills.
    SkillsWrite,
    /// Read other users' turns and memory of the tenant.
    UsersRead,
    /// Add users to the tenant (built-in accounts) and provision the tenant's MindsDB project.
    UsersWrite,
    /// Read and validate workflows and their versions.
    WorkflowsRead,
    /// Create, update and delete workflows.
    WorkflowsWrite,
}

impl Permission {
    /// Every permission.
    pub const ALL: [Permission; 23] = [
        Permission::AgentsRead,
        Permission::AgentsWrite,
        Permission::AuditRead,
        Permission::Chat,
        Permission::DataSourcesRead,
        Permission::DataSourcesWrite,
        Permission::DesktopsRead,
        Permission::DesktopsWrite,
        Permission::EventsRead,
        Permission::KnowledgeBasesRead,
        Permission::KnowledgeBasesWrite,
        Permission::MemoryRead,
        Permission::ProfileRead,
        Permission::RunsApprove,
        Permission::RunsExecute,
        Permission::RunsRead,
        Permission::SchedulesWrite,
        Permission::SkillsRead,
        Permission::SkillsWrite,
        Permission::UsersRead,
        Permission::UsersWrite,
        Permission::WorkflowsRead,
        Permission::WorkflowsWrite,
    ];

    /// The permission's name, e.g. `agents.write`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AgentsRead => "agents.read",
            Self::AgentsWrite => "agents.write",
            Self::AuditRead => "audit.read",
            Self::Chat => "chat",
            Self::DataSourcesRead => "data_sources.read",
            Self::DataSourcesWrite => "data_sources.write",
            Self::DesktopsRead => "desktops.read",
            Self::DesktopsWrite => "desktops.write",
            Self::EventsRead => "events.read",
            Self::KnowledgeBasesRead => "knowledge_bases.read",
            Self::KnowledgeBasesWrite => "knowledge_bases.write",
            Self::MemoryRead => "memory.read",
            Self::ProfileRead => "profile.read",
            Self::RunsApprove => "runs.approve",
            Self::RunsExecute => "runs.execute",
            Self::RunsRead => "runs.read",
            Self::SchedulesWrite => "schedules.write",
            Self::SkillsRead => "skills.read",
            Self::SkillsWrite => "skills.write",
            Self::UsersRead => "users.read",
            Self::UsersWrite => "users.write",
            Self::WorkflowsRead => "workflows.read",
            Self::WorkflowsWrite => "workflows.write",
        }
    }

    /// Whether the permission only reads (`*.read`): calls that need one change nothing, so the
    /// audit log records them only when refused.
    pub fn is_read(self) -> bool {
        self.as_str().ends_with(".read")
    }

    /// The roles that grant this permission, strongest first.
    pub fn roles(self) -> Vec<Role> {
        Role::ALL.into_iter().filter(|r| r.grants(self)).collect()
    }

    /// The refusal message: `<permission> needs role a, b or c`.
    pub fn denial_message(self) -> String {
        let names: Vec<&str> = self.roles().into_iter().map(Role::as_str).collect();
        let roles = match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            Some((last, _)) => (*last).to_owned(),
            None => "none".to_owned(),
        };
        format!("{} needs role {roles}", self.as_str())
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a caller holding `roles` (token role names) has `permission`. Unknown role names
/// grant nothing; no roles grant nothing.
pub fn allows<S: AsRef<str>>(roles: &[S], permission: Permission) -> bool {
    roles.iter().filter_map(|r| r.as_ref().parse::<Role>().ok()).any(|r| r.grants(permission))
}

/// [`allows`], with the refusal as an [`getlood_common::ApiError`] (`permission_denied`, message
/// from [`Permission::denial_message`]).
pub fn require<S: AsRef<str>>(roles: &[S], permission: Permission) -> Result<(), getlood_common::ApiError> {
    if allows(roles, permission) {
        Ok(())
    } else {
        Err(getlood_common::ApiError::new(getlood_common::ErrorCode::PermissionDenied, permission.denial_message()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        use Permission as P;
        let member = [P::Chat, P::DesktopsWrite, P::MemoryRead];
        for p in Permission::ALL {
            assert!(allows(&["admin"], p), "{p}");
            assert!(!allows::<&str>(&[], p), "{p}");
            assert!(!allows(&["root", "superuser", "Admin"], p), "{p}");
            assert_eq!(allows(&["user"], p), allows(&["member"], p), "{p}");
        }
        for p in [
            P::AgentsRead,
            P::SkillsRead,
            P::WorkflowsRead,
            P::RunsRead,
            P::DesktopsRead,
            P::EventsRead,
            P::KnowledgeBasesRead,
            P::DataSourcesRead,
        ] {
            for r in Role::ALL {
                assert!(r.grants(p), "{r} {p}");
            }
        }
        for p in member {
            assert!(!allows(&["viewer"], p), "{p}");
            assert!(allows(&["member"], p) && allows(&["operator"], p) && allows(&["builder"], p), "{p}");
        }
        for p in [P::AgentsWrite, P::SkillsWrite, P::WorkflowsWrite, P::KnowledgeBasesWrite, P::DataSourcesWrite] {
            assert!(allows(&["builder"], p) && !allows(&["operator"], p) && !allows(&["member"], p), "{p}");
        }
        for p in [P::RunsExecute, P::RunsApprove, P::SchedulesWrite] {
            assert!(allows(&["operator"], p) && !allows(&["builder"], p) && !allows(&["member"], p), "{p}");
        }
        for p in [P::AuditRead, P::UsersRead, P::UsersWrite] {
            assert_eq!(p.roles(), [Role::Admin], "{p}");
        }
        // Roles add up.
        assert!(allows(&["builder", "operator"], P::RunsApprove));
        assert!(allows(&["nobody", "viewer"], P::RunsRead));
    }

    #[test]
    fn names_round_trip_and_messages_name_the_roles() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert_eq!("user".parse::<Role>(), Ok(Role::Member));
        assert!("owner".parse::<Role>().is_err());
        assert_eq!(Permission::SkillsWrite.denial_message(), "skills.write needs role admin or builder");
        assert_eq!(Permission::AuditRead.denial_message(), "audit.read needs role admin");
        assert_eq!(Permission::Chat.denial_message(), "chat needs role admin, builder, operator or member");
        let err = require(&["viewer"], Permission::Chat).unwrap_err();
        assert_eq!(err.code, getlood_common::ErrorCode::PermissionDenied);
    }
}
