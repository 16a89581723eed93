//! Seed part 6 end to end on the in-process server: a Kinesis stream → a Firehose delivery
//! stream (GZIP, prefix `events/`, small buffer) → a bucket, then Athena over it: a table
//! created with Athena DDL using partition projection over Firehose's `YYYY/MM/DD/HH/` layout,
//! and a plain non-partitioned one; GROUP BY / ORDER BY with exact counts, a partition-filtered
//! count that scans less, GetQueryResults paging and failing queries. The server's clock is a
//! manual one so the two batches land in two different hours; queries use the `primary`
//! workgroup's output location from the `[athena]` configuration.

use std::io::Read as _;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_athena::types::{QueryExecutionContext, QueryExecutionState};
use aws_sdk_firehose::types::{
    BufferingHints, CompressionFormat, DeliveryStreamType, ExtendedS3DestinationConfiguration,
    KinesisStreamSourceConfiguration,
};
use aws_sdk_kinesis::primitives::Blob;
use kd_storage::{Clock, ManualClock, SystemClock};
use kd_test_support::{ACCOUNT, TestServer, wait_until};

use crate::athena_wire::rows;
use crate::firehose_wire::{firehose_role, objects, wait_active};

type R = anyhow::Result<()>;

const HOUR_MS: i64 = 3_600_000;

/// `yyyy/MM/dd/HH` (UTC) of a Unix time in milliseconds: Firehose's key layout.
fn datehour(ms: i64) -> String {
    let (days, secs) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000) / 1000);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}/{m:02}/{d:02}/{:02}", secs / 3600)
}

/// Starts `sql` in database `db` without a ResultConfiguration (the workgroup's output
/// location applies) and waits for a terminal state; returns (id, state, reason).
async fn run(
    a: &aws_sdk_athena::Client,
    db: &str,
    sql: &str,
) -> anyhow::Result<(String, QueryExecutionState, Option<String>)> {
    let id = a
        .start_query_execution()
        .query_string(sql)
        .query_execution_context(QueryExecutionContext::builder().database(db).build())
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

/// Runs `sql`, requires success, returns every row (header first) and DataScannedInBytes.
async fn ok(a: &aws_sdk_athena::Client, sql: &str) -> anyhow::Result<(Vec<Vec<Option<String>>>, i64)> {
    let (id, state, reason) = run(a, "lake", sql).await?;
    anyhow::ensure!(state == QueryExecutionState::Succeeded, "{sql}: {state:?} {reason:?}");
    let q = a.get_query_execution().query_execution_id(&id).send().await?;
    let scanned = q
        .query_execution()
        .and_then(|q| q.statistics())
        .and_then(|s| s.data_scanned_in_bytes())
        .unwrap_or(-1);
    Ok((rows(a, &id, 1000).await?, scanned))
}

fn row(v: &[&str]) -> Vec<Option<String>> {
    v.iter().map(|s| Some((*s).to_owned())).collect()
}

/// Puts `n` events into the stream, then moves the manual clock on (Firehose's buffer
/// interval runs on it) until the bucket holds `total` lines under `events/`.
async fn deliver(srv: &TestServer, clock: &ManualClock, first: usize, n: usize, total: usize) -> R {
    let k = srv.kinesis();
    for i in first..first + n {
        let kind = ["click", "view", "buy"][i % 3];
        let line = format!(
            "{{\"id\":{i},\"customer\":\"u{}\",\"kind\":\"{kind}\",\"amount\":{}}}\n",
            i % 4,
            i % 10
        );
        k.put_record()
            .stream_name("events")
            .partition_key(format!("pk-{i}"))
            .data(Blob::new(line))
            .send()
            .await?;
    }
    let s3 = srv.s3();
    wait_until(Duration::from_secs(60), "every event delivered", || {
        clock.advance(100);
        let s3 = s3.clone();
        async move {
            let mut lines = 0;
            for (key, body) in objects(&s3, "lake").await {
                if !key.starts_with("events/") || !key.ends_with(".gz") {
                    return None;
                }
                let mut text = String::new();
                flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut text).ok()?;
                lines += text.lines().count();
            }
            (lines >= total).then_some(())
        }
    })
    .await
}

#[tokio::test]
async fn stream_to_firehose_to_athena() -> R {
    // Two batches, a minute apart across an hour boundary, both hours in the past (the
    // projection's range ends at the real NOW).
    let hour = SystemClock.now_ms().div_euclid(HOUR_MS) * HOUR_MS - 2 * HOUR_MS;
    let (first_ms, second_ms) = (hour + HOUR_MS - 60_000, hour + HOUR_MS + 30_000);
    let (h1, h2) = (datehour(first_ms), datehour(second_ms));
    let clock = Arc::new(ManualClock::new(first_ms));
    let srv = TestServer::start_with_clock(clock.clone(), |c| {
        c.firehose.start_at_trim_horizon = true;
        c.athena.output_location = Some("s3://results/athena/".to_owned());
    })
    .await?;
    let (s3, f, k) = (srv.s3(), srv.firehose(), srv.kinesis());
    for b in ["lake", "results"] {
        s3.create_bucket().bucket(b).send().await?;
    }
    k.create_stream().stream_name("events").shard_count(2).send().await?;
    let role = firehose_role(&srv, "fh", &["AmazonS3FullAccess", "AmazonKinesisFullAccess"]).await?;
    f.create_delivery_stream()
        .delivery_stream_name("events-to-lake")
        .delivery_stream_type(DeliveryStreamType::KinesisStreamAsSource)
        .kinesis_stream_source_configuration(
            KinesisStreamSourceConfiguration::builder()
                .kinesis_stream_arn(format!("arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/events"))
                .role_arn(&role)
                .build()?,
        )
        .extended_s3_destination_configuration(
            ExtendedS3DestinationConfiguration::builder()
                .role_arn(&role)
                .bucket_arn("arn:aws:s3:::lake")
                .prefix("events/")
                .compression_format(CompressionFormat::Gzip)
                .buffering_hints(BufferingHints::builder().size_in_mbs(1).interval_in_seconds(1).build())
                .build()?,
        )
        .send()
        .await?;
    wait_active(&f, "events-to-lake").await?;

    // 120 events in the first hour, 60 in the next.
    deliver(&srv, &clock, 0, 120, 120).await?;
    clock.set(second_ms);
    deliver(&srv, &clock, 120, 60, 180).await?;
    let keys: Vec<String> = objects(&s3, "lake").await.into_iter().map(|(k, _)| k).collect();
    for h in [&h1, &h2] {
        assert!(
            keys.iter().any(|k| k.starts_with(&format!("events/{h}/"))),
            "no object under events/{h}/: {keys:?}"
        );
    }

    let a = srv.athena();
    // The workgroup shows the configured output location.
    let wg = a.get_work_group().work_group("primary").send().await?;
    assert_eq!(
        wg.work_group()
            .and_then(|w| w.configuration())
            .and_then(|c| c.result_configuration())
            .and_then(|r| r.output_location()),
        Some("s3://results/athena/")
    );
    ok(&a, "CREATE DATABASE lake").await?;
    ok(
        &a,
        "CREATE EXTERNAL TABLE events (id bigint, customer string, kind string, amount int)
         PARTITIONED BY (datehour string)
         ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
         LOCATION 's3://lake/events/'
         TBLPROPERTIES (
           'projection.enabled'='true',
           'projection.datehour.type'='date',
           'projection.datehour.format'='yyyy/MM/dd/HH',
           'projection.datehour.range'='2020/01/01/00,NOW',
           'projection.datehour.interval'='1',
           'projection.datehour.interval.unit'='HOURS',
           'storage.location.template'='s3://lake/events/${datehour}/')",
    )
    .await?;
    ok(
        &a,
        "CREATE EXTERNAL TABLE events_flat (id bigint, customer string, kind string, amount int)
         ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
         LOCATION 's3://lake/events/'",
    )
    .await?;
    // Both tables are in Glue.
    let tables = srv.glue().get_tables().database_name("lake").send().await?;
    let names: Vec<&str> = tables.table_list().iter().map(|t| t.name()).collect();
    assert_eq!(names, ["events", "events_flat"]);

    // Exact counts, grouped and ordered.
    let (r, _) = ok(&a, "SELECT kind, count(*) AS n FROM events GROUP BY kind ORDER BY kind").await?;
    assert_eq!(
        r,
        vec![
            row(&["kind", "n"]),
            row(&["buy", "60"]),
            row(&["click", "60"]),
            row(&["view", "60"])
        ]
    );
    let (r, _) = ok(
        &a,
        "SELECT datehour, count(*) AS n, sum(amount) AS total FROM events GROUP BY datehour ORDER BY datehour",
    )
    .await?;
    assert_eq!(
        r,
        vec![
            row(&["datehour", "n", "total"]),
            row(&[h1.as_str(), "120", "540"]),
            row(&[h2.as_str(), "60", "270"]),
        ]
    );
    let (r, _) = ok(
        &a,
        "SELECT customer, count(*) AS n, max(id) AS last FROM events_flat GROUP BY customer ORDER BY n DESC, customer LIMIT 3",
    )
    .await?;
    assert_eq!(
        r,
        vec![
            row(&["customer", "n", "last"]),
            row(&["u0", "45", "176"]),
            row(&["u1", "45", "177"]),
            row(&["u2", "45", "178"]),
        ]
    );

    // A partition filter reads only that hour's objects.
    let (all, all_scanned) = ok(&a, "SELECT count(*) FROM events").await?;
    assert_eq!(all[1], row(&["180"]));
    let (one, one_scanned) = ok(&a, &format!("SELECT count(*) FROM events WHERE datehour = '{h2}'")).await?;
    assert_eq!(one[1], row(&["60"]));
    assert!(
        one_scanned > 0 && one_scanned < all_scanned,
        "filtered scanned {one_scanned} bytes, unfiltered {all_scanned}"
    );
    let (flat, flat_scanned) = ok(&a, "SELECT count(*) FROM events_flat").await?;
    assert_eq!(flat[1], row(&["180"]));
    assert_eq!(flat_scanned, all_scanned, "the plain table reads the same objects");

    // Paging: 12 customers×kinds rows over pages of 5; the header row only on page 1.
    let (id, state, _) = run(
        &a,
        "lake",
        "SELECT customer, kind, count(*) AS n FROM events GROUP BY customer, kind ORDER BY customer, kind",
    )
    .await?;
    assert_eq!(state, QueryExecutionState::Succeeded);
    let mut pages = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let p = a
            .get_query_results()
            .query_execution_id(&id)
            .max_results(5)
            .set_next_token(token.clone())
            .send()
            .await?;
        let page: Vec<Vec<Option<String>>> = p
            .result_set()
            .map(|s| s.rows())
            .unwrap_or_default()
            .iter()
            .map(|r| r.data().iter().map(|d| d.var_char_value().map(str::to_owned)).collect())
            .collect();
        pages.push(page);
        token = p.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [5, 5, 3]);
    assert_eq!(pages[0][0], row(&["customer", "kind", "n"]));
    assert_eq!(pages[0][1], row(&["u0", "buy", "15"]));
    assert!(pages[1..].iter().flatten().all(|r| r[0].as_deref() != Some("customer")));
    assert_eq!(pages[2][2], row(&["u3", "view", "15"]));
    // The result file is at the workgroup's location.
    s3.head_object()
        .bucket("results")
        .key(format!("athena/{id}.csv"))
        .send()
        .await?;

    // Failing queries carry Athena's error category.
    for (sql, prefix) in [
        ("SELECT count(*) FROM no_such_table", "TABLE_NOT_FOUND"),
        ("SELECT count(*) FROM events WHERE", "SYNTAX_ERROR"),
    ] {
        let (id, state, reason) = run(&a, "lake", sql).await?;
        assert_eq!(state, QueryExecutionState::Failed, "{sql}");
        let reason = reason.unwrap_or_default();
        assert!(reason.starts_with(prefix), "{sql}: {reason}");
        let q = a.get_query_execution().query_execution_id(&id).send().await?;
        let err = q
            .query_execution()
            .and_then(|q| q.status())
            .and_then(|s| s.athena_error())
            .ok_or_else(|| anyhow::anyhow!("{sql}: no AthenaError"))?;
        assert_eq!(err.error_category(), Some(2), "{sql}: a user error");
        assert_aws_error_results(&a, &id).await?;
    }
    srv.stop().await
}

/// GetQueryResults of a failed query is an InvalidRequestException.
async fn assert_aws_error_results(a: &aws_sdk_athena::Client, id: &str) -> R {
    crate::assert_aws_error!(
        a.get_query_results().query_execution_id(id).send().await,
        "InvalidRequestException",
        400
    );
    Ok(())
}

#[test]
fn datehour_is_firehose_layout() {
    assert_eq!(datehour(0), "1970/01/01/00");
    assert_eq!(datehour(1_709_636_400_000), "2024/03/05/11");
    assert_eq!(datehour(951_782_400_000 + 23 * HOUR_MS), "2000/02/29/23");
}
