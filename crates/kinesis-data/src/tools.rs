//! Everyday commands against a running server, through its public APIs (the thin client of
//! [`crate::client`]): `put` (stdin lines → Kinesis records), `tail` (follow a stream's
//! records), `query` (Athena SQL → a table on the terminal) and `ls` (buckets, or the
//! objects under an `s3://bucket/prefix`).

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail, ensure};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::client::{Client, Credentials, uri_encode};

/// Largest line `put` sends as one record (Kinesis' 1 MiB record limit).
const MAX_RECORD: usize = 1024 * 1024;
/// PutRecords' limits: 500 records, 5 MiB.
const MAX_BATCH_RECORDS: usize = 500;
const MAX_BATCH_BYTES: usize = 5 * 1024 * 1024;

/// Where and as whom the commands connect.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://host:port`.
    pub endpoint: String,
    /// Region.
    pub region: String,
}

impl Target {
    /// `--endpoint-url`, else `$AWS_ENDPOINT_URL`, else `http://localhost:4566`; the region
    /// from `$AWS_REGION` / `$AWS_DEFAULT_REGION`, else `us-east-1`.
    pub fn resolve(endpoint: Option<String>, region: Option<String>) -> Target {
        let env = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
        Target {
            endpoint: endpoint
                .or_else(|| env("AWS_ENDPOINT_URL"))
                .unwrap_or_else(|| "http://localhost:4566".to_owned()),
            region: region
                .or_else(|| env("AWS_REGION"))
                .or_else(|| env("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|| "us-east-1".to_owned()),
        }
    }

    /// A client with the environment's keys (else test/test).
    pub fn client(&self) -> anyhow::Result<Client> {
        Client::new(&self.endpoint, &self.region, Credentials::resolve(None, None, None)?)
    }
}

async fn kinesis(c: &Client, op: &str, body: Value) -> anyhow::Result<Value> {
    c.json("kinesis", &format!("Kinesis_20131202.{op}"), &body).await
}

/// `kinesis-data put STREAM`: every line of `input` becomes a record (partition key
/// `partition_key`, else the line number); returns how many were put.
pub async fn put(
    target: &Target,
    stream: &str,
    partition_key: Option<&str>,
    input: impl std::io::BufRead,
) -> anyhow::Result<u64> {
    let c = target.client()?;
    let tty = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut batch: Vec<Value> = Vec::new();
    let mut bytes = 0;
    let mut sent = 0u64;
    let mut n = 0u64;
    async fn flush(c: &Client, stream: &str, batch: &mut Vec<Value>) -> anyhow::Result<u64> {
        let mut pending = std::mem::take(batch);
        let mut delay = Duration::from_millis(50);
        let mut done = 0;
        while !pending.is_empty() {
            let out = kinesis(c, "PutRecords", json!({"StreamName": stream, "Records": pending})).await?;
            let results = out["Records"].as_array().cloned().unwrap_or_default();
            let mut retry = Vec::new();
            for (r, rec) in results.iter().zip(pending) {
                if r.get("ErrorCode").is_some_and(|e| !e.is_null()) {
                    retry.push(rec);
                } else {
                    done += 1;
                }
            }
            pending = retry;
            if !pending.is_empty() {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
        Ok(done)
    }
    for line in input.lines() {
        let line = line.context("reading stdin")?;
        n += 1;
        let data = format!("{line}\n");
        ensure!(
            data.len() <= MAX_RECORD,
            "line {n} is {} bytes; a record holds at most {MAX_RECORD}",
            data.len()
        );
        if batch.len() == MAX_BATCH_RECORDS || bytes + data.len() > MAX_BATCH_BYTES {
            sent += flush(&c, stream, &mut batch).await?;
            bytes = 0;
            if tty {
                eprint!(
                    "\r  {sent} records put ({:.0}/s)",
                    sent as f64 / started.elapsed().as_secs_f64().max(1e-3)
                );
            }
        }
        bytes += data.len();
        let key = partition_key.map_or_else(|| n.to_string(), str::to_owned);
        batch.push(json!({
            "Data": base64::engine::general_purpose::STANDARD.encode(data),
            "PartitionKey": key,
        }));
    }
    if !batch.is_empty() {
        sent += flush(&c, stream, &mut batch).await?;
    }
    if tty {
        eprintln!("\r  {sent} records put in {:.1} s", started.elapsed().as_secs_f64());
    }
    Ok(sent)
}

/// `kinesis-data tail STREAM`: prints every record's data (from `latest` or the trim
/// horizon) and, with `follow`, keeps polling; without it, stops at the end of the data.
pub async fn tail(
    target: &Target,
    stream: &str,
    latest: bool,
    follow: bool,
    mut out: impl std::io::Write,
) -> anyhow::Result<u64> {
    let c = target.client()?;
    let shards = kinesis(&c, "ListShards", json!({"StreamName": stream})).await?;
    let mut iterators: Vec<Option<String>> = Vec::new();
    for s in shards["Shards"].as_array().cloned().unwrap_or_default() {
        let id = s["ShardId"].as_str().unwrap_or_default();
        let it = kinesis(
            &c,
            "GetShardIterator",
            json!({"StreamName": stream, "ShardId": id, "ShardIteratorType": if latest { "LATEST" } else { "TRIM_HORIZON" }}),
        )
        .await?;
        iterators.push(it["ShardIterator"].as_str().map(str::to_owned));
    }
    let mut printed = 0;
    loop {
        let mut behind = false;
        for it in iterators.iter_mut() {
            let Some(current) = it.clone() else { continue };
            let r = kinesis(&c, "GetRecords", json!({"ShardIterator": current, "Limit": 1000})).await?;
            for rec in r["Records"].as_array().cloned().unwrap_or_default() {
                let data = base64::engine::general_purpose::STANDARD
                    .decode(rec["Data"].as_str().unwrap_or_default())
                    .unwrap_or_default();
                out.write_all(&data)?;
                if !data.ends_with(b"\n") {
                    out.write_all(b"\n")?;
                }
                printed += 1;
            }
            out.flush()?;
            if r["MillisBehindLatest"].as_u64().unwrap_or(0) > 0 {
                behind = true;
            }
            *it = r["NextShardIterator"].as_str().map(str::to_owned);
        }
        if iterators.iter().all(Option::is_none) {
            return Ok(printed);
        }
        if !behind {
            if !follow {
                return Ok(printed);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// `kinesis-data query SQL`: runs it with Athena and returns the rows (header first) and
/// the bytes scanned.
pub async fn query(
    target: &Target,
    sql: &str,
    database: Option<&str>,
    output: Option<&str>,
) -> anyhow::Result<(Vec<Vec<String>>, u64)> {
    let c = target.client()?;
    let mut start = json!({"QueryString": sql});
    if let Some(db) = database {
        start["QueryExecutionContext"] = json!({"Database": db});
    }
    if let Some(o) = output {
        start["ResultConfiguration"] = json!({"OutputLocation": o});
    }
    let id = c.json("athena", "AmazonAthena.StartQueryExecution", &start).await?["QueryExecutionId"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("StartQueryExecution answered without an id"))?;
    let exec = loop {
        let v = c
            .json(
                "athena",
                "AmazonAthena.GetQueryExecution",
                &json!({"QueryExecutionId": id}),
            )
            .await?;
        let state = v["QueryExecution"]["Status"]["State"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        match state.as_str() {
            "SUCCEEDED" => break v,
            "FAILED" | "CANCELLED" => bail!(
                "the query {state}: {}",
                v["QueryExecution"]["Status"]["StateChangeReason"]
                    .as_str()
                    .unwrap_or_default()
            ),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let scanned = exec["QueryExecution"]["Statistics"]["DataScannedInBytes"]
        .as_u64()
        .unwrap_or(0);
    let mut rows = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut req = json!({"QueryExecutionId": id, "MaxResults": 1000});
        if let Some(t) = &token {
            req["NextToken"] = json!(t);
        }
        let page = c.json("athena", "AmazonAthena.GetQueryResults", &req).await?;
        for r in page["ResultSet"]["Rows"].as_array().cloned().unwrap_or_default() {
            rows.push(
                r["Data"]
                    .as_array()
                    .map(|d| {
                        d.iter()
                            .map(|x| x["VarCharValue"].as_str().unwrap_or_default().to_owned())
                            .collect()
                    })
                    .unwrap_or_default(),
            );
        }
        match page["NextToken"].as_str() {
            Some(t) if token.as_deref() != Some(t) => token = Some(t.to_owned()),
            _ => break,
        }
    }
    Ok((rows, scanned))
}

/// Renders rows (header first) as a boxed table.
pub fn render_table(rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    if rows.is_empty() {
        return out;
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
    let rule = format!(
        "+{}+\n",
        widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("+")
    );
    let line = |r: &Vec<String>| {
        let cells: Vec<String> = (0..cols)
            .map(|c| format!("{:<w$}", r.get(c).map_or("", String::as_str), w = widths[c]))
            .collect();
        format!("| {} |\n", cells.join(" | "))
    };
    out.push_str(&rule);
    out.push_str(&line(&rows[0]));
    out.push_str(&rule);
    for r in &rows[1..] {
        out.push_str(&line(r));
    }
    out.push_str(&rule);
    out
}

/// `kinesis-data ls [s3://bucket/prefix]`: bucket names, or `size  key` lines.
pub async fn ls(target: &Target, url: Option<&str>, mut out: impl std::io::Write) -> anyhow::Result<()> {
    let c = target.client()?;
    let Some(url) = url else {
        let r = c.request("GET", "/", &[], &[], &[]).await?;
        let root = crate::client::parse_xml(&r.body).map_err(|e| anyhow!("ListBuckets: {e}"))?;
        if let Some(list) = root.find("Buckets") {
            for b in list.all("Bucket") {
                writeln!(out, "{}", b.text_of("Name").unwrap_or_default())?;
            }
        }
        return Ok(());
    };
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| anyhow!("{url:?} is not an s3://bucket/prefix URL"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    ensure!(!bucket.is_empty(), "{url:?} names no bucket");
    let path = format!("/{}", uri_encode(bucket, false));
    let mut token: Option<String> = None;
    loop {
        let mut q: Vec<(&str, &str)> = vec![("list-type", "2")];
        if !prefix.is_empty() {
            q.push(("prefix", prefix));
        }
        if let Some(t) = &token {
            q.push(("continuation-token", t));
        }
        let r = c.request("GET", &path, &q, &[], &[]).await?;
        let root = crate::client::parse_xml(&r.body).map_err(|e| anyhow!("ListObjectsV2: {e}"))?;
        for o in root.all("Contents") {
            writeln!(
                out,
                "{:>12}  {}  {}",
                o.text_of("Size").unwrap_or_default(),
                o.text_of("LastModified").unwrap_or_default(),
                o.text_of("Key").unwrap_or_default()
            )?;
        }
        match root.text_of("NextContinuationToken").filter(|t| !t.is_empty()) {
            Some(t) if root.text_of("IsTruncated") == Some("true") => token = Some(t.to_owned()),
            _ => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_boxed_and_aligned() {
        let rows = vec![
            vec!["kind".to_owned(), "n".to_owned()],
            vec!["view".to_owned(), "1200".to_owned()],
        ];
        assert_eq!(
            render_table(&rows),
            "+------+------+\n| kind | n    |\n+------+------+\n| view | 1200 |\n+------+------+\n"
        );
        assert_eq!(render_table(&[]), "");
    }
}
