//! What the query engine needs from the rest of the system, as traits the composition root
//! implements: the Glue catalog ([`CatalogPort`]), object stores per bucket
//! ([`ObjectsPort`]) and the caller's permissions ([`Access`]). Each has an in-memory fake in
//! the tests.

use std::collections::BTreeMap;
use std::sync::Arc;

use object_store::ObjectStore;

/// A failure of a port call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// The named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// It exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The request was refused as invalid.
    #[error("{0}")]
    Invalid(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// The account and region a query runs in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    /// Account id.
    pub account: String,
    /// Region.
    pub region: String,
}

/// A column: name, Hive type, comment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ColumnDef {
    /// Name.
    pub name: String,
    /// Hive type name (`string`, `array<int>`, …).
    pub type_name: String,
    /// Comment.
    pub comment: Option<String>,
}

/// A Glue database as the query engine sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DatabaseDef {
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Location.
    pub location: Option<String>,
    /// Parameters.
    pub parameters: BTreeMap<String, String>,
}

/// A Glue table as the query engine sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableDef {
    /// Database.
    pub database: String,
    /// Name.
    pub name: String,
    /// Data columns.
    pub columns: Vec<ColumnDef>,
    /// Partition keys.
    pub partition_keys: Vec<ColumnDef>,
    /// `s3://bucket/prefix/`.
    pub location: Option<String>,
    /// Input format class.
    pub input_format: Option<String>,
    /// Output format class.
    pub output_format: Option<String>,
    /// SerDe class.
    pub serde: Option<String>,
    /// SerDe parameters.
    pub serde_parameters: BTreeMap<String, String>,
    /// Table parameters.
    pub parameters: BTreeMap<String, String>,
    /// `EXTERNAL_TABLE`, `VIRTUAL_VIEW`, …
    pub table_type: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Creation time (ms).
    pub create_time_ms: i64,
}

/// A partition: values (one per key) and location.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartitionDef {
    /// Values in partition-key order.
    pub values: Vec<String>,
    /// `s3://bucket/prefix/`.
    pub location: Option<String>,
}

/// The Glue catalog, as the caller (each call is authorised by the implementation against
/// `access`, for the `glue:` action named in its doc).
#[async_trait::async_trait]
pub trait CatalogPort: Send + Sync + std::fmt::Debug {
    /// `glue:GetDatabases`.
    fn databases(&self, scope: &Scope, access: &dyn Access) -> Result<Vec<DatabaseDef>, PortError>;
    /// `glue:GetDatabase`.
    fn database(&self, scope: &Scope, access: &dyn Access, name: &str) -> Result<DatabaseDef, PortError>;
    /// `glue:GetTables`.
    fn tables(&self, scope: &Scope, access: &dyn Access, db: &str) -> Result<Vec<TableDef>, PortError>;
    /// `glue:GetTable`.
    fn table(&self, scope: &Scope, access: &dyn Access, db: &str, name: &str) -> Result<TableDef, PortError>;
    /// `glue:GetPartitions`: every partition of the table.
    fn partitions(
        &self,
        scope: &Scope,
        access: &dyn Access,
        db: &str,
        table: &str,
    ) -> Result<Vec<PartitionDef>, PortError>;
    /// `glue:CreateDatabase`.
    async fn create_database(&self, scope: &Scope, access: &dyn Access, db: DatabaseDef) -> Result<(), PortError>;
    /// `glue:DeleteDatabase`.
    async fn drop_database(&self, scope: &Scope, access: &dyn Access, name: &str) -> Result<(), PortError>;
    /// `glue:CreateTable`.
    async fn create_table(&self, scope: &Scope, access: &dyn Access, table: TableDef) -> Result<(), PortError>;
    /// `glue:DeleteTable`.
    async fn drop_table(&self, scope: &Scope, access: &dyn Access, db: &str, name: &str) -> Result<(), PortError>;
    /// `glue:BatchCreatePartition`: adds the partitions that do not exist yet; returns how
    /// many were added.
    async fn add_partitions(
        &self,
        scope: &Scope,
        access: &dyn Access,
        db: &str,
        table: &str,
        partitions: Vec<PartitionDef>,
    ) -> Result<usize, PortError>;
    /// `glue:BatchDeletePartition`: removes the partitions that exist; returns how many.
    async fn drop_partitions(
        &self,
        scope: &Scope,
        access: &dyn Access,
        db: &str,
        table: &str,
        values: Vec<Vec<String>>,
    ) -> Result<usize, PortError>;
}

/// Object stores over the S3 engine's buckets.
pub trait ObjectsPort: Send + Sync + std::fmt::Debug {
    /// The store of `bucket` (`NotFound` when the bucket does not exist).
    fn store(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>, PortError>;
}

/// The permissions of the principal a query runs as (Athena acts as its caller).
pub trait Access: Send + Sync + std::fmt::Debug {
    /// False when everything is allowed.
    fn enforced(&self) -> bool;
    /// `Ok` when `action` on `resource` is allowed, else AWS's AccessDenied message.
    fn authorize(&self, action: &str, resource: &str) -> Result<(), String>;
}

/// Allows everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Access for AllowAll {
    fn enforced(&self) -> bool {
        false
    }

    fn authorize(&self, _action: &str, _resource: &str) -> Result<(), String> {
        Ok(())
    }
}

/// Splits `s3://bucket/key/prefix` into bucket and key prefix.
pub fn split_s3(url: &str) -> Option<(String, String)> {
    let rest = url
        .strip_prefix("s3://")
        .or_else(|| url.strip_prefix("s3a://"))
        .or_else(|| url.strip_prefix("s3n://"))?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return None;
    }
    Some((bucket.to_string(), key.to_string()))
}

/// A shared handle.
pub type Catalogs = Arc<dyn CatalogPort>;
