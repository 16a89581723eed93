//! The Athena engine: SQL over the Glue catalog and the S3 engine's objects, on Apache
//! DataFusion (confined to this crate). It sits below `api-athena` (the awsJson1.1 adapter)
//! and above `storage`; it reaches the catalog and the objects only through its ports
//! ([`CatalogPort`], [`ObjectsPort`]), which the composition root implements over the Glue
//! and S3 engines, and it acts as the caller ([`Access`]): every table, listing, object read
//! and result write is authorised for the principal that started the query.
//!
//! A query: StartQueryExecution commits the execution document (QUEUED) and spawns its task;
//! the task marks it RUNNING, then either runs Athena's Hive DDL as catalog calls
//! ([`ddl`]) or plans the SQL with a fresh DataFusion session whose catalog
//! `awsdatacatalog` resolves Glue databases and tables ([`table::GlueTable`]), whose object
//! stores are the buckets (counted for `DataScannedInBytes`, [`counting`]) and which knows
//! the Trino functions Athena users need ([`udf`]). Results stream batch by batch into
//! `<OutputLocation>/<id>.csv` (or `.txt` for DDL) plus `<id>.csv.metadata`
//! ([`results`]); GetQueryResults pages through that file. StopQueryExecution aborts the
//! task, which drops the DataFusion stream and stops reading.
//!
//! # Durability (table `athena_executions`, key `<id>`, value [`Execution`] as JSON)
//!
//! The document is written when the query is accepted and when it ends (SUCCEEDED, FAILED,
//! CANCELLED); RUNNING is kept in memory. **Recovery rule** ([`Query::open`]): an execution
//! still QUEUED or RUNNING in the store was interrupted by a stop of the process; it is
//! marked FAILED with `INTERNAL_ERROR_QUERY_ENGINE: kinesis-data stopped while the query was
//! running; run it again` (committed before the engine serves), and its partial result
//! file, if any, is left as it is.
//!
//! Workgroups (table `athena_workgroups`) are documented in [`workgroups`]: an execution
//! runs in one (its OutputLocation, enforced or not, and its BytesScannedCutoffPerQuery, which
//! cancels a query that reads more, as AWS does).

pub mod counting;
pub mod ddl;
mod engine;
mod error;
pub mod filter_order;
pub mod parquet_meta;
pub mod ports;
pub mod results;
pub mod serde;
pub mod table;
pub mod types;
pub mod udf;
pub mod workgroups;

pub use engine::*;
pub use error::{Error, Result};
pub use ports::*;
pub use workgroups::{
    ConfigUpdate, Encryption, NewWorkGroup, ResultSettings, WorkGroup, WorkGroupConfig, WorkGroupState, WorkGroupUpdate,
};
