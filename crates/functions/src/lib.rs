//! Lambda engine: functions (configuration, code packages, versions, aliases, resource
//! policies), their execution as local child processes speaking the Lambda Runtime API
//! ([`host`]), the durable asynchronous-invoke queue ([`queue`]), and Kinesis event source
//! mappings ([`esm`]). It sits below `api-lambda` (the restJson1 control and invoke API) and
//! is called by the composition root for S3 bucket notifications and Firehose processors.
//! It never speaks HTTP to AWS clients; the only HTTP it serves is each instance's Runtime
//! API on loopback.

pub mod code;
mod engine;
pub mod error;
pub mod esm;
pub mod host;
pub mod model;
pub mod queue;

pub use engine::*;
pub use error::{Error, Result};
pub use model::*;

/// Every table the engine owns.
pub(crate) const ALL_TABLES: &[&str] = &[
    engine::T_FUNCTIONS,
    engine::T_STATE,
    queue::T_ASYNC,
    esm::T_MAPPINGS,
    esm::T_POSITIONS,
];
