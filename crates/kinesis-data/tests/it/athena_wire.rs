//! Athena over the wire with aws-sdk-athena: DDL into the Glue catalog, SELECT over JSON
//! lines (gzip), CSV and partitioned data, result files and paging, error categories,
//! parameters, idempotency, cancellation and the metadata operations.

use std::io::Write as _;
use std::time::Duration;

use aws_sdk_athena::types::{QueryExecutionContext, QueryExecutionState, ResultConfiguration};
use aws_sdk_s3::primitives::ByteStream;
use kd_test_support::{TestServer, wait_until};

use crate::assert_aws_error;

type R = anyhow::Result<()>;

const OUT: &str = "s3://results/athena/";

fn gzip(data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data)?;
    Ok(e.finish()?)
}

/// Runs `sql` and waits for a terminal state; returns (id, state, reason).
pub async fn run(
    a: &aws_sdk_athena::Client,
    db: &str,
    sql: &str,
) -> anyhow::Result<(String, QueryExecutionState, Option<String>)> {
    let id = a
        .start_query_execution()
        .query_string(sql)
        .query_execution_context(QueryExecutionContext::builder().database(db).build())
        .result_configuration(ResultConfiguration::builder().output_location(OUT).build())
        .send()
        .await?
        .query_execution_id()
        .unwrap_or_default()
        .to_owned();
    let (state, reason) = wait_until(Duration::from_secs(60), "query ends", || {
        let (a, id) = (a.clone(), id.clone());
        async move {
            let q = a.get_query_execution().query_execution_id(&id).send().await.ok()?;
            let s = q.query_execution()?.status()?.clone();
            let state = s.state()?.clone();
            matches!(
                state,
                QueryExecutionState::Succeeded | QueryExecutionState::Failed | QueryExecutionState::Cancelled
            )
            .then(|| (state, s.state_change_reason().map(str::to_owned)))
        }
    })
    .await?;
    Ok((id, state, reason))
}

/// All result rows (header included) of a finished query, paging with `page`.
pub async fn rows(a: &aws_sdk_athena::Client, id: &str, page: i32) -> anyhow::Result<Vec<Vec<Option<String>>>> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let r = a
            .get_query_results()
            .query_execution_id(id)
            .max_results(page)
            .set_next_token(token.clone())
            .send()
            .await?;
        for row in r.result_set().map(|s| s.rows()).unwrap_or_default() {
            out.push(
                row.data()
                    .iter()
                    .map(|d| d.var_char_value().map(str::to_owned))
                    .collect(),
            );
        }
        token = r.next_token().map(str::to_owned);
        if token.is_none() {
            return Ok(out);
        }
    }
}

async fn ok(a: &aws_sdk_athena::Client, db: &str, sql: &str) -> anyhow::Result<Vec<Vec<Option<String>>>> {
    let (id, state, reason) = run(a, db, sql).await?;
    anyhow::ensure!(state == QueryExecutionState::Succeeded, "{sql}: {state:?} {reason:?}");
    rows(a, &id, 1000).await
}

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

#[tokio::test]
async fn ddl_select_results_and_errors() -> R {
    let srv = TestServer::start().await?;
    let s3 = srv.s3();
    for b in ["lake", "results"] {
        s3.create_bucket().bucket(b).send().await?;
    }
    let lines = "{\"id\":1,\"Name\":\"ann\",\"tags\":[\"a\",\"b\"],\"doc\":\"{\\\"k\\\":{\\\"v\\\":7}}\",\"ts\":\"2024-01-02 03:04:05\"}\n\
                 {\"id\":2,\"name\":\"bob\",\"tags\":[],\"doc\":\"{}\",\"ts\":\"2024-01-03 00:00:00\"}\n\
                 not json\n\
                 {\"id\":3,\"name\":null,\"tags\":[\"c\"],\"doc\":\"{}\",\"ts\":null}\n";
    s3.put_object()
        .bucket("lake")
        .key("people/2024/part-1.json.gz")
        .body(ByteStream::from(gzip(lines.as_bytes())?))
        .send()
        .await?;
    s3.put_object()
        .bucket("lake")
        .key("people/_SUCCESS")
        .body(ByteStream::from_static(b"ignored"))
        .send()
        .await?;
    s3.put_object()
        .bucket("lake")
        .key("cities/c.csv")
        .body(ByteStream::from_static(
            b"city,pop\n\"Paris, FR\",2100000\nOslo,700000\n",
        ))
        .send()
        .await?;
    let a = srv.athena();
    ok(&a, "default", "CREATE DATABASE lake").await?;
    ok(
        &a,
        "lake",
        "CREATE EXTERNAL TABLE people (id bigint, name string, tags array<string>, doc string, ts timestamp)
         ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe' WITH SERDEPROPERTIES ('ignore.malformed.json'='true')
         LOCATION 's3://lake/people/'",
    )
    .await?;
    ok(
        &a,
        "lake",
        "CREATE EXTERNAL TABLE cities (city string, pop bigint)
         ROW FORMAT SERDE 'org.apache.hadoop.hive.serde2.OpenCSVSerde'
         LOCATION 's3://lake/cities/' TBLPROPERTIES ('skip.header.line.count'='1')",
    )
    .await?;
    // The table is in Glue.
    let t = srv
        .glue()
        .get_table()
        .database_name("lake")
        .name("people")
        .send()
        .await?;
    assert_eq!(t.table().map(|t| t.name()), Some("people"));

    let r = ok(
        &a,
        "lake",
        "SELECT id, name, cardinality(tags) AS n, json_extract_scalar(doc, '$.k.v') AS v, ts FROM people ORDER BY id",
    )
    .await?;
    assert_eq!(
        r,
        vec![
            vec![s("id"), s("name"), s("n"), s("v"), s("ts")],
            vec![s("1"), s("ann"), s("2"), s("7"), s("2024-01-02 03:04:05.000")],
            vec![s("2"), s("bob"), s("0"), None, s("2024-01-03 00:00:00.000")],
            vec![s("3"), None, s("1"), None, None],
            vec![None, None, None, None, None],
        ]
    );
    // The malformed line is a row of NULLs (ignore.malformed.json), as in Athena.
    let r = ok(&a, "lake", "SELECT count(*) AS c, count(id) FROM people").await?;
    assert_eq!(r[1], vec![s("4"), s("3")]);
    let r = ok(&a, "lake", "SELECT city, pop FROM cities ORDER BY pop DESC").await?;
    assert_eq!(r[1], vec![s("Paris, FR"), s("2100000")]);
    let r = ok(
        &a,
        "lake",
        "WITH p AS (SELECT id, \"$path\" AS path FROM people) SELECT count(DISTINCT path), max(id) FROM p",
    )
    .await?;
    assert_eq!(r[1], vec![s("1"), s("3")], "one object, max id");

    // Result files.
    let (id, _, _) = run(&a, "lake", "SELECT id, name FROM people WHERE id = 3").await?;
    let csv = s3
        .get_object()
        .bucket("results")
        .key(format!("athena/{id}.csv"))
        .send()
        .await?
        .body
        .collect()
        .await?
        .into_bytes();
    assert_eq!(&csv[..], b"\"id\",\"name\"\n\"3\",\n");
    s3.head_object()
        .bucket("results")
        .key(format!("athena/{id}.csv.metadata"))
        .send()
        .await?;
    let q = a.get_query_execution().query_execution_id(&id).send().await?;
    let q = q.query_execution().ok_or_else(|| anyhow::anyhow!("no execution"))?;
    assert_eq!(
        q.result_configuration().and_then(|c| c.output_location()),
        Some(format!("{OUT}{id}.csv").as_str())
    );
    assert!(q.statistics().and_then(|s| s.data_scanned_in_bytes()).unwrap_or(0) > 0);
    let res = a.get_query_results().query_execution_id(&id).send().await?;
    let cols = res
        .result_set()
        .and_then(|s| s.result_set_metadata())
        .map(|m| {
            m.column_info()
                .iter()
                .map(|c| c.r#type().to_owned())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    assert_eq!(cols, vec!["bigint", "varchar"]);

    // Paging: header only on the first page.
    let (id, _, _) = run(&a, "lake", "SELECT * FROM (VALUES (1), (2), (3), (4), (5)) AS t(x)").await?;
    let paged = rows(&a, &id, 2).await?;
    assert_eq!(paged.len(), 6);
    assert_eq!(paged[0], vec![s("x")]);
    assert_eq!(paged[5], vec![s("5")]);

    // Error categories.
    for (sql, prefix) in [
        ("SELECT nope FROM people", "COLUMN_NOT_FOUND"),
        ("SELECT * FROM missing_table", "TABLE_NOT_FOUND"),
        ("SELEKT 1", "SYNTAX_ERROR"),
    ] {
        let (_, state, reason) = run(&a, "lake", sql).await?;
        assert_eq!(state, QueryExecutionState::Failed, "{sql}");
        let reason = reason.unwrap_or_default();
        assert!(reason.starts_with(prefix), "{sql}: {reason}");
    }
    assert_aws_error!(
        a.start_query_execution().query_string("SELECT 1").send().await,
        "InvalidRequestException",
        400
    );

    // Parameters and idempotency.
    let token = "0123456789abcdef0123456789abcdef";
    let start = || {
        a.start_query_execution()
            .query_string("SELECT id FROM people WHERE name = ?")
            .execution_parameters("'bob'")
            .client_request_token(token)
            .query_execution_context(QueryExecutionContext::builder().database("lake").build())
            .result_configuration(ResultConfiguration::builder().output_location(OUT).build())
            .send()
    };
    let first = start().await?.query_execution_id().unwrap_or_default().to_owned();
    let second = start().await?.query_execution_id().unwrap_or_default().to_owned();
    assert_eq!(first, second);

    // DDL utilities.
    let r = ok(&a, "lake", "SHOW TABLES").await?;
    assert_eq!(r, vec![vec![s("cities")], vec![s("people")]]);
    let r = ok(&a, "lake", "DESCRIBE people").await?;
    assert!(r.len() >= 5);
    let dbs = a.list_databases().catalog_name("AwsDataCatalog").send().await?;
    assert!(dbs.database_list().iter().any(|d| d.name() == "lake"));
    let tm = a
        .get_table_metadata()
        .catalog_name("AwsDataCatalog")
        .database_name("lake")
        .table_name("people")
        .send()
        .await?;
    assert_eq!(tm.table_metadata().map(|t| t.columns().len()), Some(5));
    let wg = a.get_work_group().work_group("primary").send().await?;
    assert_eq!(wg.work_group().map(|w| w.name()), Some("primary"));
    let listed = a.list_query_executions().send().await?;
    assert!(listed.query_execution_ids().len() > 5);
    ok(&a, "lake", "DROP TABLE cities").await?;
    assert_aws_error!(
        srv.glue().get_table().database_name("lake").name("cities").send().await,
        "EntityNotFoundException",
        400
    );
    srv.stop().await
}

#[tokio::test]
async fn partitions_projection_and_pruning() -> R {
    let srv = TestServer::start().await?;
    let s3 = srv.s3();
    for b in ["lake", "results"] {
        s3.create_bucket().bucket(b).send().await?;
    }
    for (y, m, n) in [("2024", "01", 3), ("2024", "02", 2), ("2025", "01", 1)] {
        let body: String = (0..n).map(|i| format!("{{\"v\":{i}}}\n")).collect();
        s3.put_object()
            .bucket("lake")
            .key(format!("hive/year={y}/month={m}/data.json"))
            .body(ByteStream::from(body.clone().into_bytes()))
            .send()
            .await?;
        s3.put_object()
            .bucket("lake")
            .key(format!("fh/{y}/{m}/01/00/data.json"))
            .body(ByteStream::from(body.into_bytes()))
            .send()
            .await?;
    }
    let a = srv.athena();
    ok(&a, "default", "CREATE DATABASE d").await?;
    ok(
        &a,
        "d",
        "CREATE EXTERNAL TABLE hive (v int) PARTITIONED BY (year int, month string)
         ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe' LOCATION 's3://lake/hive/'",
    )
    .await?;
    let r = ok(&a, "d", "SELECT count(*) FROM hive").await?;
    assert_eq!(r[1], vec![s("0")], "no partitions before MSCK");
    ok(&a, "d", "MSCK REPAIR TABLE hive").await?;
    let r = ok(&a, "d", "SHOW PARTITIONS hive").await?;
    assert_eq!(r.len(), 3);
    let (id, _, _) = run(&a, "d", "SELECT count(*) FROM hive WHERE year = 2024 AND month = '02'").await?;
    assert_eq!(rows(&a, &id, 10).await?[1], vec![s("2")]);
    let one = a.get_query_execution().query_execution_id(&id).send().await?;
    let pruned = one
        .query_execution()
        .and_then(|q| q.statistics())
        .and_then(|s| s.data_scanned_in_bytes())
        .unwrap_or(-1);
    let (all, _, _) = run(&a, "d", "SELECT count(*) FROM hive").await?;
    let full = a
        .get_query_execution()
        .query_execution_id(&all)
        .send()
        .await?
        .query_execution()
        .and_then(|q| q.statistics())
        .and_then(|s| s.data_scanned_in_bytes())
        .unwrap_or(-1);
    assert!(pruned > 0 && pruned < full, "pruned {pruned} vs full {full}");
    ok(&a, "d", "ALTER TABLE hive DROP PARTITION (year=2025, month='01')").await?;
    let r = ok(&a, "d", "SELECT year, count(*) FROM hive GROUP BY year").await?;
    assert_eq!(r.len(), 2);

    // Projection over the Firehose layout.
    ok(
        &a,
        "d",
        "CREATE EXTERNAL TABLE fh (v int) PARTITIONED BY (datehour string)
         ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe' LOCATION 's3://lake/fh/'
         TBLPROPERTIES ('projection.enabled'='true', 'projection.datehour.type'='date',
           'projection.datehour.format'='yyyy/MM/dd/HH', 'projection.datehour.range'='2023/12/01/00,NOW',
           'projection.datehour.interval'='1', 'projection.datehour.interval.unit'='HOURS',
           'storage.location.template'='s3://lake/fh/${datehour}/')",
    )
    .await?;
    let r = ok(&a, "d", "SELECT count(*) FROM fh").await?;
    assert_eq!(r[1], vec![s("6")]);
    let r = ok(&a, "d", "SELECT count(*) FROM fh WHERE datehour >= '2024/02/01/00'").await?;
    assert_eq!(r[1], vec![s("3")]);
    srv.stop().await
}

/// A Parquet object (Snappy) with the columns of table `sales`.
fn sales_parquet(rows: &[(i64, &str, &str, f64, &str)]) -> anyhow::Result<Vec<u8>> {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
    use arrow::record_batch::RecordBatch;
    use parquet::arrow::ArrowWriter;
    use parquet::basic::Compression;
    use parquet::file::properties::WriterProperties;

    let col = |v: Vec<&str>| -> ArrayRef { Arc::new(StringArray::from(v)) };
    let batch = RecordBatch::try_from_iter(vec![
        (
            "id",
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))) as ArrayRef,
        ),
        ("customer", col(rows.iter().map(|r| r.1).collect())),
        ("country", col(rows.iter().map(|r| r.2).collect())),
        (
            "amount",
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.3))) as ArrayRef,
        ),
        ("sold_at", col(rows.iter().map(|r| r.4).collect())),
    ])?;
    let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let mut w = ArrowWriter::try_new(Vec::new(), batch.schema(), Some(props))?;
    w.write(&batch)?;
    Ok(w.into_inner()?)
}

/// DataScannedInBytes of a finished query.
async fn scanned(a: &aws_sdk_athena::Client, id: &str) -> anyhow::Result<i64> {
    Ok(a.get_query_execution()
        .query_execution_id(id)
        .send()
        .await?
        .query_execution()
        .and_then(|q| q.statistics())
        .and_then(|s| s.data_scanned_in_bytes())
        .unwrap_or(-1))
}

/// id, customer, country, amount, sold_at.
type SaleRow = (i64, &'static str, &'static str, f64, &'static str);

#[tokio::test]
async fn parquet_table_with_projection() -> R {
    let srv = TestServer::start().await?;
    let s3 = srv.s3();
    for b in ["lake", "results"] {
        s3.create_bucket().bucket(b).send().await?;
    }
    // Three objects in Firehose's `YYYY/MM/DD/HH/` layout, two days.
    let objects: [(&str, Vec<SaleRow>); 3] = [
        (
            "2024/03/01/10/sales-1-2024-03-01-10-00-00-a.parquet",
            vec![
                (1, "alice", "FR", 10.5, "2024/03/01 10:15"),
                (2, "bob", "DE", 20.0, "2024/03/01 10:30"),
                (3, "alina", "FR", 5.0, "2024/03/01 10:45"),
            ],
        ),
        (
            "2024/03/01/11/sales-1-2024-03-01-11-00-00-b.parquet",
            vec![
                (4, "carol", "US", 7.25, "2024/03/01 11:05"),
                (5, "bob", "DE", 1.0, "2024/03/01 11:59"),
            ],
        ),
        (
            "2024/03/02/05/sales-1-2024-03-02-05-00-00-c.parquet",
            vec![
                (6, "dave", "US", 100.0, "2024/03/02 05:00"),
                (7, "alice", "FR", 2.5, "2024/03/02 05:20"),
                (8, "erin", "JP", 3.0, "2024/03/02 05:40"),
            ],
        ),
    ];
    for (key, rows) in &objects {
        s3.put_object()
            .bucket("lake")
            .key(format!("sales/{key}"))
            .body(ByteStream::from(sales_parquet(rows)?))
            .send()
            .await?;
    }
    s3.put_object()
        .bucket("lake")
        .key("regions/r.csv")
        .body(ByteStream::from_static(b"FR,Europe\nDE,Europe\nUS,Americas\nJP,Asia\n"))
        .send()
        .await?;
    let a = srv.athena();
    ok(&a, "default", "CREATE DATABASE shop").await?;
    ok(
        &a,
        "shop",
        "CREATE EXTERNAL TABLE sales (id bigint, customer string, country string, amount double, sold_at string)
         PARTITIONED BY (datehour string)
         STORED AS PARQUET
         LOCATION 's3://lake/sales/'
         TBLPROPERTIES ('projection.enabled'='true', 'projection.datehour.type'='date',
           'projection.datehour.format'='yyyy/MM/dd/HH', 'projection.datehour.range'='2024/02/28/00,NOW',
           'projection.datehour.interval'='1', 'projection.datehour.interval.unit'='HOURS',
           'storage.location.template'='s3://lake/sales/${datehour}/')",
    )
    .await?;
    ok(
        &a,
        "shop",
        "CREATE EXTERNAL TABLE regions (code string, region string)
         ROW FORMAT DELIMITED FIELDS TERMINATED BY ',' LOCATION 's3://lake/regions/'",
    )
    .await?;

    // Every row, with the partition column.
    let (all_id, _, _) = run(&a, "shop", "SELECT count(*), sum(amount) FROM sales").await?;
    assert_eq!(rows(&a, &all_id, 10).await?[1], vec![s("8"), s("149.25")]);

    // String functions.
    let r = ok(
        &a,
        "shop",
        "SELECT id, upper(customer), length(customer), datehour FROM sales
         WHERE customer LIKE 'al%' ORDER BY id",
    )
    .await?;
    assert_eq!(
        r[1..],
        [
            vec![s("1"), s("ALICE"), s("5"), s("2024/03/01/10")],
            vec![s("3"), s("ALINA"), s("5"), s("2024/03/01/10")],
            vec![s("7"), s("ALICE"), s("5"), s("2024/03/02/05")],
        ]
    );

    // GROUP BY a string column.
    let r = ok(
        &a,
        "shop",
        "SELECT customer, count(*), sum(amount) FROM sales GROUP BY customer ORDER BY customer",
    )
    .await?;
    assert_eq!(
        r[1..],
        [
            vec![s("alice"), s("2"), s("13.0")],
            vec![s("alina"), s("1"), s("5.0")],
            vec![s("bob"), s("2"), s("21.0")],
            vec![s("carol"), s("1"), s("7.25")],
            vec![s("dave"), s("1"), s("100.0")],
            vec![s("erin"), s("1"), s("3.0")],
        ]
    );

    // A join with a text table.
    let r = ok(
        &a,
        "shop",
        "SELECT r.region, count(*), sum(s.amount) FROM sales s JOIN regions r ON s.country = r.code
         GROUP BY r.region ORDER BY r.region",
    )
    .await?;
    assert_eq!(
        r[1..],
        [
            vec![s("Americas"), s("2"), s("107.25")],
            vec![s("Asia"), s("1"), s("3.0")],
            vec![s("Europe"), s("5"), s("39.0")],
        ]
    );

    // "$path": the object each row came from.
    let r = ok(
        &a,
        "shop",
        "SELECT \"$path\", count(*) FROM sales GROUP BY \"$path\" ORDER BY \"$path\"",
    )
    .await?;
    let want: Vec<Vec<Option<String>>> = objects
        .iter()
        .map(|(key, rows)| vec![Some(format!("s3://lake/sales/{key}")), Some(rows.len().to_string())])
        .collect();
    assert_eq!(r[1..], want[..]);

    // A partition-filtered count reads fewer bytes than the full scan.
    let (day_id, state, reason) = run(
        &a,
        "shop",
        "SELECT count(*) FROM sales WHERE datehour BETWEEN '2024/03/01/00' AND '2024/03/01/23'",
    )
    .await?;
    assert_eq!(state, QueryExecutionState::Succeeded, "{reason:?}");
    assert_eq!(rows(&a, &day_id, 10).await?[1], vec![s("5")]);
    let (day, full) = (scanned(&a, &day_id).await?, scanned(&a, &all_id).await?);
    assert!(day > 0 && day < full, "partition-filtered {day} vs full {full}");

    // date_parse on a column with a literal format, and on the partition column.
    let r = ok(
        &a,
        "shop",
        "SELECT id, date_parse(sold_at, '%Y/%m/%d %H:%i'), date_parse(datehour, '%Y/%m/%d/%H')
         FROM sales WHERE date_parse(sold_at, '%Y/%m/%d %H:%i') >= TIMESTAMP '2024-03-01 11:00:00' ORDER BY id",
    )
    .await?;
    assert_eq!(
        r[1..],
        [
            vec![s("4"), s("2024-03-01 11:05:00.000"), s("2024-03-01 11:00:00.000")],
            vec![s("5"), s("2024-03-01 11:59:00.000"), s("2024-03-01 11:00:00.000")],
            vec![s("6"), s("2024-03-02 05:00:00.000"), s("2024-03-02 05:00:00.000")],
            vec![s("7"), s("2024-03-02 05:20:00.000"), s("2024-03-02 05:00:00.000")],
            vec![s("8"), s("2024-03-02 05:40:00.000"), s("2024-03-02 05:00:00.000")],
        ]
    );
    srv.stop().await
}

#[tokio::test]
async fn workgroups_their_operations_and_errors() -> R {
    use aws_sdk_athena::types::{
        EngineVersion, ResultConfigurationUpdates, Tag, WorkGroupConfiguration, WorkGroupConfigurationUpdates,
        WorkGroupState,
    };

    let srv = TestServer::start().await?;
    srv.s3().create_bucket().bucket("results").send().await?;
    let a = srv.athena();
    let arn = "arn:aws:athena:us-east-1:000000000000:workgroup/analytics";
    let config = WorkGroupConfiguration::builder()
        .result_configuration(
            ResultConfiguration::builder()
                .output_location("s3://results/analytics/")
                .build(),
        )
        .enforce_work_group_configuration(true)
        .bytes_scanned_cutoff_per_query(50_000_000)
        .engine_version(
            EngineVersion::builder()
                .selected_engine_version("Athena engine version 3")
                .build(),
        )
        .build();
    a.create_work_group()
        .name("analytics")
        .description("team queries")
        .configuration(config)
        .tags(Tag::builder().key("team").value("data").build())
        .send()
        .await?;
    let msg = assert_aws_error!(
        a.create_work_group().name("analytics").send().await,
        "InvalidRequestException",
        400
    );
    assert_eq!(msg, "WorkGroup is already created");
    assert_aws_error!(
        a.create_work_group().name("bad name").send().await,
        "InvalidRequestException",
        400
    );
    assert_aws_error!(
        a.create_work_group()
            .name("tiny")
            .configuration(
                WorkGroupConfiguration::builder()
                    .bytes_scanned_cutoff_per_query(5)
                    .build()
            )
            .send()
            .await,
        "InvalidRequestException",
        400
    );

    // GetWorkGroup shows it as configured; a workgroup made without a configuration enforces it.
    let got = a.get_work_group().work_group("analytics").send().await?;
    let w = got.work_group().ok_or_else(|| anyhow::anyhow!("no workgroup"))?;
    assert_eq!(w.name(), "analytics");
    assert_eq!(w.state(), Some(&WorkGroupState::Enabled));
    assert_eq!(w.description(), Some("team queries"));
    assert!(w.creation_time().is_some_and(|t| t.secs() > 1_600_000_000));
    let c = w.configuration().ok_or_else(|| anyhow::anyhow!("no configuration"))?;
    assert_eq!(
        c.result_configuration().and_then(|r| r.output_location()),
        Some("s3://results/analytics/")
    );
    assert_eq!(c.enforce_work_group_configuration(), Some(true));
    assert_eq!(c.bytes_scanned_cutoff_per_query(), Some(50_000_000));
    assert_eq!(
        c.engine_version().and_then(|e| e.effective_engine_version()),
        Some("Athena engine version 3")
    );
    a.create_work_group().name("adhoc").send().await?;
    let adhoc = a.get_work_group().work_group("adhoc").send().await?;
    assert_eq!(
        adhoc
            .work_group()
            .and_then(|w| w.configuration())
            .and_then(|c| c.enforce_work_group_configuration()),
        Some(true)
    );
    let msg = assert_aws_error!(
        a.get_work_group().work_group("nope").send().await,
        "InvalidRequestException",
        400
    );
    assert_eq!(msg, "WorkGroup nope is not found.");

    // ListWorkGroups: sorted by name, paged.
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = a
            .list_work_groups()
            .max_results(2)
            .set_next_token(token.clone())
            .send()
            .await?;
        assert!(page.work_groups().len() <= 2);
        names.extend(page.work_groups().iter().filter_map(|w| w.name().map(str::to_owned)));
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(names, ["adhoc", "analytics", "primary"]);
    assert_aws_error!(
        a.list_work_groups().max_results(51).send().await,
        "InvalidRequestException",
        400
    );

    // The enforced location wins over the request's.
    let id = a
        .start_query_execution()
        .query_string("SELECT 1 AS x")
        .work_group("analytics")
        .result_configuration(ResultConfiguration::builder().output_location(OUT).build())
        .send()
        .await?
        .query_execution_id()
        .unwrap_or_default()
        .to_owned();
    let q = wait_until(Duration::from_secs(60), "query ends", || {
        let (a, id) = (a.clone(), id.clone());
        async move {
            let q = a.get_query_execution().query_execution_id(&id).send().await.ok()?;
            let q = q.query_execution()?.clone();
            (q.status()?.state()? == &QueryExecutionState::Succeeded).then_some(q)
        }
    })
    .await?;
    assert_eq!(q.work_group(), Some("analytics"));
    let want = format!("s3://results/analytics/{id}.csv");
    assert_eq!(
        q.result_configuration().and_then(|r| r.output_location()),
        Some(want.as_str())
    );
    srv.s3()
        .head_object()
        .bucket("results")
        .key(format!("analytics/{id}.csv"))
        .send()
        .await?;
    let listed = a.list_query_executions().work_group("analytics").send().await?;
    assert_eq!(listed.query_execution_ids(), std::slice::from_ref(&id));
    assert!(
        !a.list_query_executions()
            .send()
            .await?
            .query_execution_ids()
            .contains(&id),
        "primary's list does not show it"
    );
    assert_aws_error!(
        a.list_query_executions().work_group("nope").send().await,
        "InvalidRequestException",
        400
    );

    // UpdateWorkGroup: disable it, drop the cutoff and the location.
    a.update_work_group()
        .work_group("analytics")
        .state(WorkGroupState::Disabled)
        .description("paused")
        .configuration_updates(
            WorkGroupConfigurationUpdates::builder()
                .remove_bytes_scanned_cutoff_per_query(true)
                .result_configuration_updates(
                    ResultConfigurationUpdates::builder()
                        .remove_output_location(true)
                        .build(),
                )
                .publish_cloud_watch_metrics_enabled(true)
                .build(),
        )
        .send()
        .await?;
    let got = a.get_work_group().work_group("analytics").send().await?;
    let w = got.work_group().ok_or_else(|| anyhow::anyhow!("no workgroup"))?;
    assert_eq!(w.state(), Some(&WorkGroupState::Disabled));
    assert_eq!(w.description(), Some("paused"));
    let c = w.configuration().ok_or_else(|| anyhow::anyhow!("no configuration"))?;
    assert_eq!(c.bytes_scanned_cutoff_per_query(), None);
    assert_eq!(c.result_configuration().and_then(|r| r.output_location()), None);
    assert_eq!(c.publish_cloud_watch_metrics_enabled(), Some(true));
    let msg = assert_aws_error!(
        a.start_query_execution()
            .query_string("SELECT 1")
            .work_group("analytics")
            .result_configuration(ResultConfiguration::builder().output_location(OUT).build())
            .send()
            .await,
        "InvalidRequestException",
        400
    );
    assert_eq!(msg, "WorkGroup analytics is disabled.");
    assert_aws_error!(
        a.update_work_group().work_group("nope").send().await,
        "InvalidRequestException",
        400
    );

    // Tags.
    a.tag_resource()
        .resource_arn(arn)
        .tags(Tag::builder().key("env").value("test").build())
        .send()
        .await?;
    a.untag_resource().resource_arn(arn).tag_keys("team").send().await?;
    let tags = a.list_tags_for_resource().resource_arn(arn).send().await?;
    let tags: Vec<(Option<&str>, Option<&str>)> = tags.tags().iter().map(|t| (t.key(), t.value())).collect();
    assert_eq!(tags, [(Some("env"), Some("test"))]);
    assert_aws_error!(
        a.list_tags_for_resource()
            .resource_arn("arn:aws:athena:us-east-1:000000000000:workgroup/nope")
            .send()
            .await,
        "ResourceNotFoundException",
        400
    );

    // DeleteWorkGroup: primary never; a workgroup with executions only recursively.
    assert_aws_error!(
        a.delete_work_group().work_group("primary").send().await,
        "InvalidRequestException",
        400
    );
    let msg = assert_aws_error!(
        a.delete_work_group().work_group("analytics").send().await,
        "InvalidRequestException",
        400
    );
    assert_eq!(msg, "WorkGroup analytics is not empty");
    a.delete_work_group()
        .work_group("analytics")
        .recursive_delete_option(true)
        .send()
        .await?;
    a.delete_work_group().work_group("adhoc").send().await?;
    assert_aws_error!(
        a.get_work_group().work_group("analytics").send().await,
        "InvalidRequestException",
        400
    );
    assert_aws_error!(
        a.get_query_execution().query_execution_id(&id).send().await,
        "InvalidRequestException",
        400
    );
    let left = a.list_work_groups().send().await?;
    let left: Vec<&str> = left.work_groups().iter().filter_map(|w| w.name()).collect();
    assert_eq!(left, ["primary"]);
    srv.stop().await
}
