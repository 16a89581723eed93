//! The catalog's shapes. They carry Glue's member names (PascalCase) so that the stored
//! documents and the wire shapes read the same; timestamps are epoch milliseconds here (the
//! adapter renders seconds).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Parameters maps (`Parameters`, `SerdeInfo.Parameters`).
pub type Params = BTreeMap<String, String>;

/// The account and region a catalog lives in (one catalog per pair, as on AWS).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    /// The 12-digit account id (also the `CatalogId`).
    pub account: String,
    /// The region.
    pub region: String,
}

/// `DatabaseInput`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DatabaseInput {
    /// Name (stored lower-cased).
    pub name: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Location URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location_uri: Option<String>,
    /// Parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Params>,
    /// Default permissions (kept, not enforced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_table_default_permissions: Option<serde_json::Value>,
    /// Resource link target (kept, not followed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_database: Option<serde_json::Value>,
}

/// A database as GetDatabase shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Database {
    /// The input it was created (or last updated) with, name lower-cased.
    pub input: DatabaseInput,
    /// Creation time (ms).
    pub create_time_ms: i64,
    /// The owning account.
    pub catalog_id: String,
}

/// `Column`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Column {
    /// Column name.
    pub name: String,
    /// Hive type (`string`, `bigint`, `array<string>`, `struct<a:int>`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    /// Comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Params>,
}

impl Column {
    /// The column's type, `string` when none was given.
    pub fn type_name(&self) -> &str {
        self.r#type.as_deref().unwrap_or("string")
    }
}

/// `SerDeInfo`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SerDeInfo {
    /// Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The SerDe class (`org.openx.data.jsonserde.JsonSerDe`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serialization_library: Option<String>,
    /// SerDe parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Params>,
}

/// `Order` (a sort column).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Order {
    /// Column.
    pub column: String,
    /// 1 ascending, 0 descending.
    pub sort_order: i32,
}

/// `StorageDescriptor`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StorageDescriptor {
    /// Data columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<Column>>,
    /// `s3://bucket/prefix/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// More locations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_locations: Option<Vec<String>>,
    /// Hadoop input format class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_format: Option<String>,
    /// Hadoop output format class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_format: Option<String>,
    /// Compressed flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compressed: Option<bool>,
    /// Buckets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number_of_buckets: Option<i32>,
    /// SerDe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serde_info: Option<SerDeInfo>,
    /// Bucket columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_columns: Option<Vec<String>>,
    /// Sort columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort_columns: Option<Vec<Order>>,
    /// Parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Params>,
    /// Skew information (kept as given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skewed_info: Option<serde_json::Value>,
    /// Stored as sub-directories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_as_sub_directories: Option<bool>,
    /// Schema registry reference (kept as given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_reference: Option<serde_json::Value>,
}

/// `TableInput`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TableInput {
    /// Name (stored lower-cased).
    pub name: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Last access (epoch seconds as given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_access_time: Option<f64>,
    /// Last analysis (epoch seconds as given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_analyzed_time: Option<f64>,
    /// Retention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<i64>,
    /// Storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_descriptor: Option<StorageDescriptor>,
    /// Partition keys, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_keys: Option<Vec<Column>>,
    /// View text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view_original_text: Option<String>,
    /// Expanded view text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view_expanded_text: Option<String>,
    /// `EXTERNAL_TABLE`, `VIRTUAL_VIEW`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_type: Option<String>,
    /// Table parameters (`classification`, `projection.*`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Params>,
    /// Resource link target (kept, not followed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_table: Option<serde_json::Value>,
    /// View definition (kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view_definition: Option<serde_json::Value>,
}

impl TableInput {
    /// The partition keys (empty when none).
    pub fn partition_keys(&self) -> &[Column] {
        self.partition_keys.as_deref().unwrap_or_default()
    }

    /// The data columns (empty when none).
    pub fn columns(&self) -> &[Column] {
        self.storage_descriptor
            .as_ref()
            .and_then(|sd| sd.columns.as_deref())
            .unwrap_or_default()
    }

    /// A table parameter.
    pub fn parameter(&self, key: &str) -> Option<&str> {
        self.parameters.as_ref().and_then(|p| p.get(key)).map(String::as_str)
    }
}

/// A table as GetTable shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    /// The definition, name lower-cased.
    pub input: TableInput,
    /// The database (lower-cased).
    pub database: String,
    /// Creation time (ms).
    pub create_time_ms: i64,
    /// Last update (ms).
    pub update_time_ms: i64,
    /// The owning account.
    pub catalog_id: String,
    /// The version id (`"0"`, `"1"`, … one per UpdateTable).
    pub version_id: String,
}

/// `PartitionInput`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PartitionInput {
    /// One value per partition key, in order.
    #[serde(default)]
    pub values: Vec<String>,
    /// Last access (epoch seconds as given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_access_time: Option<f64>,
    /// Storage (its `Location` is where the partition's objects are).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_descriptor: Option<StorageDescriptor>,
    /// Parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Params>,
    /// Last analysis (epoch seconds as given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_analyzed_time: Option<f64>,
}

/// A partition as GetPartition shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Partition {
    /// The definition.
    pub input: PartitionInput,
    /// Database (lower-cased).
    pub database: String,
    /// Table (lower-cased).
    pub table: String,
    /// Creation time (ms).
    pub creation_time_ms: i64,
    /// The owning account.
    pub catalog_id: String,
}

impl Partition {
    /// The partition's location, if its storage descriptor has one.
    pub fn location(&self) -> Option<&str> {
        self.input
            .storage_descriptor
            .as_ref()
            .and_then(|sd| sd.location.as_deref())
    }
}

/// One entry of GetTableVersions.
#[derive(Debug, Clone, PartialEq)]
pub struct TableVersion {
    /// The table as of this version.
    pub table: Table,
    /// Its version id.
    pub version_id: String,
}

/// A page of results and the token of the next page.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// The next page's token, if there is one.
    pub next_token: Option<String>,
}
