//! `kinesis-data demo`: the seed's six-part system, started and driven as a user would.
//!
//! It builds the Rust example functions the pipeline names (one `cargo build --release`),
//! starts a server on a free port with a temporary data dir, applies the embedded pipeline
//! (`examples/kinesis-data.toml`) through the public APIs, then checks each part, narrating:
//! clickstream events into the stream land compressed in the lake (1) and in the archive
//! (2); uploads are copied by a function (3); a batch job copies them again and writes its
//! report (4); the REST API lists, writes and reads items (5); Athena answers SQL over the
//! lake (6). It prints how long each part took and exits 0 only when every part checked out.
//! `--keep` leaves the server running and prints AWS CLI commands to explore it.

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail, ensure};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::client::{Client, Credentials, uri_encode};
use crate::pipeline::{Applier, DEFAULT_PIPELINE, Pipeline};
use crate::{Config, Server};

/// Longest wait for one effect (a delivery, a copy, a job, a query).
const EFFECT_TIMEOUT: Duration = Duration::from_secs(60);

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct DemoOptions {
    /// Clickstream events put into the stream.
    pub events: usize,
    /// Objects uploaded for parts 3 and 4.
    pub uploads: usize,
    /// Keep the server running afterwards.
    pub keep: bool,
    /// Where the example binaries are (skip building them).
    pub examples_dir: Option<PathBuf>,
    /// Listen address (default 127.0.0.1:0).
    pub listen: Option<std::net::SocketAddr>,
    /// Print nothing but the summary.
    pub quiet: bool,
}

/// One part's outcome.
#[derive(Debug, Clone)]
pub struct PartReport {
    /// 1..=6.
    pub part: u8,
    /// What it is.
    pub title: &'static str,
    /// Checked out.
    pub passed: bool,
    /// What was verified, or why it failed.
    pub detail: String,
    /// Time taken.
    pub elapsed: Duration,
}

struct Demo {
    client: Client,
    account: String,
    region: String,
    quiet: bool,
    tty: bool,
}

impl Demo {
    fn say(&self, text: &str) {
        if !self.quiet {
            println!("{text}");
        }
    }

    fn bar(&self, what: &str, done: usize, total: usize) {
        if self.quiet || !self.tty {
            return;
        }
        let width = 30;
        let filled = (done * width).checked_div(total).unwrap_or(width);
        eprint!(
            "\r  {what} [{}{}] {done}/{total}",
            "#".repeat(filled),
            "-".repeat(width - filled.min(width))
        );
        if done >= total {
            eprintln!();
        }
        let _ = std::io::stderr().flush();
    }

    async fn kinesis(&self, op: &str, body: Value) -> anyhow::Result<Value> {
        self.client
            .json("kinesis", &format!("Kinesis_20131202.{op}"), &body)
            .await
    }

    async fn athena(&self, op: &str, body: Value) -> anyhow::Result<Value> {
        self.client.json("athena", &format!("AmazonAthena.{op}"), &body).await
    }

    /// Every object under `prefix` of `bucket`: (key, bytes).
    async fn objects(&self, bucket: &str, prefix: &str) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        let mut out = Vec::new();
        for key in self.client.list_keys(bucket, prefix).await? {
            let path = format!("/{}/{}", uri_encode(bucket, false), uri_encode(&key, true));
            let r = self.client.request("GET", &path, &[], &[], &[]).await?;
            out.push((key, r.body));
        }
        Ok(out)
    }

    /// Lines in the objects under `prefix` (gunzipped when they end in `.gz`).
    async fn lines(&self, bucket: &str, prefix: &str) -> anyhow::Result<(usize, usize, usize)> {
        let (mut lines, mut stored, mut raw) = (0, 0, 0);
        let objects = self.objects(bucket, prefix).await?;
        for (key, body) in &objects {
            stored += body.len();
            let text = if key.ends_with(".gz") {
                let mut s = String::new();
                flate2::read::GzDecoder::new(body.as_slice())
                    .read_to_string(&mut s)
                    .with_context(|| format!("{key} is not GZIP"))?;
                s
            } else {
                String::from_utf8_lossy(body).into_owned()
            };
            raw += text.len();
            lines += text.lines().count();
        }
        Ok((lines, stored, raw.max(objects.len())))
    }

    async fn until<T, F, Fut>(&self, what: &str, mut f: F) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
    {
        let deadline = Instant::now() + EFFECT_TIMEOUT;
        loop {
            if let Some(v) = f().await? {
                return Ok(v);
            }
            if Instant::now() > deadline {
                bail!("timed out after {EFFECT_TIMEOUT:?} waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // ------------------------------------------------------------------ parts

    async fn part1(&self, events: usize) -> anyhow::Result<String> {
        self.say("  putting clickstream events into stream `clicks` (PutRecords, 500 per call)");
        let pages = [
            "/",
            "/cart",
            "/checkout",
            "/search",
            "/product/1",
            "/product/2",
            "/help",
        ];
        let kinds = ["view", "click", "purchase"];
        let mut sent = 0;
        while sent < events {
            let n = (events - sent).min(500);
            let records: Vec<Value> = (sent..sent + n)
                .map(|i| {
                    let e = json!({
                        "visitor": format!("u{}", i % 97),
                        "page": pages[i % pages.len()],
                        "kind": kinds[(i / 7) % kinds.len()],
                        "ms": 1_764_000_000_000_i64 + i as i64,
                    });
                    json!({
                        "Data": base64::engine::general_purpose::STANDARD.encode(format!("{e}\n")),
                        "PartitionKey": format!("u{}", i % 97),
                    })
                })
                .collect();
            let out = self
                .kinesis("PutRecords", json!({"StreamName": "clicks", "Records": records}))
                .await?;
            ensure!(
                out["FailedRecordCount"].as_u64() == Some(0),
                "PutRecords failed {} records",
                out["FailedRecordCount"]
            );
            sent += n;
            self.bar("records", sent, events);
        }
        let (lines, stored, raw) = self
            .until("the events in bucket lake", || async {
                let l = self.lines("lake", "clicks/").await?;
                Ok((l.0 >= events).then_some(l))
            })
            .await?;
        ensure!(lines == events, "bucket lake holds {lines} events, {events} were sent");
        let keys = self.client.list_keys("lake", "clicks/").await?;
        let sample = keys.first().cloned().unwrap_or_default();
        self.say(&format!(
            "  Firehose `clicks-to-lake` delivered {lines} events in {} GZIP objects ({stored} bytes for {raw} bytes of JSON), e.g. s3://lake/{sample}",
            keys.len()
        ));
        Ok(format!(
            "{lines} events in s3://lake/clicks/ ({} GZIP objects)",
            keys.len()
        ))
    }

    async fn part2(&self, events: usize) -> anyhow::Result<String> {
        let (lines, stored, _) = self
            .until("the events in bucket archive", || async {
                let l = self.lines("archive", "raw/").await?;
                Ok((l.0 >= events).then_some(l))
            })
            .await?;
        ensure!(
            lines == events,
            "bucket archive holds {lines} events, {events} were sent"
        );
        self.say(&format!(
            "  the same stream fans out: Firehose `clicks-to-archive` delivered the {lines} events again, uncompressed ({stored} bytes) to s3://archive/raw/"
        ));
        Ok(format!("{lines} events also in s3://archive/raw/"))
    }

    async fn part3(&self, uploads: usize) -> anyhow::Result<String> {
        self.say(&format!(
            "  uploading {uploads} objects to s3://uploads/incoming/ (the bucket notifies function `copier`)"
        ));
        for i in 0..uploads {
            let body = format!("upload {i}\n");
            self.client
                .put_object(
                    "uploads",
                    &format!("incoming/file-{i:03}.txt"),
                    body.as_bytes(),
                    "text/plain",
                )
                .await?;
            self.bar("uploads", i + 1, uploads);
        }
        let copied = self
            .until("the copies in bucket processed", || async {
                let n = self.client.list_keys("processed", "incoming/").await?.len();
                Ok((n >= uploads).then_some(n))
            })
            .await?;
        let path = format!("/processed/{}", uri_encode("incoming/file-000.txt", true));
        let body = self.client.request("GET", &path, &[], &[], &[]).await?.body;
        ensure!(body == b"upload 0\n", "the copy's bytes differ");
        self.say(&format!(
            "  the Rust function (examples/functions/s3-copy) copied all {copied} to s3://processed/incoming/"
        ));
        Ok(format!("{copied} objects copied by the function"))
    }

    async fn part4(&self, pipeline: &Pipeline, uploads: usize) -> anyhow::Result<String> {
        self.say("  creating S3 Batch job `copy-uploads` over a manifest of s3://uploads/incoming/ (function `batch-copier`)");
        let jobs = Pipeline {
            batch_jobs: pipeline.batch_jobs.clone(),
            base_dir: pipeline.base_dir.clone(),
            ..Pipeline::default()
        };
        let mut applier = Applier::new(&self.client, &self.account, &self.region, false);
        applier.apply(&jobs).await?;
        let id = applier
            .changes
            .iter()
            .find_map(|c| {
                let s = c.to_string();
                s.split("(JobId ").nth(1).map(|r| r.trim_end_matches(')').to_owned())
            })
            .ok_or_else(|| anyhow!("the batch job was not created"))?;
        let (status, succeeded, failed) = self
            .until("the batch job to finish", || async {
                let r = self
                    .client
                    .request(
                        "GET",
                        &format!("/v20180820/jobs/{}", uri_encode(&id, false)),
                        &[],
                        &[("x-amz-account-id", &self.account)],
                        &[],
                    )
                    .await?;
                let root = crate::client::parse_xml(&r.body).map_err(|e| anyhow!("DescribeJob: {e}"))?;
                let job = root.find("Job").ok_or_else(|| anyhow!("DescribeJob without a Job"))?;
                let status = job.text_of("Status").unwrap_or_default().to_owned();
                let n = |name: &str| {
                    job.find("ProgressSummary")
                        .and_then(|p| p.text_of(name))
                        .and_then(|t| t.trim().parse::<usize>().ok())
                        .unwrap_or(0)
                };
                let (ok, bad, total) = (
                    n("NumberOfTasksSucceeded"),
                    n("NumberOfTasksFailed"),
                    n("TotalNumberOfTasks"),
                );
                if total > 0 {
                    self.bar("tasks", ok + bad, total);
                }
                Ok(matches!(status.as_str(), "Complete" | "Failed" | "Cancelled").then_some((status, ok, bad)))
            })
            .await?;
        ensure!(
            status == "Complete" && succeeded == uploads && failed == 0,
            "the job ended {status} with {succeeded} succeeded and {failed} failed of {uploads}"
        );
        let report_key = format!("reports/job-{id}/manifest.json");
        let report = self
            .client
            .request(
                "GET",
                &format!("/batch-out/{}", uri_encode(&report_key, true)),
                &[],
                &[],
                &[],
            )
            .await?;
        let report: Value = serde_json::from_slice(&report.body).context("the report's manifest.json")?;
        let results = report["Results"].as_array().map_or(0, Vec::len);
        let copies = self.client.list_keys("batch-out", "incoming/").await?.len();
        ensure!(copies == uploads, "bucket batch-out holds {copies} copies");
        self.say(&format!(
            "  job {id}: Complete, {succeeded} tasks succeeded; the report is s3://batch-out/{report_key} ({results} results file(s))"
        ));
        Ok(format!("job Complete: {succeeded}/{uploads} tasks, report written"))
    }

    async fn part5(&self) -> anyhow::Result<String> {
        let applier = Applier::new(&self.client, &self.account, &self.region, true);
        let api = applier
            .rest_api_id("items")
            .await?
            .ok_or_else(|| anyhow!("REST API `items` does not exist"))?;
        let base = format!("/restapis/{api}/prod/_user_request_");
        self.say(&format!(
            "  REST API `items` ({api}), stage prod: {}{base}/",
            self.client.endpoint()
        ));
        for (id, body) in [("apple", "red"), ("pear", "green")] {
            let r = self
                .client
                .plain("PUT", &format!("{base}/{id}"), body.as_bytes())
                .await?;
            ensure!(r.status == 201, "PUT /{id} answered {}", r.status);
            self.say(&format!(
                "  PUT /{id} → {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ));
        }
        let list = self.client.plain("GET", &format!("{base}/"), &[]).await?;
        ensure!(list.status == 200, "GET / answered {}", list.status);
        let listed: Value = serde_json::from_slice(&list.body).context("GET / answer")?;
        self.say(&format!("  GET / → 200 {listed}"));
        let one = self.client.plain("GET", &format!("{base}/apple"), &[]).await?;
        ensure!(
            one.status == 200 && one.body == b"red",
            "GET /apple answered {}",
            one.status
        );
        self.say("  GET /apple → 200 red");
        let missing = self.client.plain("GET", &format!("{base}/plum"), &[]).await?;
        ensure!(missing.status == 404, "GET /plum answered {}", missing.status);
        self.say("  GET /plum → 404");
        Ok("PUT, GET / and GET /{id} through API Gateway + function + bucket".into())
    }

    async fn query(&self, sql: &str) -> anyhow::Result<(Vec<Vec<String>>, u64)> {
        let start = self
            .athena(
                "StartQueryExecution",
                json!({
                    "QueryString": sql,
                    "QueryExecutionContext": {"Database": "lake"},
                    "ResultConfiguration": {"OutputLocation": "s3://athena-results/demo/"},
                }),
            )
            .await?;
        let id = start["QueryExecutionId"]
            .as_str()
            .ok_or_else(|| anyhow!("StartQueryExecution without an id"))?
            .to_owned();
        let exec = self
            .until("the query", || async {
                let v = self
                    .athena("GetQueryExecution", json!({"QueryExecutionId": id}))
                    .await?;
                let state = v["QueryExecution"]["Status"]["State"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                Ok(matches!(state.as_str(), "SUCCEEDED" | "FAILED" | "CANCELLED").then_some(v))
            })
            .await?;
        let q = &exec["QueryExecution"];
        ensure!(
            q["Status"]["State"] == "SUCCEEDED",
            "the query {}: {}",
            q["Status"]["State"],
            q["Status"]["StateChangeReason"]
        );
        let scanned = q["Statistics"]["DataScannedInBytes"].as_u64().unwrap_or(0);
        let results = self.athena("GetQueryResults", json!({"QueryExecutionId": id})).await?;
        let rows = results["ResultSet"]["Rows"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|r| {
                        r["Data"]
                            .as_array()
                            .map(|d| {
                                d.iter()
                                    .map(|c| c["VarCharValue"].as_str().unwrap_or_default().to_owned())
                                    .collect()
                            })
                            .unwrap_or_default()
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok((rows, scanned))
    }

    fn table(&self, rows: &[Vec<String>]) {
        if self.quiet || rows.is_empty() {
            return;
        }
        let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..cols)
            .map(|c| {
                rows.iter()
                    .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |r: &Vec<String>| {
            let cells: Vec<String> = (0..cols)
                .map(|c| format!("{:<w$}", r.get(c).map_or("", String::as_str), w = widths[c]))
                .collect();
            format!("    | {} |", cells.join(" | "))
        };
        let rule = format!(
            "    +{}+",
            widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("+")
        );
        println!("{rule}");
        println!("{}", line(&rows[0]));
        println!("{rule}");
        for r in &rows[1..] {
            println!("{}", line(r));
        }
        println!("{rule}");
    }

    async fn part6(&self, events: usize) -> anyhow::Result<String> {
        let sql = "SELECT kind, count(*) AS events, count(DISTINCT visitor) AS visitors FROM clicks GROUP BY kind ORDER BY events DESC";
        self.say(&format!(
            "  Athena (Glue table lake.clicks over s3://lake/clicks/): {sql}"
        ));
        let (rows, scanned) = self.query(sql).await?;
        self.table(&rows);
        let total: usize = rows
            .iter()
            .skip(1)
            .filter_map(|r| r.get(1).and_then(|c| c.parse::<usize>().ok()))
            .sum();
        ensure!(total == events, "the query counted {total} events, {events} were sent");
        let sql2 = "SELECT page, count(*) AS views FROM clicks WHERE kind = 'view' GROUP BY page ORDER BY views DESC, page LIMIT 3";
        self.say(&format!("  {sql2}"));
        let (top, _) = self.query(sql2).await?;
        self.table(&top);
        ensure!(
            top.len() == 4,
            "the top-3 query returned {} rows",
            top.len().saturating_sub(1)
        );
        self.say(&format!(
            "  results are CSV files in s3://athena-results/demo/ ({scanned} bytes scanned by the first query)"
        ));
        Ok(format!("SQL over the lake counted all {total} events"))
    }
}

/// Runs the demo; returns each part's report.
pub async fn run(opts: DemoOptions) -> anyhow::Result<Vec<PartReport>> {
    let pipeline =
        crate::pipeline::parse("kinesis-data.toml (embedded)", DEFAULT_PIPELINE).map_err(|e| anyhow!("{e}"))?;
    let examples = match &opts.examples_dir {
        Some(d) => d.clone(),
        None => build_examples(&pipeline, opts.quiet)?,
    };
    let data = std::env::temp_dir().join(format!("kinesis-data-demo-{}", uuid::Uuid::new_v4().simple()));
    let config = Config {
        data_dir: data.clone(),
        listen: opts
            .listen
            .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        ..Config::default()
    };
    let (account, region) = (config.account_id.clone(), config.region.clone());
    let creds = Credentials {
        access_key_id: config.access_key_id.clone(),
        secret_access_key: config.secret_access_key.clone(),
        session_token: None,
    };
    let started = Instant::now();
    let server = Server::start(config).await?;
    let client = Client::new(&server.endpoint(), &region, creds)?;
    let demo = Demo {
        client,
        account: account.clone(),
        region: region.clone(),
        quiet: opts.quiet,
        tty: std::io::stderr().is_terminal(),
    };
    demo.say(&format!(
        "kinesis-data demo: server on {} (data in {})",
        server.endpoint(),
        data.display()
    ));
    demo.say("applying the six-part pipeline (examples/kinesis-data.toml) through the public APIs");
    let setup = Pipeline {
        batch_jobs: Vec::new(),
        ..pipeline.clone()
    };
    let mut applier = Applier::new(&demo.client, &account, &region, false).with_examples_dir(Some(examples));
    applier.apply(&setup).await.context("applying the pipeline")?;
    demo.say(&format!(
        "  {} resources created in {:.1} s",
        applier.changes.len(),
        started.elapsed().as_secs_f64()
    ));
    let events = opts.events.max(1);
    let uploads = opts.uploads.max(1);
    let mut reports = Vec::new();
    let titles: [&'static str; 6] = [
        "stream → Firehose → S3 (GZIP)",
        "fan-out: one stream, two delivery streams",
        "S3 → Lambda → S3",
        "S3 Batch Operations + Lambda",
        "API Gateway → Lambda → S3",
        "Glue catalog + Athena SQL",
    ];
    for (i, title) in titles.iter().enumerate() {
        let part = i as u8 + 1;
        demo.say(&format!("\npart {part}: {title}"));
        let t = Instant::now();
        let result = match part {
            1 => demo.part1(events).await,
            2 => demo.part2(events).await,
            3 => demo.part3(uploads).await,
            4 => demo.part4(&pipeline, uploads).await,
            5 => demo.part5().await,
            _ => demo.part6(events).await,
        };
        let (passed, detail) = match result {
            Ok(d) => (true, d),
            Err(e) => (false, format!("{e:#}")),
        };
        if !passed {
            demo.say(&format!("  FAILED: {detail}"));
        }
        reports.push(PartReport {
            part,
            title,
            passed,
            detail,
            elapsed: t.elapsed(),
        });
    }
    println!("\nsummary ({:.1} s in all)", started.elapsed().as_secs_f64());
    for r in &reports {
        println!(
            "  part {} {:<44} {:>6.1} s  {}  {}",
            r.part,
            r.title,
            r.elapsed.as_secs_f64(),
            if r.passed { "ok    " } else { "FAILED" },
            r.detail
        );
    }
    if opts.keep {
        let ep = server.endpoint();
        println!(
            "\nthe server keeps running on {ep} (Ctrl-C stops it and deletes {}):",
            data.display()
        );
        println!(
            "  export AWS_ENDPOINT_URL={ep} AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1"
        );
        println!("  aws kinesis list-streams");
        println!("  aws s3 ls --recursive s3://lake/ | head");
        println!("  aws lambda list-functions --query 'Functions[].FunctionName'");
        println!("  aws s3control list-jobs --account-id {account}");
        println!("  aws apigateway get-rest-apis");
        println!("  aws athena start-query-execution --query-execution-context Database=lake \\");
        println!(
            "      --result-configuration OutputLocation=s3://athena-results/cli/ --query-string 'SELECT count(*) FROM clicks'"
        );
        let _ = tokio::signal::ctrl_c().await;
    }
    server.shutdown().await?;
    let _ = std::fs::remove_dir_all(&data);
    Ok(reports)
}

/// Builds (release) every example function the pipeline names, in one cargo invocation;
/// returns the directory holding them.
fn build_examples(p: &Pipeline, quiet: bool) -> anyhow::Result<PathBuf> {
    let ws = crate::pipeline::apply::workspace_root()
        .ok_or_else(|| anyhow!("the workspace this binary was built from is gone: run the demo from a clone with `cargo run --release -- demo`"))?;
    let mut names: Vec<&str> = p.functions.iter().filter_map(|f| f.code.example.as_deref()).collect();
    names.sort_unstable();
    names.dedup();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| ws.join("target"));
    let dir = target.join("release");
    if !quiet {
        eprintln!(
            "building the example functions: {} (cargo build --release)",
            names.join(", ")
        );
    }
    let mut cmd = std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.args(["build", "--release", "--quiet"]).current_dir(&ws);
    for n in &names {
        cmd.args(["-p", n]);
    }
    let status = cmd
        .status()
        .context("cannot run cargo to build the example functions")?;
    ensure!(status.success(), "building the example functions failed ({status})");
    for n in &names {
        ensure!(dir.join(n).is_file(), "{} was not built", dir.join(n).display());
    }
    Ok(dir)
}
