//! Glue Data Catalog over the wire with aws-sdk-glue: databases, tables with versions,
//! partitions with expressions and paging, batch operations with per-item errors, AWS's
//! error codes and messages, durability across a restart, and IAM enforcement.

use aws_sdk_glue::types::{
    Column, DatabaseInput, PartitionInput, PartitionValueList, SerDeInfo, StorageDescriptor, TableInput,
};
use kd_test_support::{TestServer, glue_client};

use crate::assert_aws_error;
use crate::common::user_with;

type R = anyhow::Result<()>;

fn col(name: &str, t: &str) -> anyhow::Result<Column> {
    Ok(Column::builder().name(name).r#type(t).build()?)
}

fn events_table(name: &str) -> anyhow::Result<TableInput> {
    Ok(TableInput::builder()
        .name(name)
        .table_type("EXTERNAL_TABLE")
        .parameters("classification", "json")
        .storage_descriptor(
            StorageDescriptor::builder()
                .columns(col("id", "bigint")?)
                .columns(col("payload", "struct<a:string,b:array<int>>")?)
                .location("s3://lake/events/")
                .input_format("org.apache.hadoop.mapred.TextInputFormat")
                .output_format("org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat")
                .serde_info(
                    SerDeInfo::builder()
                        .serialization_library("org.openx.data.jsonserde.JsonSerDe")
                        .parameters("ignore.malformed.json", "true")
                        .build(),
                )
                .build(),
        )
        .partition_keys(col("year", "int")?)
        .partition_keys(col("month", "string")?)
        .build()?)
}

fn part(year: &str, month: &str) -> anyhow::Result<PartitionInput> {
    Ok(PartitionInput::builder()
        .values(year)
        .values(month)
        .storage_descriptor(
            StorageDescriptor::builder()
                .location(format!("s3://lake/events/year={year}/month={month}/"))
                .build(),
        )
        .build())
}

#[tokio::test]
async fn databases_tables_and_versions() -> R {
    let mut s = TestServer::start().await?;
    let g = s.glue();
    g.create_database()
        .database_input(
            DatabaseInput::builder()
                .name("Analytics")
                .description("lake")
                .parameters("k", "v")
                .build()?,
        )
        .send()
        .await?;
    let msg = assert_aws_error!(
        g.create_database()
            .database_input(DatabaseInput::builder().name("analytics").build()?)
            .send()
            .await,
        "AlreadyExistsException",
        400
    );
    assert_eq!(msg, "Database already exists.");
    let d = g.get_database().name("ANALYTICS").send().await?;
    let d = d.database().ok_or_else(|| anyhow::anyhow!("no database"))?;
    assert_eq!(d.name(), "analytics");
    assert_eq!(d.description(), Some("lake"));
    assert_eq!(d.catalog_id(), Some("000000000000"));
    assert!(d.create_time().is_some());
    let msg = assert_aws_error!(
        g.get_database().name("nope").send().await,
        "EntityNotFoundException",
        400
    );
    assert_eq!(msg, "Database nope not found.");

    g.create_table()
        .database_name("analytics")
        .table_input(events_table("Events")?)
        .send()
        .await?;
    assert_aws_error!(
        g.create_table()
            .database_name("analytics")
            .table_input(events_table("events")?)
            .send()
            .await,
        "AlreadyExistsException",
        400
    );
    assert_aws_error!(
        g.create_table()
            .database_name("missing")
            .table_input(events_table("x")?)
            .send()
            .await,
        "EntityNotFoundException",
        400
    );
    let t = g.get_table().database_name("analytics").name("events").send().await?;
    let t = t.table().ok_or_else(|| anyhow::anyhow!("no table"))?;
    assert_eq!(t.name(), "events");
    assert_eq!(t.database_name(), Some("analytics"));
    assert_eq!(t.version_id(), Some("0"));
    assert_eq!(t.partition_keys().len(), 2);
    let sd = t.storage_descriptor().ok_or_else(|| anyhow::anyhow!("no sd"))?;
    assert_eq!(sd.columns()[1].r#type(), Some("struct<a:string,b:array<int>>"));
    assert_eq!(
        sd.serde_info().and_then(|s| s.serialization_library()),
        Some("org.openx.data.jsonserde.JsonSerDe")
    );
    let msg = assert_aws_error!(
        g.get_table().database_name("analytics").name("nope").send().await,
        "EntityNotFoundException",
        400
    );
    assert_eq!(msg, "Table nope not found.");

    // UpdateTable archives the previous version.
    let mut v1 = events_table("events")?;
    v1.description = Some("second".into());
    g.update_table()
        .database_name("analytics")
        .table_input(v1)
        .send()
        .await?;
    let versions = g
        .get_table_versions()
        .database_name("analytics")
        .table_name("events")
        .send()
        .await?;
    let ids: Vec<_> = versions
        .table_versions()
        .iter()
        .filter_map(|v| v.version_id())
        .collect();
    assert_eq!(ids, vec!["1", "0"]);
    assert_aws_error!(
        g.update_table()
            .database_name("analytics")
            .table_input(events_table("events")?)
            .version_id("0")
            .send()
            .await,
        "ConcurrentModificationException",
        400
    );

    // GetTables: expression and paging.
    for i in 0..4 {
        g.create_table()
            .database_name("analytics")
            .table_input(events_table(&format!("t{i}"))?)
            .send()
            .await?;
    }
    let p = g.get_tables().database_name("analytics").max_results(3).send().await?;
    assert_eq!(p.table_list().len(), 3);
    let token = p.next_token().ok_or_else(|| anyhow::anyhow!("no token"))?;
    let p2 = g
        .get_tables()
        .database_name("analytics")
        .max_results(3)
        .next_token(token)
        .send()
        .await?;
    assert_eq!(p2.table_list().len(), 2);
    assert!(p2.next_token().is_none());
    let only = g
        .get_tables()
        .database_name("analytics")
        .expression("t*")
        .send()
        .await?;
    assert_eq!(only.table_list().len(), 4);
    assert_aws_error!(
        g.get_tables().database_name("analytics").max_results(101).send().await,
        "InvalidInputException",
        400
    );
    let res = g
        .batch_delete_table()
        .database_name("analytics")
        .tables_to_delete("t0")
        .tables_to_delete("nope")
        .send()
        .await?;
    assert_eq!(res.errors().len(), 1);
    assert_eq!(res.errors()[0].table_name(), Some("nope"));
    assert_eq!(
        res.errors()[0].error_detail().and_then(|d| d.error_code()),
        Some("EntityNotFoundException")
    );
    g.delete_table().database_name("analytics").name("t1").send().await?;

    // Durable across a restart.
    s.restart().await?;
    let g = s.glue();
    let t = g.get_table().database_name("analytics").name("events").send().await?;
    assert_eq!(t.table().and_then(|t| t.description()), Some("second"));
    let all = g.get_tables().database_name("analytics").send().await?;
    let names: Vec<_> = all.table_list().iter().map(|t| t.name()).collect();
    assert_eq!(names, vec!["events", "t2", "t3"]);
    let dbs = g.get_databases().send().await?;
    assert_eq!(dbs.database_list().len(), 1);
    g.update_database()
        .name("analytics")
        .database_input(DatabaseInput::builder().name("analytics").description("new").build()?)
        .send()
        .await?;
    let d = g.get_database().name("analytics").send().await?;
    assert_eq!(d.database().and_then(|d| d.description()), Some("new"));
    g.delete_database().name("analytics").send().await?;
    assert_aws_error!(
        g.get_table().database_name("analytics").name("events").send().await,
        "EntityNotFoundException",
        400
    );
    s.stop().await
}

#[tokio::test]
async fn partitions_expressions_and_batches() -> R {
    let s = TestServer::start().await?;
    let g = s.glue();
    g.create_database()
        .database_input(DatabaseInput::builder().name("lake").build()?)
        .send()
        .await?;
    g.create_table()
        .database_name("lake")
        .table_input(events_table("events")?)
        .send()
        .await?;
    g.create_partition()
        .database_name("lake")
        .table_name("events")
        .partition_input(part("2023", "12")?)
        .send()
        .await?;
    let msg = assert_aws_error!(
        g.create_partition()
            .database_name("lake")
            .table_name("events")
            .partition_input(part("2023", "12")?)
            .send()
            .await,
        "AlreadyExistsException",
        400
    );
    assert_eq!(msg, "Partition already exists.");
    assert_aws_error!(
        g.create_partition()
            .database_name("lake")
            .table_name("events")
            .partition_input(PartitionInput::builder().values("1").build())
            .send()
            .await,
        "InvalidInputException",
        400
    );
    let mut batch = g.batch_create_partition().database_name("lake").table_name("events");
    for y in 2020..2025 {
        for m in ["01", "02", "03"] {
            batch = batch.partition_input_list(part(&y.to_string(), m)?);
        }
    }
    let res = batch.send().await?;
    assert!(res.errors().is_empty(), "{:?}", res.errors());
    let dup = g
        .batch_create_partition()
        .database_name("lake")
        .table_name("events")
        .partition_input_list(part("2023", "12")?)
        .partition_input_list(part("2030", "01")?)
        .send()
        .await?;
    assert_eq!(dup.errors().len(), 1);
    assert_eq!(dup.errors()[0].partition_values(), ["2023", "12"]);

    let p = g
        .get_partition()
        .database_name("lake")
        .table_name("events")
        .partition_values("2023")
        .partition_values("12")
        .send()
        .await?;
    let p = p.partition().ok_or_else(|| anyhow::anyhow!("no partition"))?;
    assert_eq!(p.table_name(), Some("events"));
    assert_eq!(
        p.storage_descriptor().and_then(|sd| sd.location()),
        Some("s3://lake/events/year=2023/month=12/")
    );
    let msg = assert_aws_error!(
        g.get_partition()
            .database_name("lake")
            .table_name("events")
            .partition_values("1999")
            .partition_values("01")
            .send()
            .await,
        "EntityNotFoundException",
        400
    );
    assert_eq!(msg, "Cannot find partition.");

    let count = |expr: &'static str| {
        let g = g.clone();
        async move {
            let mut n = 0;
            let mut token: Option<String> = None;
            loop {
                let r = g
                    .get_partitions()
                    .database_name("lake")
                    .table_name("events")
                    .expression(expr)
                    .max_results(4)
                    .set_next_token(token.clone())
                    .send()
                    .await?;
                n += r.partitions().len();
                token = r.next_token().map(str::to_owned);
                if token.is_none() {
                    return anyhow::Ok(n);
                }
            }
        }
    };
    assert_eq!(count("year >= 2023").await?, 8);
    assert_eq!(count("year = 2021 AND month IN ('01', '03')").await?, 2);
    assert_eq!(count("year BETWEEN 2020 AND 2021 OR month LIKE '1%'").await?, 7);
    assert_eq!(count("NOT (year > 2020)").await?, 3);
    assert_eq!(count("").await?, 17);
    let msg = assert_aws_error!(
        g.get_partitions()
            .database_name("lake")
            .table_name("events")
            .expression("nope = 1")
            .send()
            .await,
        "InvalidInputException",
        400
    );
    assert!(msg.contains("nope"), "{msg}");

    let got = g
        .batch_get_partition()
        .database_name("lake")
        .table_name("events")
        .partitions_to_get(PartitionValueList::builder().values("2020").values("01").build()?)
        .partitions_to_get(PartitionValueList::builder().values("1900").values("01").build()?)
        .send()
        .await?;
    assert_eq!(got.partitions().len(), 1);

    let del = g
        .batch_delete_partition()
        .database_name("lake")
        .table_name("events")
        .partitions_to_delete(PartitionValueList::builder().values("2020").values("01").build()?)
        .partitions_to_delete(PartitionValueList::builder().values("1900").values("01").build()?)
        .send()
        .await?;
    assert_eq!(del.errors().len(), 1);
    g.delete_partition()
        .database_name("lake")
        .table_name("events")
        .partition_values("2023")
        .partition_values("12")
        .send()
        .await?;
    assert_eq!(count("").await?, 15);
    s.stop().await
}

#[tokio::test]
async fn policies_are_enforced_per_table() -> R {
    let s = TestServer::start().await?;
    let g = s.glue();
    g.create_database()
        .database_input(DatabaseInput::builder().name("db").build()?)
        .send()
        .await?;
    g.create_table()
        .database_name("db")
        .table_input(events_table("open")?)
        .send()
        .await?;
    g.create_table()
        .database_name("db")
        .table_input(events_table("secret")?)
        .send()
        .await?;
    let (id, secret) = user_with(
        &s,
        "analyst",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"glue:GetTable","Resource":"arn:aws:glue:us-east-1:000000000000:table/db/open"}]}"#,
    )
    .await?;
    let analyst = glue_client(&s.endpoint(), "us-east-1", &id, &secret);
    analyst.get_table().database_name("db").name("open").send().await?;
    let msg = assert_aws_error!(
        analyst.get_table().database_name("db").name("secret").send().await,
        "AccessDeniedException",
        400
    );
    assert!(msg.contains("glue:GetTable"), "{msg}");
    assert_aws_error!(
        analyst.delete_table().database_name("db").name("open").send().await,
        "AccessDeniedException",
        400
    );
    s.stop().await
}
