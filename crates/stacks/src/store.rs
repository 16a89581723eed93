//! Durable documents of the stack lifecycle (values in the shared redb `MetaStore`).
//!
//! | table | key | value |
//! |---|---|---|
//! | `cfn_stacks` | `<stack uuid>` | [`StackDoc`] (JSON): the stack, its template, parameters, resources, outputs |
//! | `cfn_events` | `<stack uuid>/<seq:012>` | [`EventDoc`] (JSON): one stack event; `seq` grows by one per event of the stack |
//! | `cfn_change_sets` | `<change set uuid>` | [`ChangeSetDoc`] (JSON) |
//!
//! Every value carries `version`, the format version 1. The stack uuid is the last part of
//! its id (`arn:aws:cloudformation:<region>:<account>:stack/<name>/<uuid>`); the account and
//! region are inside the document. A change of a stack (its status, one resource's status,
//! its outputs) and the events it produces commit in ONE transaction, so the events of a
//! stack always describe its stored state. Deleted stacks stay (status `DELETE_COMPLETE`),
//! as CloudFormation keeps them for DescribeStacks by id and ListStacks.
//!
//! **Recovery rule** ([`crate::lifecycle::Stacks::open`]): operations run in the server's
//! memory, so a stack found in a `*_IN_PROGRESS` status at start (other than
//! `REVIEW_IN_PROGRESS`, which waits for a change set) was interrupted. It is marked failed
//! (`CREATE_IN_PROGRESS` → `CREATE_FAILED`, `ROLLBACK_IN_PROGRESS` → `ROLLBACK_FAILED`,
//! `UPDATE_IN_PROGRESS` and `UPDATE_COMPLETE_CLEANUP_IN_PROGRESS` → `UPDATE_FAILED`,
//! `UPDATE_ROLLBACK_*IN_PROGRESS` → `UPDATE_ROLLBACK_FAILED`, `DELETE_IN_PROGRESS` →
//! `DELETE_FAILED`) with the reason `Stack was interrupted by a restart`, and so is each of
//! its resources left `*_IN_PROGRESS`; one event per stack records it. Nothing is undone
//! automatically: the user deletes (or updates) the stack, which acts on the physical ids
//! that were recorded.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::template::Policy;

pub(crate) const T_STACKS: &str = "cfn_stacks";
pub(crate) const T_EVENTS: &str = "cfn_events";
pub(crate) const T_CHANGE_SETS: &str = "cfn_change_sets";
pub(crate) const FORMAT_VERSION: u32 = 1;

/// A stack's status (CloudFormation's `StackStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(missing_docs)]
pub enum StackStatus {
    CreateInProgress,
    CreateFailed,
    CreateComplete,
    RollbackInProgress,
    RollbackFailed,
    RollbackComplete,
    DeleteInProgress,
    DeleteFailed,
    DeleteComplete,
    UpdateInProgress,
    UpdateCompleteCleanupInProgress,
    UpdateComplete,
    UpdateFailed,
    UpdateRollbackInProgress,
    UpdateRollbackFailed,
    UpdateRollbackCompleteCleanupInProgress,
    UpdateRollbackComplete,
    ReviewInProgress,
}

impl StackStatus {
    /// Every status, for filters.
    pub const ALL: [StackStatus; 18] = [
        StackStatus::CreateInProgress,
        StackStatus::CreateFailed,
        StackStatus::CreateComplete,
        StackStatus::RollbackInProgress,
        StackStatus::RollbackFailed,
        StackStatus::RollbackComplete,
        StackStatus::DeleteInProgress,
        StackStatus::DeleteFailed,
        StackStatus::DeleteComplete,
        StackStatus::UpdateInProgress,
        StackStatus::UpdateCompleteCleanupInProgress,
        StackStatus::UpdateComplete,
        StackStatus::UpdateFailed,
        StackStatus::UpdateRollbackInProgress,
        StackStatus::UpdateRollbackFailed,
        StackStatus::UpdateRollbackCompleteCleanupInProgress,
        StackStatus::UpdateRollbackComplete,
        StackStatus::ReviewInProgress,
    ];

    /// The wire name (`CREATE_COMPLETE`).
    pub fn as_str(self) -> &'static str {
        match self {
            StackStatus::CreateInProgress => "CREATE_IN_PROGRESS",
            StackStatus::CreateFailed => "CREATE_FAILED",
            StackStatus::CreateComplete => "CREATE_COMPLETE",
            StackStatus::RollbackInProgress => "ROLLBACK_IN_PROGRESS",
            StackStatus::RollbackFailed => "ROLLBACK_FAILED",
            StackStatus::RollbackComplete => "ROLLBACK_COMPLETE",
            StackStatus::DeleteInProgress => "DELETE_IN_PROGRESS",
            StackStatus::DeleteFailed => "DELETE_FAILED",
            StackStatus::DeleteComplete => "DELETE_COMPLETE",
            StackStatus::UpdateInProgress => "UPDATE_IN_PROGRESS",
            StackStatus::UpdateCompleteCleanupInProgress => "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS",
            StackStatus::UpdateComplete => "UPDATE_COMPLETE",
            StackStatus::UpdateFailed => "UPDATE_FAILED",
            StackStatus::UpdateRollbackInProgress => "UPDATE_ROLLBACK_IN_PROGRESS",
            StackStatus::UpdateRollbackFailed => "UPDATE_ROLLBACK_FAILED",
            StackStatus::UpdateRollbackCompleteCleanupInProgress => "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS",
            StackStatus::UpdateRollbackComplete => "UPDATE_ROLLBACK_COMPLETE",
            StackStatus::ReviewInProgress => "REVIEW_IN_PROGRESS",
        }
    }

    /// The status of a wire name.
    pub fn parse(s: &str) -> Option<StackStatus> {
        StackStatus::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// An operation is running (REVIEW_IN_PROGRESS is not: it waits for a change set).
    pub fn in_progress(self) -> bool {
        self != StackStatus::ReviewInProgress && self.as_str().ends_with("_IN_PROGRESS")
    }

    /// What a restart makes of an operation it interrupted (see the module's recovery rule).
    pub fn interrupted(self) -> Option<StackStatus> {
        Some(match self {
            StackStatus::CreateInProgress => StackStatus::CreateFailed,
            StackStatus::RollbackInProgress => StackStatus::RollbackFailed,
            StackStatus::UpdateInProgress | StackStatus::UpdateCompleteCleanupInProgress => StackStatus::UpdateFailed,
            StackStatus::UpdateRollbackInProgress | StackStatus::UpdateRollbackCompleteCleanupInProgress => {
                StackStatus::UpdateRollbackFailed
            }
            StackStatus::DeleteInProgress => StackStatus::DeleteFailed,
            _ => return None,
        })
    }
}

/// A resource's status (CloudFormation's `ResourceStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(missing_docs)]
pub enum ResourceStatus {
    CreateInProgress,
    CreateFailed,
    CreateComplete,
    DeleteInProgress,
    DeleteFailed,
    DeleteComplete,
    DeleteSkipped,
    UpdateInProgress,
    UpdateFailed,
    UpdateComplete,
}

impl ResourceStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceStatus::CreateInProgress => "CREATE_IN_PROGRESS",
            ResourceStatus::CreateFailed => "CREATE_FAILED",
            ResourceStatus::CreateComplete => "CREATE_COMPLETE",
            ResourceStatus::DeleteInProgress => "DELETE_IN_PROGRESS",
            ResourceStatus::DeleteFailed => "DELETE_FAILED",
            ResourceStatus::DeleteComplete => "DELETE_COMPLETE",
            ResourceStatus::DeleteSkipped => "DELETE_SKIPPED",
            ResourceStatus::UpdateInProgress => "UPDATE_IN_PROGRESS",
            ResourceStatus::UpdateFailed => "UPDATE_FAILED",
            ResourceStatus::UpdateComplete => "UPDATE_COMPLETE",
        }
    }

    /// What a restart makes of a resource operation it interrupted.
    pub fn interrupted(self) -> Option<ResourceStatus> {
        Some(match self {
            ResourceStatus::CreateInProgress => ResourceStatus::CreateFailed,
            ResourceStatus::DeleteInProgress => ResourceStatus::DeleteFailed,
            ResourceStatus::UpdateInProgress => ResourceStatus::UpdateFailed,
            _ => return None,
        })
    }
}

/// A deletion or replacement policy as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[allow(missing_docs)]
pub enum StoredPolicy {
    #[default]
    Delete,
    Retain,
    RetainExceptOnCreate,
    Snapshot,
}

impl From<Option<Policy>> for StoredPolicy {
    fn from(p: Option<Policy>) -> Self {
        match p {
            None | Some(Policy::Delete) => StoredPolicy::Delete,
            Some(Policy::Retain) => StoredPolicy::Retain,
            Some(Policy::RetainExceptOnCreate) => StoredPolicy::RetainExceptOnCreate,
            // No type kinesis-data provisions supports snapshots: CloudFormation deletes
            // such resources.
            Some(Policy::Snapshot) => StoredPolicy::Snapshot,
        }
    }
}

/// A key/value tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    /// `Key`.
    pub key: String,
    /// `Value`.
    pub value: String,
}

/// A parameter as DescribeStacks shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParameterValue {
    /// `ParameterKey`.
    pub key: String,
    /// `ParameterValue` (the value given, `****` is applied when shown).
    pub value: String,
    /// `ResolvedValue` (SSM parameter types).
    pub resolved_value: Option<String>,
    /// `NoEcho`.
    pub no_echo: bool,
}

/// An output of a stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputDoc {
    /// `OutputKey`.
    pub key: String,
    /// `OutputValue`.
    pub value: String,
    /// `Description`.
    pub description: Option<String>,
    /// `ExportName`.
    pub export_name: Option<String>,
}

/// One resource of a stack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceDoc {
    /// `LogicalResourceId`.
    pub logical_id: String,
    /// `ResourceType`.
    pub resource_type: String,
    /// `PhysicalResourceId` (none until created).
    pub physical_id: Option<String>,
    /// `ResourceStatus`.
    pub status: ResourceStatus,
    /// `ResourceStatusReason`.
    pub status_reason: Option<String>,
    /// `LastUpdatedTimestamp` (ms since the epoch).
    pub updated_ms: i64,
    /// The properties it was created or last updated with (intrinsics evaluated).
    pub properties: Value,
    /// What `Ref` gives.
    pub ref_value: Value,
    /// What `Fn::GetAtt` gives.
    pub attributes: BTreeMap<String, Value>,
    /// `DeletionPolicy`.
    pub deletion_policy: StoredPolicy,
    /// `UpdateReplacePolicy`.
    pub update_replace_policy: StoredPolicy,
    /// `Metadata`, unevaluated.
    pub metadata: Option<Value>,
    /// The attributes are secret (a custom resource answered `NoEcho`).
    #[serde(default)]
    pub no_echo: bool,
}

/// A stack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StackDoc {
    /// Format version (1).
    pub version: u32,
    /// `StackId`.
    pub stack_id: String,
    /// `StackName`.
    pub stack_name: String,
    /// The owning account.
    pub account: String,
    /// The region.
    pub region: String,
    /// `StackStatus`.
    pub status: StackStatus,
    /// `StackStatusReason`.
    pub status_reason: Option<String>,
    /// `CreationTime` (ms).
    pub created_ms: i64,
    /// `LastUpdatedTime` (ms).
    pub updated_ms: Option<i64>,
    /// `DeletionTime` (ms).
    pub deleted_ms: Option<i64>,
    /// The template's `Description`.
    pub description: Option<String>,
    /// The template as given (GetTemplate).
    pub template_body: String,
    /// The parameter values given (by name), for UsePreviousValue and updates.
    pub given_parameters: BTreeMap<String, String>,
    /// Every parameter's value, as DescribeStacks shows them.
    pub parameters: Vec<ParameterValue>,
    /// `Capabilities` acknowledged.
    pub capabilities: Vec<String>,
    /// `Tags`.
    pub tags: Vec<Tag>,
    /// `DisableRollback`.
    pub disable_rollback: bool,
    /// Resources of types no provider supports are recorded as placeholders (with a warning
    /// in their event) instead of failing: `kinesis-data deploy --allow-unsupported`, or the
    /// server's `[cloudformation] allow_unsupported`. Once set, it stays.
    #[serde(default)]
    pub allow_unsupported: bool,
    /// `Outputs`.
    pub outputs: Vec<OutputDoc>,
    /// Resources by logical id.
    pub resources: BTreeMap<String, ResourceDoc>,
    /// The exports the stack imports (`Fn::ImportValue`).
    pub imports: Vec<String>,
    /// The change set the stack was last created or updated from.
    pub change_set_id: Option<String>,
    /// The sequence number of the stack's last event.
    pub event_seq: u64,
    /// `RoleARN`: the service role resources are made with (kept for updates and deletes).
    #[serde(default)]
    pub role_arn: Option<String>,
    /// The access key id of the caller whose call runs (or last ran) an operation: without a
    /// role, resources are made with its credentials.
    #[serde(default)]
    pub operator: Option<String>,
}

impl StackDoc {
    /// The uuid at the end of the stack id (the key of its documents).
    pub fn uuid(&self) -> &str {
        stack_uuid(&self.stack_id)
    }

    /// The stack still exists (it is not `DELETE_COMPLETE`).
    pub fn live(&self) -> bool {
        self.status != StackStatus::DeleteComplete
    }
}

/// The uuid at the end of a stack or change-set id.
pub fn stack_uuid(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

/// One stack event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventDoc {
    /// Format version (1).
    pub version: u32,
    /// `EventId`.
    pub event_id: String,
    /// `StackId`.
    pub stack_id: String,
    /// `StackName`.
    pub stack_name: String,
    /// `LogicalResourceId` (the stack's name for the stack's own events).
    pub logical_id: String,
    /// `PhysicalResourceId` (the stack id for the stack's own events).
    pub physical_id: Option<String>,
    /// `ResourceType` (`AWS::CloudFormation::Stack` for the stack's own events).
    pub resource_type: String,
    /// `Timestamp` (ms).
    pub timestamp_ms: i64,
    /// `ResourceStatus` (a stack or a resource status).
    pub status: String,
    /// `ResourceStatusReason`.
    pub status_reason: Option<String>,
    /// `ResourceProperties` (JSON text) of resource events that act with properties.
    pub properties: Option<String>,
    /// The event's sequence number within the stack.
    pub seq: u64,
}

/// One change of a change set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeDoc {
    /// `Add`, `Modify` or `Remove`.
    pub action: String,
    /// `LogicalResourceId`.
    pub logical_id: String,
    /// `PhysicalResourceId` (existing resources).
    pub physical_id: Option<String>,
    /// `ResourceType`.
    pub resource_type: String,
    /// `Replacement` for `Modify`: `True` or `False`.
    pub replacement: Option<String>,
}

/// A change set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeSetDoc {
    /// Format version (1).
    pub version: u32,
    /// `ChangeSetId`.
    pub id: String,
    /// `ChangeSetName`.
    pub name: String,
    /// `StackId`.
    pub stack_id: String,
    /// `StackName`.
    pub stack_name: String,
    /// `CREATE` or `UPDATE`.
    pub change_set_type: String,
    /// `Description`.
    pub description: Option<String>,
    /// The template.
    pub template_body: String,
    /// Parameter values given (by name).
    pub given_parameters: BTreeMap<String, String>,
    /// Every parameter's value.
    pub parameters: Vec<ParameterValue>,
    /// `Capabilities`.
    pub capabilities: Vec<String>,
    /// `Tags`.
    pub tags: Vec<Tag>,
    /// `Status`: `CREATE_COMPLETE`, `FAILED`.
    pub status: String,
    /// `StatusReason`.
    pub status_reason: Option<String>,
    /// `ExecutionStatus`: `AVAILABLE`, `UNAVAILABLE`, `EXECUTE_IN_PROGRESS`, `EXECUTE_COMPLETE`, `OBSOLETE`.
    pub execution_status: String,
    /// `CreationTime` (ms).
    pub created_ms: i64,
    /// `Changes`.
    pub changes: Vec<ChangeDoc>,
    /// `RoleARN` given with the change set.
    #[serde(default)]
    pub role_arn: Option<String>,
}

pub(crate) fn event_key(stack_uuid: &str, seq: u64) -> String {
    format!("{stack_uuid}/{seq:012}")
}

pub(crate) fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::Internal(format!("encode: {e}")))
}

pub(crate) fn from_json<T: for<'de> Deserialize<'de>>(what: &str, b: &[u8]) -> Result<T> {
    serde_json::from_slice(b).map_err(|e| Error::Internal(format!("stored {what} is unreadable: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_recover() {
        for s in StackStatus::ALL {
            assert_eq!(StackStatus::parse(s.as_str()), Some(s));
            let json = serde_json::to_string(&s).expect("encode");
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        assert!(StackStatus::CreateInProgress.in_progress());
        assert!(!StackStatus::ReviewInProgress.in_progress());
        assert_eq!(StackStatus::ReviewInProgress.interrupted(), None);
        assert_eq!(
            StackStatus::UpdateCompleteCleanupInProgress.interrupted(),
            Some(StackStatus::UpdateFailed)
        );
        assert!(event_key("u", 9) < event_key("u", 10));
    }
}
