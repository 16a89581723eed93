//! The engine's documents: a REST API with its resource tree (methods, integrations, method
//! and integration responses) and stages, and deployments (immutable snapshots of the tree).
//! They are stored as JSON (see the crate docs for the tables) and handed to the adapter,
//! which renders them in AWS's camelCase shapes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The format version of every stored document.
pub const FORMAT_VERSION: u32 = 1;

/// Who owns a control-plane call: the caller's account and region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// 12-digit account id.
    pub account: String,
    /// Region (`us-east-1`).
    pub region: String,
}

/// A REST API: its settings, the current (undeployed) resource tree and its stages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestApi {
    /// Format version.
    pub version: u32,
    /// 10 lowercase alphanumerics.
    pub id: String,
    /// Owner account.
    pub account: String,
    /// Region.
    pub region: String,
    /// `name`.
    pub name: String,
    /// `description`.
    pub description: Option<String>,
    /// `version` (the API's own version label).
    pub api_version: Option<String>,
    /// Creation time, epoch seconds.
    pub created: i64,
    /// `binaryMediaTypes`.
    pub binary_media_types: Vec<String>,
    /// `endpointConfiguration.types` (`EDGE` by default).
    pub endpoint_types: Vec<String>,
    /// `apiKeySource` (`HEADER`).
    pub api_key_source: String,
    /// `disableExecuteApiEndpoint`.
    pub disable_execute_api_endpoint: bool,
    /// `minimumCompressionSize`.
    pub minimum_compression_size: Option<i64>,
    /// `policy` (stored, not enforced).
    pub policy: Option<String>,
    /// `tags`.
    pub tags: BTreeMap<String, String>,
    /// The id of the `/` resource.
    pub root_id: String,
    /// Every resource by id.
    pub resources: BTreeMap<String, Resource>,
    /// Stages by name.
    pub stages: BTreeMap<String, Stage>,
}

/// One resource (a path in the API's tree).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    /// 10 lowercase alphanumerics.
    pub id: String,
    /// The parent's id (`None` for the root).
    pub parent_id: Option<String>,
    /// The last path segment: literal, `{name}` or `{name+}` (`None` for the root).
    pub path_part: Option<String>,
    /// The full path template (`/items/{id}`).
    pub path: String,
    /// Methods by HTTP method (`GET`, …, `ANY`).
    pub methods: BTreeMap<String, Method>,
}

/// A method of a resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Method {
    /// `GET`, `POST`, …, `ANY`.
    pub http_method: String,
    /// `NONE`, `AWS_IAM`, `CUSTOM` or `COGNITO_USER_POOLS`.
    pub authorization_type: String,
    /// `authorizerId`.
    pub authorizer_id: Option<String>,
    /// `apiKeyRequired`.
    pub api_key_required: bool,
    /// `operationName`.
    pub operation_name: Option<String>,
    /// `requestParameters`.
    pub request_parameters: BTreeMap<String, bool>,
    /// `requestModels`.
    pub request_models: BTreeMap<String, String>,
    /// `requestValidatorId`.
    pub request_validator_id: Option<String>,
    /// `authorizationScopes`.
    pub authorization_scopes: Vec<String>,
    /// Method responses by status code.
    pub method_responses: BTreeMap<String, MethodResponse>,
    /// The integration, once put.
    pub integration: Option<Integration>,
}

/// A method response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodResponse {
    /// `statusCode`.
    pub status_code: String,
    /// `responseParameters`.
    pub response_parameters: BTreeMap<String, bool>,
    /// `responseModels`.
    pub response_models: BTreeMap<String, String>,
}

/// A method's integration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Integration {
    /// `type`: `AWS_PROXY`, `AWS`, `HTTP`, `HTTP_PROXY` or `MOCK`.
    pub kind: String,
    /// `httpMethod` (the integration's method; `POST` for Lambda).
    pub http_method: Option<String>,
    /// `uri`.
    pub uri: Option<String>,
    /// `connectionType` (`INTERNET`).
    pub connection_type: String,
    /// `connectionId`.
    pub connection_id: Option<String>,
    /// `credentials`.
    pub credentials: Option<String>,
    /// `requestParameters`.
    pub request_parameters: BTreeMap<String, String>,
    /// `requestTemplates`.
    pub request_templates: BTreeMap<String, String>,
    /// `passthroughBehavior` (`WHEN_NO_MATCH`).
    pub passthrough_behavior: String,
    /// `contentHandling`.
    pub content_handling: Option<String>,
    /// `timeoutInMillis`.
    pub timeout_ms: u32,
    /// `cacheNamespace` (the resource id).
    pub cache_namespace: String,
    /// `cacheKeyParameters`.
    pub cache_key_parameters: Vec<String>,
    /// Integration responses by status code.
    pub responses: BTreeMap<String, IntegrationResponse>,
}

/// An integration response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntegrationResponse {
    /// `statusCode` (the method response it maps to).
    pub status_code: String,
    /// `selectionPattern`.
    pub selection_pattern: Option<String>,
    /// `responseParameters` (`method.response.header.X` → `'value'`).
    pub response_parameters: BTreeMap<String, String>,
    /// `responseTemplates`.
    pub response_templates: BTreeMap<String, String>,
    /// `contentHandling`.
    pub content_handling: Option<String>,
}

/// A stage: a name pointing at a deployment, with variables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    /// `stageName`.
    pub name: String,
    /// `deploymentId`.
    pub deployment_id: String,
    /// `description`.
    pub description: Option<String>,
    /// `variables`.
    pub variables: BTreeMap<String, String>,
    /// `tracingEnabled`.
    pub tracing_enabled: bool,
    /// `cacheClusterEnabled`.
    pub cache_cluster_enabled: bool,
    /// `tags`.
    pub tags: BTreeMap<String, String>,
    /// Creation time, epoch seconds.
    pub created: i64,
    /// Last update, epoch seconds.
    pub updated: i64,
}

/// A deployment: the API's resource tree (and binary media types) when it was deployed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deployment {
    /// Format version.
    pub version: u32,
    /// 10 lowercase alphanumerics.
    pub id: String,
    /// The API's id.
    pub api_id: String,
    /// `description`.
    pub description: Option<String>,
    /// Creation time, epoch seconds.
    pub created: i64,
    /// The resource tree as deployed.
    pub resources: BTreeMap<String, Resource>,
    /// The API's root resource id.
    pub root_id: String,
    /// The API's `binaryMediaTypes` as deployed.
    pub binary_media_types: Vec<String>,
}

/// One operation of a PATCH request (`patchOperations`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatchOp {
    /// `add`, `remove`, `replace`, `move`, `copy` or `test`.
    pub op: String,
    /// A JSON-pointer-like path (`/name`, `/variables/fn`, `~1` escapes `/`).
    pub path: String,
    /// The new value.
    pub value: Option<String>,
    /// `from` (move/copy).
    pub from: Option<String>,
}

/// CreateRestApi's input.
#[derive(Debug, Clone, Default)]
pub struct CreateApiInput {
    /// `name` (required).
    pub name: String,
    /// `description`.
    pub description: Option<String>,
    /// `version`.
    pub api_version: Option<String>,
    /// `binaryMediaTypes`.
    pub binary_media_types: Vec<String>,
    /// `endpointConfiguration.types`.
    pub endpoint_types: Option<Vec<String>>,
    /// `apiKeySource`.
    pub api_key_source: Option<String>,
    /// `disableExecuteApiEndpoint`.
    pub disable_execute_api_endpoint: bool,
    /// `minimumCompressionSize`.
    pub minimum_compression_size: Option<i64>,
    /// `policy`.
    pub policy: Option<String>,
    /// `tags`.
    pub tags: BTreeMap<String, String>,
}

/// PutMethod's input.
#[derive(Debug, Clone, Default)]
pub struct MethodInput {
    /// `authorizationType` (required).
    pub authorization_type: String,
    /// `authorizerId`.
    pub authorizer_id: Option<String>,
    /// `apiKeyRequired`.
    pub api_key_required: bool,
    /// `operationName`.
    pub operation_name: Option<String>,
    /// `requestParameters`.
    pub request_parameters: BTreeMap<String, bool>,
    /// `requestModels`.
    pub request_models: BTreeMap<String, String>,
    /// `requestValidatorId`.
    pub request_validator_id: Option<String>,
    /// `authorizationScopes`.
    pub authorization_scopes: Vec<String>,
}

/// PutIntegration's input.
#[derive(Debug, Clone, Default)]
pub struct IntegrationInput {
    /// `type` (required).
    pub kind: String,
    /// `integrationHttpMethod`.
    pub http_method: Option<String>,
    /// `uri`.
    pub uri: Option<String>,
    /// `connectionType`.
    pub connection_type: Option<String>,
    /// `connectionId`.
    pub connection_id: Option<String>,
    /// `credentials`.
    pub credentials: Option<String>,
    /// `requestParameters`.
    pub request_parameters: BTreeMap<String, String>,
    /// `requestTemplates`.
    pub request_templates: BTreeMap<String, String>,
    /// `passthroughBehavior`.
    pub passthrough_behavior: Option<String>,
    /// `contentHandling`.
    pub content_handling: Option<String>,
    /// `timeoutInMillis`.
    pub timeout_ms: Option<i64>,
    /// `cacheNamespace`.
    pub cache_namespace: Option<String>,
    /// `cacheKeyParameters`.
    pub cache_key_parameters: Vec<String>,
}

/// CreateDeployment's input.
#[derive(Debug, Clone, Default)]
pub struct DeploymentInput {
    /// `stageName`: create (or repoint) this stage.
    pub stage_name: Option<String>,
    /// `stageDescription`.
    pub stage_description: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// `variables` of the stage.
    pub variables: BTreeMap<String, String>,
    /// `tracingEnabled` of the stage.
    pub tracing_enabled: Option<bool>,
}

/// CreateStage's input.
#[derive(Debug, Clone, Default)]
pub struct StageInput {
    /// `stageName` (required).
    pub name: String,
    /// `deploymentId` (required).
    pub deployment_id: String,
    /// `description`.
    pub description: Option<String>,
    /// `variables`.
    pub variables: BTreeMap<String, String>,
    /// `tracingEnabled`.
    pub tracing_enabled: bool,
    /// `cacheClusterEnabled`.
    pub cache_cluster_enabled: bool,
    /// `tags`.
    pub tags: BTreeMap<String, String>,
}

/// One page of a listing.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// `position` of the next page.
    pub position: Option<String>,
}
