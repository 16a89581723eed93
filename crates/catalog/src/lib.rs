//! The Glue Data Catalog engine: databases, tables (with their archived versions) and
//! partitions, per account and region, as AWS Glue keeps them. It sits below `api-glue`
//! (the awsJson1.1 adapter) and above `storage`; the Athena engine (`query`) reads and
//! changes it through a port the composition root implements over [`Catalog`], so DDL run
//! in Athena and Glue API calls see one catalog. It knows no SQL engine: it stores the
//! definitions (columns with Hive type names, storage descriptors, SerDe parameters, table
//! parameters such as partition projection) and evaluates GetPartitions' expressions
//! ([`expr`]).
//!
//! Names of databases and tables are lower-cased on the way in, as Glue does.
//!
//! # Durability (format: `store.rs`)
//!
//! Every document (database, table, archived table version, partition) is a JSON value in the
//! shared redb `MetaStore`; a mutation commits all the documents it changes in ONE grouped
//! transaction before it answers, and only then changes the in-memory copy (mutations are
//! serialised). Deleting a table deletes its versions and partitions in the same
//! transaction; deleting a database deletes its tables likewise. **Recovery rule**
//! ([`Catalog::open`]): load every document; there is nothing to repair, since no change
//! spans two transactions.

mod engine;
mod error;
pub mod expr;
pub mod model;
mod store;

pub use engine::*;
pub use error::{Error, Result};
pub use model::*;
