//! API Gateway engine (REST APIs, v1): APIs, their resource trees (resources, methods,
//! integrations, method and integration responses), deployments and stages, and the data
//! plane: routing a request to a deployed method (reference §6.2), building the Lambda proxy
//! event (§6.3), and turning the function's answer into the HTTP response (§6.4); `HTTP_PROXY`
//! integrations forward the request to an HTTP backend ([`http_proxy`]). It sits below
//! `api-apigateway` (the restJson1 control plane and the invoke handler) and above `storage`;
//! it reaches Lambda only through its port [`FunctionInvoker`], which the composition root
//! implements over the functions engine (checking the function's resource policy for
//! `apigateway.amazonaws.com`), and HTTP backends only through [`HttpForwarder`], which the
//! composition root implements over an HTTP/1.1 client (this crate opens no sockets).
//!
//! # Deployments
//!
//! Control-plane changes edit the API's *current* tree, which serves no traffic. A
//! deployment is an immutable snapshot of the tree (and of `binaryMediaTypes`); a stage
//! points at one deployment, and only a stage's deployment serves traffic. CreateDeployment
//! refuses an API without methods or with a method that has no integration, as AWS does.
//!
//! # Durability (redb `MetaStore` tables)
//!
//! | table | key | value |
//! |---|---|---|
//! | `apigw_apis` | `<api id>` | [`RestApi`] (JSON): settings, the current resource tree, stages |
//! | `apigw_deployments` | `<api id>/<deployment id>` | [`Deployment`] (JSON): the snapshot |
//!
//! Every value carries `version`, the format version 1 ([`FORMAT_VERSION`]). API ids are
//! unique across accounts and regions (the invoke URL names only the id); the document names
//! its account and region. Every change is one transaction committed (grouped commit)
//! before it is acknowledged; CreateDeployment writes the snapshot and the stage change in
//! the same transaction, DeleteRestApi removes the API and all its deployments in one.
//!
//! **Recovery rule** ([`Gateway::open`]): every API and deployment is loaded into memory; a
//! document with an unknown format version stops the start (nothing is guessed); deployment
//! rows whose API no longer exists are deleted. A stage whose deployment is missing answers
//! 403 `Forbidden`. There is no other state: requests in flight when the process stopped
//! are simply not answered.

mod engine;
mod error;
pub mod http_proxy;
pub mod model;
pub mod ports;
pub mod proxy;
pub mod routing;

pub use engine::*;
pub use error::{Error, Result};
pub use model::*;
pub use ports::{
    ForwardError, ForwardFuture, FunctionInvoker, HttpForwarder, InvokeError, InvokeFuture, InvokeResult,
    MAX_FORWARD_RESPONSE_BYTES,
};
pub use proxy::Caller;
