//! The Athena engine's ports over the Glue catalog and the S3 engine. Athena acts as its
//! caller: each catalog call is authorised for the `glue:` action Athena would call on the
//! caller's behalf (on `catalog`, `database/<db>` or `table/<db>/<table>`); the query engine
//! itself authorises the S3 reads and the result writes. Object stores are
//! `kd_objects::store::BucketStore`s (in-process, no HTTP).

use std::sync::Arc;

use kd_catalog::{Catalog, Column, DatabaseInput, PartitionInput, SerDeInfo, StorageDescriptor, TableInput};
use kd_objects::Objects;
use kd_objects::store::BucketStore;
use kd_query::{Access, CatalogPort, ColumnDef, DatabaseDef, ObjectsPort, PartitionDef, PortError, Scope, TableDef};

/// [`CatalogPort`] over the Glue engine.
#[derive(Debug, Clone)]
pub struct GlueCatalog {
    catalog: Arc<Catalog>,
}

impl GlueCatalog {
    /// Over `catalog`.
    pub fn new(catalog: Arc<Catalog>) -> Self {
        Self { catalog }
    }
}

fn scope(s: &Scope) -> kd_catalog::Scope {
    kd_catalog::Scope {
        account: s.account.clone(),
        region: s.region.clone(),
    }
}

fn err(e: kd_catalog::Error) -> PortError {
    match e {
        kd_catalog::Error::EntityNotFound(m) => PortError::NotFound(m),
        kd_catalog::Error::AlreadyExists(m) => PortError::AlreadyExists(m),
        kd_catalog::Error::InvalidInput(m) => PortError::Invalid(m),
        other => PortError::Other(other.to_string()),
    }
}

fn allow(access: &dyn Access, s: &Scope, action: &str, rest: &str) -> Result<(), PortError> {
    if !access.enforced() {
        return Ok(());
    }
    access
        .authorize(
            &format!("glue:{action}"),
            &format!("arn:aws:glue:{}:{}:{rest}", s.region, s.account),
        )
        .map_err(|m| PortError::Other(format!("AccessDeniedException: {m} (not authorized)")))
}

fn col(c: &Column) -> ColumnDef {
    ColumnDef {
        name: c.name.clone(),
        type_name: c.type_name().to_string(),
        comment: c.comment.clone(),
    }
}

fn to_column(c: &ColumnDef) -> Column {
    Column {
        name: c.name.clone(),
        r#type: Some(c.type_name.clone()),
        comment: c.comment.clone(),
        parameters: None,
    }
}

fn table_def(t: kd_catalog::Table) -> TableDef {
    let sd = t.input.storage_descriptor.clone().unwrap_or_default();
    let serde = sd.serde_info.clone().unwrap_or_default();
    TableDef {
        database: t.database.clone(),
        name: t.input.name.clone(),
        columns: t.input.columns().iter().map(col).collect(),
        partition_keys: t.input.partition_keys().iter().map(col).collect(),
        location: sd.location.clone(),
        input_format: sd.input_format.clone(),
        output_format: sd.output_format.clone(),
        serde: serde.serialization_library.clone(),
        serde_parameters: serde.parameters.clone().unwrap_or_default(),
        parameters: t.input.parameters.clone().unwrap_or_default(),
        table_type: t.input.table_type.clone(),
        description: t.input.description.clone(),
        create_time_ms: t.create_time_ms,
    }
}

#[async_trait::async_trait]
impl CatalogPort for GlueCatalog {
    fn databases(&self, s: &Scope, access: &dyn Access) -> Result<Vec<DatabaseDef>, PortError> {
        allow(access, s, "GetDatabases", "catalog")?;
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .catalog
                .get_databases(&scope(s), token.as_deref(), None)
                .map_err(err)?;
            out.extend(page.items.into_iter().map(|d| DatabaseDef {
                name: d.input.name,
                description: d.input.description,
                location: d.input.location_uri,
                parameters: d.input.parameters.unwrap_or_default(),
            }));
            token = page.next_token;
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    fn database(&self, s: &Scope, access: &dyn Access, name: &str) -> Result<DatabaseDef, PortError> {
        allow(access, s, "GetDatabase", &format!("database/{name}"))?;
        let d = self.catalog.get_database(&scope(s), name).map_err(err)?;
        Ok(DatabaseDef {
            name: d.input.name,
            description: d.input.description,
            location: d.input.location_uri,
            parameters: d.input.parameters.unwrap_or_default(),
        })
    }

    fn tables(&self, s: &Scope, access: &dyn Access, db: &str) -> Result<Vec<TableDef>, PortError> {
        allow(access, s, "GetTables", &format!("database/{db}"))?;
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .catalog
                .get_tables(&scope(s), db, None, token.as_deref(), None)
                .map_err(err)?;
            out.extend(page.items.into_iter().map(table_def));
            token = page.next_token;
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    fn table(&self, s: &Scope, access: &dyn Access, db: &str, name: &str) -> Result<TableDef, PortError> {
        allow(access, s, "GetTable", &format!("table/{db}/{name}"))?;
        Ok(table_def(self.catalog.get_table(&scope(s), db, name).map_err(err)?))
    }

    fn partitions(
        &self,
        s: &Scope,
        access: &dyn Access,
        db: &str,
        table: &str,
    ) -> Result<Vec<PartitionDef>, PortError> {
        allow(access, s, "GetPartitions", &format!("table/{db}/{table}"))?;
        Ok(self
            .catalog
            .all_partitions(&scope(s), db, table)
            .map_err(err)?
            .into_iter()
            .map(|p| PartitionDef {
                location: p.location().map(str::to_owned),
                values: p.input.values,
            })
            .collect())
    }

    async fn create_database(&self, s: &Scope, access: &dyn Access, db: DatabaseDef) -> Result<(), PortError> {
        allow(access, s, "CreateDatabase", &format!("database/{}", db.name))?;
        self.catalog
            .create_database(
                &scope(s),
                DatabaseInput {
                    name: db.name,
                    description: db.description,
                    location_uri: db.location,
                    parameters: (!db.parameters.is_empty()).then_some(db.parameters),
                    ..DatabaseInput::default()
                },
            )
            .await
            .map_err(err)
    }

    async fn drop_database(&self, s: &Scope, access: &dyn Access, name: &str) -> Result<(), PortError> {
        allow(access, s, "DeleteDatabase", &format!("database/{name}"))?;
        self.catalog.delete_database(&scope(s), name).await.map_err(err)
    }

    async fn create_table(&self, s: &Scope, access: &dyn Access, t: TableDef) -> Result<(), PortError> {
        allow(access, s, "CreateTable", &format!("table/{}/{}", t.database, t.name))?;
        let input = TableInput {
            name: t.name.clone(),
            description: t.description.clone(),
            table_type: t.table_type.clone(),
            parameters: Some(t.parameters.clone()),
            partition_keys: Some(t.partition_keys.iter().map(to_column).collect()),
            storage_descriptor: Some(StorageDescriptor {
                columns: Some(t.columns.iter().map(to_column).collect()),
                location: t.location.clone(),
                input_format: t.input_format.clone(),
                output_format: t.output_format.clone(),
                compressed: Some(false),
                number_of_buckets: Some(-1),
                serde_info: Some(SerDeInfo {
                    name: None,
                    serialization_library: t.serde.clone(),
                    parameters: Some(t.serde_parameters.clone()),
                }),
                bucket_columns: Some(vec![]),
                sort_columns: Some(vec![]),
                parameters: Some(Default::default()),
                stored_as_sub_directories: Some(false),
                ..StorageDescriptor::default()
            }),
            ..TableInput::default()
        };
        self.catalog
            .create_table(&scope(s), &t.database, input)
            .await
            .map_err(err)
    }

    async fn drop_table(&self, s: &Scope, access: &dyn Access, db: &str, name: &str) -> Result<(), PortError> {
        allow(access, s, "DeleteTable", &format!("table/{db}/{name}"))?;
        self.catalog.delete_table(&scope(s), db, name).await.map_err(err)
    }

    async fn add_partitions(
        &self,
        s: &Scope,
        access: &dyn Access,
        db: &str,
        table: &str,
        partitions: Vec<PartitionDef>,
    ) -> Result<usize, PortError> {
        allow(access, s, "BatchCreatePartition", &format!("table/{db}/{table}"))?;
        let n = partitions.len();
        let inputs = partitions
            .into_iter()
            .map(|p| PartitionInput {
                values: p.values,
                storage_descriptor: Some(StorageDescriptor {
                    location: p.location,
                    ..StorageDescriptor::default()
                }),
                ..PartitionInput::default()
            })
            .collect();
        let errors = self
            .catalog
            .batch_create_partition(&scope(s), db, table, inputs)
            .await
            .map_err(err)?;
        if let Some((_, e)) = errors
            .iter()
            .find(|(_, e)| !matches!(e, kd_catalog::Error::AlreadyExists(_)))
        {
            return Err(PortError::Invalid(e.to_string()));
        }
        Ok(n - errors.len())
    }

    async fn drop_partitions(
        &self,
        s: &Scope,
        access: &dyn Access,
        db: &str,
        table: &str,
        values: Vec<Vec<String>>,
    ) -> Result<usize, PortError> {
        allow(access, s, "BatchDeletePartition", &format!("table/{db}/{table}"))?;
        let n = values.len();
        let errors = self
            .catalog
            .batch_delete_partition(&scope(s), db, table, values)
            .await
            .map_err(err)?;
        Ok(n - errors.len())
    }
}

/// [`ObjectsPort`] over the S3 engine.
#[derive(Debug, Clone)]
pub struct BucketStores {
    objects: Arc<Objects>,
}

impl BucketStores {
    /// Over `objects`.
    pub fn new(objects: Arc<Objects>) -> Self {
        Self { objects }
    }
}

impl ObjectsPort for BucketStores {
    fn store(&self, bucket: &str) -> Result<Arc<dyn object_store::ObjectStore>, PortError> {
        match BucketStore::open(self.objects.clone(), bucket) {
            Ok(s) => Ok(Arc::new(s)),
            Err(kd_objects::Error::NoSuchBucket { .. }) => Err(PortError::NotFound(format!(
                "The specified bucket does not exist: {bucket}"
            ))),
            Err(e) => Err(PortError::Other(e.to_string())),
        }
    }
}
