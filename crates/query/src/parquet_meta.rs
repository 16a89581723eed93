//! Parquet footers kept between queries. A Parquet scan reads each object's footer (and page
//! index) before its column chunks; repeated queries over the same objects read the same
//! footers again. [`ParquetMetaCaches`] keeps them in memory, one DataFusion
//! [`FileMetadataCache`] per bucket (DataFusion keys its cache by the object's path and
//! checks an entry against the object's size and last-modified time, so two buckets must not
//! share one), bounded to [`PER_BUCKET_BYTES`] each (least recently used out) and
//! [`MAX_BUCKETS`] buckets.
//!
//! [`CountedReaderFactory`] hands the scan DataFusion's cached reader, and charges a cache
//! hit to the query's `DataScannedInBytes` as the footer bytes the object holds (its size
//! after the last column chunk), so the figure still says which objects a query touched:
//! a count over one partition scans that partition's footers, not zero. Misses are counted
//! by the store as they are read. Nothing here is durable: the cache starts empty.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use datafusion::common::Result;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::ParquetFileReaderFactory;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::execution::cache::cache_manager::FileMetadataCache;
use datafusion::execution::cache::default_cache::DefaultCache;
use datafusion::parquet::arrow::arrow_reader::ArrowReaderOptions;
use datafusion::parquet::arrow::async_reader::AsyncFileReader;
use datafusion::parquet::file::metadata::ParquetMetaData;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use object_store::ObjectStore;

/// Memory for one bucket's footers.
pub const PER_BUCKET_BYTES: usize = 64 * 1024 * 1024;
/// Buckets with a cache at once (beyond this, all are dropped and start again).
pub const MAX_BUCKETS: usize = 32;

/// The per-bucket footer caches of one query engine.
#[derive(Clone, Default)]
pub struct ParquetMetaCaches(Arc<Mutex<HashMap<String, Arc<FileMetadataCache>>>>);

impl fmt::Debug for ParquetMetaCaches {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ParquetMetaCaches")
    }
}

impl ParquetMetaCaches {
    /// The cache of `bucket`, made on first use.
    pub fn bucket(&self, bucket: &str) -> Arc<FileMetadataCache> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = map.get(bucket) {
            return c.clone();
        }
        if map.len() >= MAX_BUCKETS {
            map.clear();
        }
        let cache: Arc<FileMetadataCache> =
            Arc::new(DefaultCache::new(PER_BUCKET_BYTES).with_name(format!("parquet footers of {bucket}")));
        map.insert(bucket.to_string(), cache.clone());
        cache
    }
}

/// DataFusion's cached Parquet reader over one bucket's (counted) store, charging cache hits
/// to the query's scanned bytes.
#[derive(Debug)]
pub struct CountedReaderFactory {
    inner: CachedParquetFileReaderFactory,
    cache: Arc<FileMetadataCache>,
    scanned: Arc<AtomicU64>,
}

impl CountedReaderFactory {
    /// Over `store` (already counting its reads into `scanned`) and `cache`.
    pub fn new(store: Arc<dyn ObjectStore>, cache: Arc<FileMetadataCache>, scanned: Arc<AtomicU64>) -> Self {
        Self {
            inner: CachedParquetFileReaderFactory::new(store, cache.clone()),
            cache,
            scanned,
        }
    }
}

impl ParquetFileReaderFactory for CountedReaderFactory {
    fn create_reader(
        &self,
        partition_index: usize,
        partitioned_file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> Result<Box<dyn AsyncFileReader + Send>> {
        let meta = partitioned_file.object_meta.clone();
        let hit = self
            .cache
            .get(&meta.location)
            .is_some_and(|entry| entry.is_valid_for(&meta));
        let inner = self
            .inner
            .create_reader(partition_index, partitioned_file, metadata_size_hint, metrics)?;
        Ok(Box::new(CountedReader {
            inner,
            charge: hit.then(|| (self.scanned.clone(), meta.size)),
        }))
    }
}

struct CountedReader {
    inner: Box<dyn AsyncFileReader + Send>,
    /// On a cache hit: where to charge the footer, and the object's size.
    charge: Option<(Arc<AtomicU64>, u64)>,
}

/// The bytes after the last column chunk: footer, page indexes and the closing magic.
fn footer_bytes(meta: &ParquetMetaData, size: u64) -> u64 {
    let end = meta
        .row_groups()
        .iter()
        .flat_map(|rg| rg.columns())
        .map(|c| {
            let (start, len) = c.byte_range();
            start.saturating_add(len)
        })
        .max()
        .unwrap_or(4);
    size.saturating_sub(end)
}

impl AsyncFileReader for CountedReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, datafusion::parquet::errors::Result<Bytes>> {
        self.inner.get_bytes(range)
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, datafusion::parquet::errors::Result<Vec<Bytes>>> {
        self.inner.get_byte_ranges(ranges)
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, datafusion::parquet::errors::Result<Arc<ParquetMetaData>>> {
        let charge = self.charge.take();
        self.inner
            .get_metadata(options)
            .map(move |r| {
                if let (Ok(m), Some((scanned, size))) = (&r, charge) {
                    scanned.fetch_add(footer_bytes(m, size), Ordering::Relaxed);
                }
                r
            })
            .boxed()
    }
}
