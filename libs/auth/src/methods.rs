//! The permission each public gRPC method needs, per service: one table per service, enforced
//! by the service itself (a direct call inside the cluster is held to the gateway's rule) and by
//! the gateway's edge, which re-serves the same service. A method missing from a table is refused
//! to everyone.

use crate::Permission as P;

/// One service's table: `(method name, permission)`.
pub type Methods = &'static [(&'static str, P)];

/// `getlood.agent_registry.v1.AgentRegistryService`.
pub const AGENT_REGISTRY: Methods = &[
    ("CreateAgent", P::AgentsWrite),
    ("GetAgent", P::AgentsRead),
    ("UpdateAgent", P::AgentsWrite),
    ("DeleteAgent", P::AgentsWrite),
    ("ListAgents", P::AgentsRead),
    ("FindAgents", P::AgentsRead),
    // Internal to the chat pipeline: the gateway's edge answers UNIMPLEMENTED to whoever may chat.
    ("QueryAgent", P::Chat),
    ("CreateSkill", P::SkillsWrite),
    ("GetSkill", P::SkillsRead),
    ("ListSkills", P::SkillsRead),
    ("DeleteSkill", P::SkillsWrite),
    // Internal to the gateway's sign-up: the edge answers UNIMPLEMENTED.
    ("ProvisionTenant", P::UsersWrite),
];

/// `getlood.desktop_state.v1.DesktopStateService`.
pub const DESKTOP_STATE: Methods = &[
    ("CreateDesktop", P::DesktopsWrite),
    ("GetDesktop", P::DesktopsRead),
    ("ListDesktops", P::DesktopsRead),
    ("DeleteDesktop", P::DesktopsWrite),
    ("OpenWindow", P::DesktopsWrite),
    ("GetWindow", P::DesktopsRead),
    ("ListWindows", P::DesktopsRead),
    ("UpdateWindowGeometry", P::DesktopsWrite),
    ("FocusWindow", P::DesktopsWrite),
    ("MinimizeWindow", P::DesktopsWrite),
    ("MaximizeWindow", P::DesktopsWrite),
    ("RestoreWindow", P::DesktopsWrite),
    ("CloseWindow", P::DesktopsWrite),
    ("SaveDesktop", P::DesktopsWrite),
    ("RestoreDesktop", P::DesktopsWrite),
    ("CreateDataSource", P::DataSourcesWrite),
    ("ListDataSources", P::DataSourcesRead),
    ("GetDataSource", P::DataSourcesRead),
    ("DeleteDataSource", P::DataSourcesWrite),
    ("TestDataSource", P::DataSourcesRead),
    ("ListDataSourceTables", P::DataSourcesRead),
    ("GetDataSourceTable", P::DataSourcesRead),
    ("SampleDataSourceRows", P::DataSourcesRead),
];

/// `getlood.workflow.v1.WorkflowService`.
pub const WORKFLOW: Methods = &[
    ("ValidateWorkflow", P::WorkflowsRead),
    ("CreateWorkflow", P::WorkflowsWrite),
    ("UpdateWorkflow", P::WorkflowsWrite),
    ("GetWorkflow", P::WorkflowsRead),
    ("ListWorkflows", P::WorkflowsRead),
    ("DeleteWorkflow", P::WorkflowsWrite),
    ("ListWorkflowVersions", P::WorkflowsRead),
    ("ExecuteWorkflow", P::RunsExecute),
    ("CancelRun", P::RunsExecute),
    // Also refused to the run's starter unless the workflow service allows self-approval.
    ("ApproveNode", P::RunsApprove),
    ("GetRun", P::RunsRead),
    ("ListRuns", P::RunsRead),
    ("WatchRun", P::RunsRead),
    ("ScheduleWorkflow", P::SchedulesWrite),
    ("UnscheduleWorkflow", P::SchedulesWrite),
    ("GetJobHistory", P::RunsRead),
];

/// `getlood.event_dispatcher.v1.EventDispatcherService`.
pub const EVENT_DISPATCHER: Methods = &[
    ("Subscribe", P::EventsRead),
    ("Search", P::MemoryRead),
    ("ListAudit", P::AuditRead),
    ("CreateKnowledgeBase", P::KnowledgeBasesWrite),
    ("ListKnowledgeBases", P::KnowledgeBasesRead),
    ("GetKnowledgeBase", P::KnowledgeBasesRead),
    ("DeleteKnowledgeBase", P::KnowledgeBasesWrite),
    ("InsertDocuments", P::KnowledgeBasesWrite),
    ("SearchKnowledgeBase", P::KnowledgeBasesRead),
];
