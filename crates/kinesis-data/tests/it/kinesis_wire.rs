//! Kinesis through aws-sdk-kinesis against the in-process server: the happy paths and the
//! semantics (routing, sequence numbers, iterators, resharding, retention, tags, regions).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::primitives::{Blob, DateTime};
use aws_sdk_kinesis::types::{
    PutRecordsRequestEntry, ScalingType, ShardFilter, ShardFilterType, ShardIteratorType, StreamMode,
    StreamModeDetails, StreamStatus,
};
use kd_storage::ManualClock;
use kd_test_support::{TestServer, kinesis_client, wait_until};

use crate::common::{blob, payload, read_all, trim_horizon};

type R = anyhow::Result<()>;

async fn create(c: &aws_sdk_kinesis::Client, name: &str, shards: i32) -> R {
    c.create_stream().stream_name(name).shard_count(shards).send().await?;
    Ok(())
}

#[tokio::test]
async fn create_describe_list_delete() -> R {
    let s = TestServer::start_with(|c| c.kinesis.create_delay_ms = 150).await?;
    let c = s.kinesis();
    create(&c, "alpha", 3).await?;
    let d = c.describe_stream().stream_name("alpha").send().await?;
    let desc = d
        .stream_description()
        .ok_or_else(|| anyhow::anyhow!("no description"))?;
    assert_eq!(desc.stream_status(), &StreamStatus::Creating);
    assert_eq!(desc.stream_arn(), "arn:aws:kinesis:us-east-1:000000000000:stream/alpha");
    assert_eq!(desc.shards().len(), 3);
    assert_eq!(desc.shards()[0].shard_id(), "shardId-000000000000");
    assert_eq!(
        desc.shards()[0].hash_key_range().map(|h| h.starting_hash_key()),
        Some("0")
    );
    assert_eq!(
        desc.shards()[2].hash_key_range().map(|h| h.ending_hash_key()),
        Some("340282366920938463463374607431768211455")
    );
    assert_eq!(desc.retention_period_hours(), 24);
    wait_until(Duration::from_secs(5), "stream ACTIVE", || async {
        let d = c.describe_stream_summary().stream_name("alpha").send().await.ok()?;
        (d.stream_description_summary()?.stream_status() == &StreamStatus::Active).then_some(())
    })
    .await?;
    let sum = c.describe_stream_summary().stream_name("alpha").send().await?;
    assert_eq!(sum.stream_description_summary().map(|d| d.open_shard_count()), Some(3));

    create(&c, "beta", 1).await?;
    wait_until(Duration::from_secs(5), "beta ACTIVE", || async {
        let d = c.describe_stream_summary().stream_name("beta").send().await.ok()?;
        (d.stream_description_summary()?.stream_status() == &StreamStatus::Active).then_some(())
    })
    .await?;
    c.create_stream()
        .stream_name("gamma")
        .stream_mode_details(StreamModeDetails::builder().stream_mode(StreamMode::OnDemand).build()?)
        .send()
        .await?;
    let l = c.list_streams().send().await?;
    assert_eq!(l.stream_names(), ["alpha", "beta", "gamma"]);
    assert!(!l.has_more_streams());
    let page = c.list_streams().limit(2).send().await?;
    assert_eq!(page.stream_names(), ["alpha", "beta"]);
    assert!(page.has_more_streams());
    let rest = c
        .list_streams()
        .next_token(page.next_token().unwrap_or_default())
        .send()
        .await?;
    assert_eq!(rest.stream_names(), ["gamma"]);
    let g = c.describe_stream().stream_name("gamma").send().await?;
    assert_eq!(g.stream_description().map(|d| d.shards().len()), Some(4));
    assert_eq!(
        g.stream_description()
            .and_then(|d| d.stream_mode_details())
            .map(|m| m.stream_mode().clone()),
        Some(StreamMode::OnDemand)
    );

    c.delete_stream().stream_name("beta").send().await?;
    let l = c.list_streams().send().await?;
    assert_eq!(l.stream_names(), ["alpha", "gamma"]);
    s.stop().await
}

#[tokio::test]
async fn put_and_get_route_by_md5_with_increasing_sequence_numbers() -> R {
    let s = TestServer::start().await?;
    let c = s.kinesis();
    create(&c, "orders", 4).await?;
    let mut by_shard: BTreeMap<String, Vec<(String, Vec<u8>, String)>> = BTreeMap::new();
    for i in 0..60u64 {
        let key = format!("customer-{}", i % 13);
        let data = payload(i, 10 + i as usize);
        let r = c
            .put_record()
            .stream_name("orders")
            .partition_key(&key)
            .data(Blob::new(data.clone()))
            .send()
            .await?;
        // Shard follows the MD5 of the key.
        let h = u128::from_be_bytes(md5_of(&key));
        let width = u128::MAX / 4 + 1;
        let expect = format!("shardId-{:012}", h / width);
        assert_eq!(r.shard_id(), expect, "key {key}");
        by_shard
            .entry(r.shard_id().to_owned())
            .or_default()
            .push((r.sequence_number().to_owned(), data, key));
    }
    let mut all_seqs = HashSet::new();
    for (shard, expected) in &by_shard {
        let got = read_all(&c, "orders", shard).await?;
        assert_eq!(&got, expected, "shard {shard} reads back in order");
        for w in got.windows(2) {
            assert!(w[0].0.parse::<u128>()? < w[1].0.parse::<u128>()?, "strictly increasing");
        }
        for (seq, _, _) in got {
            assert!(all_seqs.insert(seq), "unique in the stream");
        }
    }
    // ExplicitHashKey overrides the partition key's hash.
    let r = c
        .put_record()
        .stream_name("orders")
        .partition_key("anything")
        .explicit_hash_key("340282366920938463463374607431768211455")
        .data(blob(1, 3))
        .send()
        .await?;
    assert_eq!(r.shard_id(), "shardId-000000000003");
    s.stop().await
}

fn md5_of(s: &str) -> [u8; 16] {
    use md5::{Digest, Md5};
    Md5::digest(s.as_bytes()).into()
}

#[tokio::test]
async fn put_records_batch_and_limits_paging() -> R {
    let s = TestServer::start().await?;
    let c = s.kinesis();
    create(&c, "batch", 2).await?;
    let mut req = c.put_records().stream_name("batch");
    for i in 0..500u64 {
        req = req.records(
            PutRecordsRequestEntry::builder()
                .partition_key(format!("k{i}"))
                .data(blob(i, 100))
                .build()?,
        );
    }
    let out = req.send().await?;
    assert_eq!(out.failed_record_count(), Some(0));
    assert_eq!(out.records().len(), 500);
    let mut total = 0;
    for shard in ["shardId-000000000000", "shardId-000000000001"] {
        let it = trim_horizon(&c, "batch", shard).await?;
        // Limit pages the read.
        let first = c.get_records().shard_iterator(&it).limit(7).send().await?;
        assert_eq!(first.records().len(), 7);
        let rest = c
            .get_records()
            .shard_iterator(first.next_shard_iterator().unwrap_or_default())
            .send()
            .await?;
        assert_eq!(rest.millis_behind_latest(), Some(0));
        total += 7 + rest.records().len();
        let again = c
            .get_records()
            .shard_iterator(rest.next_shard_iterator().unwrap_or_default())
            .send()
            .await?;
        assert!(again.records().is_empty());
        assert!(
            again.next_shard_iterator().is_some(),
            "an open shard always has a next iterator"
        );
    }
    assert_eq!(total, 500);
    s.stop().await
}

#[tokio::test]
async fn iterator_types() -> R {
    let s = TestServer::start().await?;
    let c = s.kinesis();
    create(&c, "its", 1).await?;
    let shard = "shardId-000000000000";
    let mut seqs = Vec::new();
    for i in 0..5u64 {
        let r = c
            .put_record()
            .stream_name("its")
            .partition_key("p")
            .data(blob(i, 8))
            .send()
            .await?;
        seqs.push(r.sequence_number().to_owned());
    }
    let it = |t: ShardIteratorType, seq: Option<&str>| {
        let c = c.clone();
        let seq = seq.map(str::to_owned);
        async move {
            let mut b = c
                .get_shard_iterator()
                .stream_name("its")
                .shard_id(shard)
                .shard_iterator_type(t);
            if let Some(s) = seq {
                b = b.starting_sequence_number(s);
            }
            let it = b.send().await?.shard_iterator.unwrap_or_default();
            let r = c.get_records().shard_iterator(it).send().await?;
            anyhow::Ok((
                r.records()
                    .iter()
                    .map(|r| r.sequence_number().to_owned())
                    .collect::<Vec<_>>(),
                r,
            ))
        }
    };
    assert_eq!(it(ShardIteratorType::TrimHorizon, None).await?.0, seqs);
    assert_eq!(
        it(ShardIteratorType::AtSequenceNumber, Some(&seqs[2])).await?.0,
        seqs[2..]
    );
    assert_eq!(
        it(ShardIteratorType::AfterSequenceNumber, Some(&seqs[2])).await?.0,
        seqs[3..]
    );
    // LATEST: only records written after the iterator was made.
    let latest = c
        .get_shard_iterator()
        .stream_name("its")
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::Latest)
        .send()
        .await?
        .shard_iterator
        .unwrap_or_default();
    let after = c
        .put_record()
        .stream_name("its")
        .partition_key("p")
        .data(blob(99, 8))
        .send()
        .await?;
    let r = c.get_records().shard_iterator(latest).send().await?;
    assert_eq!(
        r.records().iter().map(|r| r.sequence_number()).collect::<Vec<_>>(),
        [after.sequence_number()]
    );
    // AT_TIMESTAMP: from the first record at or after the time.
    let arrival = r.records()[0]
        .approximate_arrival_timestamp()
        .copied()
        .ok_or_else(|| anyhow::anyhow!("no timestamp"))?;
    let at = c
        .get_shard_iterator()
        .stream_name("its")
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::AtTimestamp)
        .timestamp(arrival)
        .send()
        .await?;
    let r = c
        .get_records()
        .shard_iterator(at.shard_iterator().unwrap_or_default())
        .send()
        .await?;
    assert_eq!(
        r.records().last().map(|r| r.sequence_number()),
        Some(after.sequence_number())
    );
    assert!(
        r.records()
            .iter()
            .all(|x| x.approximate_arrival_timestamp().copied() >= Some(arrival))
    );
    let early = c
        .get_shard_iterator()
        .stream_name("its")
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::AtTimestamp)
        .timestamp(DateTime::from_secs(1_000_000))
        .send()
        .await?;
    let r = c
        .get_records()
        .shard_iterator(early.shard_iterator().unwrap_or_default())
        .send()
        .await?;
    assert_eq!(r.records().len(), 6, "a time before the first record reads everything");
    s.stop().await
}

#[tokio::test]
async fn split_merge_and_children() -> R {
    let s = TestServer::start().await?;
    let c = s.kinesis();
    create(&c, "rs", 1).await?;
    let before = c
        .put_record()
        .stream_name("rs")
        .partition_key("x")
        .data(blob(1, 4))
        .send()
        .await?;
    c.split_shard()
        .stream_name("rs")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key("170141183460469231731687303715884105728")
        .send()
        .await?;
    let d = c.describe_stream().stream_name("rs").send().await?;
    let shards = d.stream_description().map(|d| d.shards().to_vec()).unwrap_or_default();
    assert_eq!(shards.len(), 3);
    assert!(
        shards[0]
            .sequence_number_range()
            .and_then(|r| r.ending_sequence_number())
            .is_some(),
        "parent closed"
    );
    assert_eq!(shards[1].parent_shard_id(), Some("shardId-000000000000"));
    assert_eq!(
        shards[1].hash_key_range().map(|h| h.ending_hash_key()),
        Some("170141183460469231731687303715884105727")
    );
    assert_eq!(
        shards[2].hash_key_range().map(|h| h.starting_hash_key()),
        Some("170141183460469231731687303715884105728")
    );
    // Closed parent: read to its end, then ChildShards and no next iterator.
    let it = trim_horizon(&c, "rs", "shardId-000000000000").await?;
    let r = c.get_records().shard_iterator(&it).send().await?;
    assert_eq!(r.records().len(), 1);
    assert_eq!(r.records()[0].sequence_number(), before.sequence_number());
    assert!(r.next_shard_iterator().is_none());
    let kids: Vec<&str> = r.child_shards().iter().map(|k| k.shard_id()).collect();
    assert_eq!(kids, ["shardId-000000000001", "shardId-000000000002"]);
    // New writes go to the children; sequence numbers keep growing.
    let after = c
        .put_record()
        .stream_name("rs")
        .partition_key("x")
        .data(blob(2, 4))
        .send()
        .await?;
    assert_ne!(after.shard_id(), "shardId-000000000000");
    assert!(after.sequence_number().parse::<u128>()? > before.sequence_number().parse::<u128>()?);
    // Merge the children back.
    c.merge_shards()
        .stream_name("rs")
        .shard_to_merge("shardId-000000000001")
        .adjacent_shard_to_merge("shardId-000000000002")
        .send()
        .await?;
    let open = c
        .list_shards()
        .stream_name("rs")
        .shard_filter(ShardFilter::builder().r#type(ShardFilterType::AtLatest).build()?)
        .send()
        .await?;
    assert_eq!(open.shards().len(), 1);
    assert_eq!(open.shards()[0].shard_id(), "shardId-000000000003");
    assert_eq!(open.shards()[0].parent_shard_id(), Some("shardId-000000000001"));
    assert_eq!(
        open.shards()[0].adjacent_parent_shard_id(),
        Some("shardId-000000000002")
    );
    s.stop().await
}

#[tokio::test]
async fn update_shard_count_keeps_lineage_exact() -> R {
    let s = TestServer::start().await?;
    let c = s.kinesis();
    create(&c, "scale", 3).await?;
    let out = c
        .update_shard_count()
        .stream_name("scale")
        .target_shard_count(5)
        .scaling_type(ScalingType::UniformScaling)
        .send()
        .await?;
    assert_eq!(
        (out.current_shard_count(), out.target_shard_count()),
        (Some(3), Some(5))
    );
    let all = c.list_shards().stream_name("scale").send().await?;
    let mut open: Vec<_> = all
        .shards()
        .iter()
        .filter(|s| {
            s.sequence_number_range()
                .and_then(|r| r.ending_sequence_number())
                .is_none()
        })
        .collect();
    open.sort_by_key(|s| {
        s.hash_key_range()
            .map(|h| h.starting_hash_key().parse::<u128>().unwrap_or(0))
    });
    assert_eq!(open.len(), 5);
    let width = u128::MAX / 5;
    for (i, sh) in open.iter().enumerate() {
        let start: u128 = sh
            .hash_key_range()
            .map(|h| h.starting_hash_key())
            .unwrap_or_default()
            .parse()?;
        assert_eq!(start, i as u128 * width, "uniform starts");
        let parents = [sh.parent_shard_id(), sh.adjacent_parent_shard_id()]
            .into_iter()
            .flatten()
            .count();
        assert!((1..=2).contains(&parents));
    }
    // Every key still routes to an open shard and reads back.
    for i in 0..20u64 {
        c.put_record()
            .stream_name("scale")
            .partition_key(format!("k{i}"))
            .data(blob(i, 4))
            .send()
            .await?;
    }
    let mut n = 0;
    for sh in &open {
        n += read_all(&c, "scale", sh.shard_id()).await?.len();
    }
    assert_eq!(n, 20);
    // Down again.
    c.update_shard_count()
        .stream_name("scale")
        .target_shard_count(3)
        .scaling_type(ScalingType::UniformScaling)
        .send()
        .await?;
    let open = c
        .list_shards()
        .stream_name("scale")
        .shard_filter(ShardFilter::builder().r#type(ShardFilterType::AtLatest).build()?)
        .send()
        .await?;
    assert_eq!(open.shards().len(), 3);
    s.stop().await
}

#[tokio::test]
async fn list_shards_pages_with_tokens() -> R {
    let s = TestServer::start().await?;
    let c = s.kinesis();
    create(&c, "many", 7).await?;
    let first = c.list_shards().stream_name("many").max_results(3).send().await?;
    assert_eq!(first.shards().len(), 3);
    let second = c
        .list_shards()
        .next_token(first.next_token().unwrap_or_default())
        .max_results(3)
        .send()
        .await?;
    assert_eq!(second.shards()[0].shard_id(), "shardId-000000000003");
    let third = c
        .list_shards()
        .next_token(second.next_token().unwrap_or_default())
        .send()
        .await?;
    assert_eq!(third.shards().len(), 1);
    assert!(third.next_token().is_none());
    let after = c
        .list_shards()
        .stream_name("many")
        .exclusive_start_shard_id("shardId-000000000005")
        .send()
        .await?;
    assert_eq!(after.shards().len(), 1);
    s.stop().await
}

#[tokio::test]
async fn tags_retention_and_arns() -> R {
    let s = TestServer::start().await?;
    let c = s.kinesis();
    create(&c, "tagged", 1).await?;
    let arn = "arn:aws:kinesis:us-east-1:000000000000:stream/tagged";
    c.add_tags_to_stream()
        .stream_arn(arn)
        .tags("team", "data")
        .tags("env", "dev")
        .send()
        .await?;
    let t = c.list_tags_for_stream().stream_name("tagged").send().await?;
    let tags: Vec<(&str, Option<&str>)> = t.tags().iter().map(|t| (t.key(), t.value())).collect();
    assert_eq!(tags, [("env", Some("dev")), ("team", Some("data"))]);
    c.remove_tags_from_stream()
        .stream_name("tagged")
        .tag_keys("env")
        .send()
        .await?;
    assert_eq!(
        c.list_tags_for_stream()
            .stream_name("tagged")
            .send()
            .await?
            .tags()
            .len(),
        1
    );
    c.increase_stream_retention_period()
        .stream_arn(arn)
        .retention_period_hours(168)
        .send()
        .await?;
    c.decrease_stream_retention_period()
        .stream_name("tagged")
        .retention_period_hours(48)
        .send()
        .await?;
    let d = c.describe_stream_summary().stream_arn(arn).send().await?;
    assert_eq!(
        d.stream_description_summary().map(|d| d.retention_period_hours()),
        Some(48)
    );
    let p = c
        .put_record()
        .stream_arn(arn)
        .partition_key("k")
        .data(blob(1, 1))
        .send()
        .await?;
    assert_eq!(p.shard_id(), "shardId-000000000000");
    s.stop().await
}

#[tokio::test]
async fn streams_live_per_region_and_account() -> R {
    let s = TestServer::start_with(|c| {
        c.extra_access_keys.push(kinesis_data::config::KeyConfig {
            access_key_id: "OTHERKEY".into(),
            secret_access_key: "othersecret".into(),
            account_id: "111111111111".into(),
        })
    })
    .await?;
    let east = s.kinesis();
    let west = kinesis_client(&s.endpoint(), "eu-west-1", "test", "test");
    let other = kinesis_client(&s.endpoint(), "us-east-1", "OTHERKEY", "othersecret");
    create(&east, "shared-name", 1).await?;
    create(&west, "shared-name", 2).await?;
    create(&other, "shared-name", 3).await?;
    let d = west.describe_stream().stream_name("shared-name").send().await?;
    let desc = d.stream_description().ok_or_else(|| anyhow::anyhow!("none"))?;
    assert_eq!(
        desc.stream_arn(),
        "arn:aws:kinesis:eu-west-1:000000000000:stream/shared-name"
    );
    assert_eq!(desc.shards().len(), 2);
    let d = other.describe_stream().stream_name("shared-name").send().await?;
    assert_eq!(
        d.stream_description().map(|d| d.stream_arn()),
        Some("arn:aws:kinesis:us-east-1:111111111111:stream/shared-name")
    );
    west.delete_stream().stream_name("shared-name").send().await?;
    assert_eq!(east.list_streams().send().await?.stream_names(), ["shared-name"]);
    assert!(west.list_streams().send().await?.stream_names().is_empty());
    s.stop().await
}

#[tokio::test]
async fn data_and_metadata_survive_restart() -> R {
    let mut s = TestServer::start().await?;
    let c = s.kinesis();
    create(&c, "durable", 2).await?;
    let mut acked = Vec::new();
    for i in 0..50u64 {
        let r = c
            .put_record()
            .stream_name("durable")
            .partition_key(format!("k{i}"))
            .data(blob(i, 64))
            .send()
            .await?;
        acked.push((r.shard_id().to_owned(), r.sequence_number().to_owned(), payload(i, 64)));
    }
    c.split_shard()
        .stream_name("durable")
        .shard_to_split("shardId-000000000001")
        .new_starting_hash_key("255211775190703847597530955573826158592")
        .send()
        .await?;
    c.add_tags_to_stream()
        .stream_name("durable")
        .tags("k", "v")
        .send()
        .await?;
    c.increase_stream_retention_period()
        .stream_name("durable")
        .retention_period_hours(72)
        .send()
        .await?;
    s.restart().await?;
    let c = s.kinesis();
    let d = c.describe_stream().stream_name("durable").send().await?;
    let desc = d.stream_description().ok_or_else(|| anyhow::anyhow!("none"))?;
    assert_eq!(desc.shards().len(), 4);
    assert_eq!(desc.retention_period_hours(), 72);
    assert_eq!(
        c.list_tags_for_stream()
            .stream_name("durable")
            .send()
            .await?
            .tags()
            .len(),
        1
    );
    for shard in ["shardId-000000000000", "shardId-000000000001"] {
        let got = read_all(&c, "durable", shard).await?;
        let want: Vec<_> = acked
            .iter()
            .filter(|a| a.0 == shard)
            .map(|a| (a.1.clone(), a.2.clone()))
            .collect();
        let got: Vec<_> = got.into_iter().map(|g| (g.0, g.1)).collect();
        assert_eq!(got, want);
    }
    // New writes get larger sequence numbers than anything before the restart.
    let r = c
        .put_record()
        .stream_name("durable")
        .partition_key("k0")
        .data(blob(0, 1))
        .send()
        .await?;
    let max_before = acked
        .iter()
        .map(|a| a.1.parse::<u128>().unwrap_or(0))
        .max()
        .unwrap_or(0);
    assert!(r.sequence_number().parse::<u128>()? > max_before);
    s.stop().await
}

#[tokio::test]
async fn retention_really_removes_old_data() -> R {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let s = TestServer::start_with_clock(clock.clone(), |c| c.kinesis.segment_mib = 1).await?;
    let c = s.kinesis();
    create(&c, "ret", 1).await?;
    // ~3 MiB of old data across several 1 MiB segments.
    for i in 0..6u64 {
        let mut req = c.put_records().stream_name("ret");
        for j in 0..10u64 {
            req = req.records(
                PutRecordsRequestEntry::builder()
                    .partition_key("k")
                    .data(blob(i * 10 + j, 50_000))
                    .build()?,
            );
        }
        req.send().await?;
    }
    clock.advance(25 * 3_600_000);
    let fresh = c
        .put_record()
        .stream_name("ret")
        .partition_key("k")
        .data(blob(7, 10))
        .send()
        .await?;
    // Older than 24 h: unreadable at once.
    let got = read_all(&c, "ret", "shardId-000000000000").await?;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, fresh.sequence_number());
    // And the sweep deletes the sealed segments from disk.
    let dir = s.inner().stream_engine().log_dir_of(
        &kd_stream::Scope {
            account: "000000000000".into(),
            region: "us-east-1".into(),
        },
        "ret",
    );
    let dir = dir.ok_or_else(|| anyhow::anyhow!("no log dir"))?;
    let count_logs = || {
        std::fs::read_dir(&dir)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                    .count()
            })
            .unwrap_or(0)
    };
    let before = count_logs();
    assert!(before >= 3, "expected several segments, found {before}");
    let removed = s.inner().stream_engine().enforce_retention().await?;
    assert!(removed >= 2, "removed {removed}");
    assert_eq!(count_logs(), before - removed);
    let got = read_all(&c, "ret", "shardId-000000000000").await?;
    assert_eq!(got.len(), 1);
    s.stop().await
}

#[tokio::test]
async fn enhanced_monitoring_is_recorded_and_reported() -> R {
    use aws_sdk_kinesis::types::MetricsName;
    let s = TestServer::start().await?;
    let c = s.kinesis();
    create(&c, "mon", 1).await?;
    let out = c
        .enable_enhanced_monitoring()
        .stream_name("mon")
        .shard_level_metrics(MetricsName::IncomingBytes)
        .shard_level_metrics(MetricsName::IteratorAgeMilliseconds)
        .send()
        .await?;
    assert!(out.current_shard_level_metrics().is_empty());
    assert_eq!(
        out.desired_shard_level_metrics(),
        [MetricsName::IncomingBytes, MetricsName::IteratorAgeMilliseconds]
    );
    let d = c.describe_stream().stream_name("mon").send().await?;
    let shown = d
        .stream_description()
        .map(|d| d.enhanced_monitoring()[0].shard_level_metrics().to_vec())
        .unwrap_or_default();
    assert_eq!(
        shown,
        [MetricsName::IncomingBytes, MetricsName::IteratorAgeMilliseconds]
    );
    let out = c
        .disable_enhanced_monitoring()
        .stream_name("mon")
        .shard_level_metrics(MetricsName::All)
        .send()
        .await?;
    assert_eq!(out.current_shard_level_metrics().len(), 2);
    assert!(out.desired_shard_level_metrics().is_empty());
    let all = c
        .enable_enhanced_monitoring()
        .stream_name("mon")
        .shard_level_metrics(MetricsName::All)
        .send()
        .await?;
    assert_eq!(all.desired_shard_level_metrics().len(), 7);
    s.stop().await
}
