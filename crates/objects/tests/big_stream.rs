//! A 200 MiB object streams through PUT and GET without ever being held in memory: the
//! process's peak resident set stays far below the object size. Its own test binary, so no
//! other test's memory counts.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use kd_objects::{ByteRange, Config, Objects, PutOptions};
use kd_storage::{Clock, MetaStore, SystemClock};
use md5::Digest;

type R<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const SIZE: u64 = 200 * 1024 * 1024;
const CHUNK: usize = 1024 * 1024;

/// Peak resident set size of this process, in bytes (Linux `VmHWM`).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn chunk(i: u64) -> Bytes {
    // Deterministic, non-constant content.
    Bytes::from(
        (0..CHUNK)
            .map(|j| ((i as usize * 31 + j) % 251) as u8)
            .collect::<Vec<u8>>(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_and_get_200_mib_streamed() -> R {
    let dir = tempfile::tempdir()?;
    let meta = Arc::new(MetaStore::open(&dir.path().join("meta.redb"))?);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let s3 = Objects::open(Config::new(dir.path().join("s3")), meta, clock)?;
    s3.create_bucket("1", "r", "bkt").await?;

    let n_chunks = SIZE / CHUNK as u64;
    let mut expected_md5 = md5::Md5::new();
    for i in 0..n_chunks {
        expected_md5.update(chunk(i));
    }
    let expected: [u8; 16] = expected_md5.finalize().into();
    let expected_hex: String = expected.iter().map(|b| format!("{b:02x}")).collect();

    let body = futures_util::stream::iter(0..n_chunks).map(|i| Ok::<_, std::io::Error>(chunk(i)));
    let info = s3.put_object("bkt", "big", body, PutOptions::default()).await?;
    assert_eq!(info.size, SIZE);
    assert_eq!(info.etag, expected_hex);

    let (_, _, mut stream) = s3.get_object("bkt", "big", None).await?;
    let mut got = md5::Md5::new();
    let mut total = 0u64;
    let mut largest = 0usize;
    while let Some(c) = stream.next().await {
        let c = c?;
        total += c.len() as u64;
        largest = largest.max(c.len());
        got.update(&c);
    }
    assert_eq!(total, SIZE);
    assert!(largest <= 1024 * 1024, "chunk of {largest} bytes");
    let got: [u8; 16] = got.finalize().into();
    assert_eq!(got, expected);

    // A range from the middle.
    let start = SIZE / 2 + 12345;
    let (_, cr, mut stream) = s3
        .get_object("bkt", "big", Some(ByteRange::FromTo(start, start + 9)))
        .await?;
    assert_eq!(cr, Some((start, start + 9)));
    let mut bytes = Vec::new();
    while let Some(c) = stream.next().await {
        bytes.extend_from_slice(&c?);
    }
    let whole = chunk(start / CHUNK as u64);
    let off = (start % CHUNK as u64) as usize;
    assert_eq!(bytes, whole[off..off + 10].to_vec());

    if let Some(peak) = peak_rss() {
        eprintln!("peak RSS {} MiB", peak >> 20);
        assert!(
            peak < SIZE / 2,
            "peak RSS {} MiB for a {} MiB object",
            peak >> 20,
            SIZE >> 20
        );
    }
    Ok(())
}
