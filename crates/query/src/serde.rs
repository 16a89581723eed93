//! Text SerDes as a DataFusion [`FileSource`]: JSON lines (OpenX and Hive JsonSerDe),
//! delimited text (LazySimpleSerDe) and quoted CSV (OpenCSVSerde), each object decompressed
//! by its extension (`.gz`, `.zip`, `.snappy`; anything else is read as plain text).
//!
//! An object is fetched whole (its compressed bytes), then decompressed and parsed on a
//! blocking thread in chunks of complete lines, each chunk becoming record batches sent
//! through a channel of two: memory stays bounded by the chunk size whatever the object's
//! size, and a consumer that stops early (LIMIT, cancellation) stops the reader. Objects are
//! never split (compressed objects cannot be), so parallelism comes from the file groups.
//!
//! JSON: keys are matched case-insensitively unless `case.insensitive` is `false` (keys are
//! lower-cased in place before decoding, as the OpenX SerDe does), `mapping.<column>` names
//! the JSON key of a column, and `ignore.malformed.json = true` turns lines that are not
//! JSON objects, or whose values do not fit their columns, into rows of NULLs, as Athena
//! does. Delimited text: `field.delim` (default `\x01`, or `serialization.format`), `\N`
//! and empty non-string fields are NULL, values are cast to the column type (a value that
//! does not parse is NULL, as in Hive). OpenCSV: `separatorChar` (`,`), `quoteChar` (`"`),
//! `escapeChar` (`\`). The table property `skip.header.line.count` skips the first lines of
//! every object.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions, StringBuilder};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::json::ReaderBuilder;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileOpenFuture, FileOpener, FileScanConfig, FileSource};
use datafusion::datasource::projection::{ProjectionOpener, SplitProjection};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use datafusion::physical_plan::projection::ProjectionExprs;
use futures_util::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt};

/// Decompressed bytes parsed at a time (whole lines).
const CHUNK: usize = 8 * 1024 * 1024;
/// Longest line accepted (a longer one fails the query: HIVE_BAD_DATA).
pub const MAX_LINE: usize = 64 * 1024 * 1024;
/// Largest decompressed object (zip entries are read whole).
const MAX_ZIP_ENTRY: u64 = 4 * 1024 * 1024 * 1024;

/// How a text table's rows are encoded.
#[derive(Debug, Clone)]
pub enum TextFormat {
    /// JSON lines.
    Json {
        /// Lower-case keys before matching.
        case_insensitive: bool,
        /// Rows that do not decode become NULLs.
        ignore_malformed: bool,
        /// Column → JSON key.
        mapping: HashMap<String, String>,
    },
    /// LazySimpleSerDe.
    Delimited {
        /// Field delimiter.
        delim: Vec<u8>,
        /// The NULL marker.
        null: Vec<u8>,
    },
    /// OpenCSVSerde.
    Csv {
        /// Separator.
        sep: u8,
        /// Quote.
        quote: u8,
        /// Escape.
        escape: u8,
    },
}

/// A text format plus the per-object settings.
#[derive(Debug, Clone)]
pub struct TextSpec {
    /// Encoding of rows.
    pub format: TextFormat,
    /// Lines skipped at the start of every object.
    pub skip_header: usize,
}

/// The DataFusion file source of text tables.
#[derive(Clone)]
pub struct SerdeSource {
    table_schema: TableSchema,
    spec: Arc<TextSpec>,
    batch_size: Option<usize>,
    metrics: ExecutionPlanMetricsSet,
    projection: SplitProjection,
}

impl fmt::Debug for SerdeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SerdeSource({:?})", self.spec.format)
    }
}

impl SerdeSource {
    /// A source over `table_schema` (file columns then partition columns).
    pub fn new(table_schema: TableSchema, spec: TextSpec) -> Self {
        Self {
            projection: SplitProjection::unprojected(&table_schema),
            table_schema,
            spec: Arc::new(spec),
            batch_size: None,
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }
}

impl FileSource for SerdeSource {
    fn create_file_opener(
        &self,
        object_store: Arc<dyn ObjectStore>,
        _base_config: &FileScanConfig,
        _partition: usize,
    ) -> Result<Arc<dyn FileOpener>> {
        let file_schema = self.table_schema.file_schema();
        let projected = Arc::new(file_schema.project(&self.projection.file_indices)?);
        let opener = Arc::new(SerdeOpener {
            store: object_store,
            spec: self.spec.clone(),
            indices: self.projection.file_indices.clone(),
            projected,
            batch_size: self.batch_size.unwrap_or(8192),
        });
        ProjectionOpener::try_new(self.projection.clone(), opener, file_schema)
    }

    fn table_schema(&self) -> &TableSchema {
        &self.table_schema
    }

    fn with_batch_size(&self, batch_size: usize) -> Arc<dyn FileSource> {
        let mut s = self.clone();
        s.batch_size = Some(batch_size);
        Arc::new(s)
    }

    fn try_pushdown_projection(&self, projection: &ProjectionExprs) -> Result<Option<Arc<dyn FileSource>>> {
        let mut source = self.clone();
        let merged = self.projection.source.try_merge(projection)?;
        source.projection = SplitProjection::new(self.table_schema.file_schema(), &merged);
        Ok(Some(Arc::new(source)))
    }

    fn projection(&self) -> Option<&ProjectionExprs> {
        Some(&self.projection.source)
    }

    fn metrics(&self) -> &ExecutionPlanMetricsSet {
        &self.metrics
    }

    fn file_type(&self) -> &str {
        "hive-text"
    }

    fn supports_repartitioning(&self) -> bool {
        false
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn datafusion::physical_plan::PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        datafusion::physical_plan::apply_expression_roots(self.projection.source.iter(), f)
    }
}

struct SerdeOpener {
    store: Arc<dyn ObjectStore>,
    spec: Arc<TextSpec>,
    /// Indices of the projected columns among the file columns.
    indices: Vec<usize>,
    projected: SchemaRef,
    batch_size: usize,
}

impl FileOpener for SerdeOpener {
    fn open(&self, file: PartitionedFile) -> Result<FileOpenFuture> {
        let store = self.store.clone();
        let spec = self.spec.clone();
        let indices = self.indices.clone();
        let schema = self.projected.clone();
        let batch_size = self.batch_size;
        Ok(Box::pin(async move {
            let location = file.object_meta.location.clone();
            let bytes = store.get(&location).await?.bytes().await?;
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(2);
            let name = location.to_string();
            tokio::task::spawn_blocking(move || {
                let mut reader = ChunkReader {
                    spec: &spec,
                    indices: &indices,
                    schema: &schema,
                    batch_size,
                    skip: spec.skip_header,
                    tx: &tx,
                };
                if let Err(e) = reader.run(&name, &bytes) {
                    let _ = tx.blocking_send(Err(e));
                }
            });
            let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
            Ok(stream.boxed())
        }))
    }
}

fn bad_data(msg: impl fmt::Display) -> DataFusionError {
    DataFusionError::Execution(format!("HIVE_BAD_DATA: {msg}"))
}

/// A decompressing reader for an object, chosen by its extension.
fn decompressor<'a>(name: &str, bytes: &'a [u8]) -> Result<Box<dyn Read + 'a>> {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".gz") || lower.ends_with(".gzip") {
        return Ok(Box::new(flate2::read::MultiGzDecoder::new(bytes)));
    }
    if lower.ends_with(".snappy") {
        if bytes.starts_with(b"\xff\x06\x00\x00sNaPpY") {
            return Ok(Box::new(snap::read::FrameDecoder::new(bytes)));
        }
        return Ok(Box::new(std::io::Cursor::new(hadoop_snappy(bytes)?)));
    }
    if lower.ends_with(".zip") {
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(bad_data)?;
        let mut out = Vec::new();
        for i in 0..archive.len() {
            let entry = archive.by_index(i).map_err(bad_data)?;
            if entry.is_dir() {
                continue;
            }
            entry.take(MAX_ZIP_ENTRY).read_to_end(&mut out).map_err(bad_data)?;
            if !out.ends_with(b"\n") && !out.is_empty() {
                out.push(b'\n');
            }
        }
        return Ok(Box::new(std::io::Cursor::new(out)));
    }
    for ext in [".bz2", ".zst", ".lz4", ".lzo", ".deflate"] {
        if lower.ends_with(ext) {
            return Err(DataFusionError::NotImplemented(format!(
                "NOT_SUPPORTED: compression of {name} ({ext}) is not supported by kinesis-data"
            )));
        }
    }
    Ok(Box::new(bytes))
}

/// Hadoop's snappy block format: blocks of (uncompressed length, then chunks of
/// (compressed length, raw snappy)), lengths big-endian u32.
fn hadoop_snappy(mut b: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut dec = snap::raw::Decoder::new();
    let be = |s: &[u8]| -> Result<usize> {
        s.get(..4)
            .map(|x| u32::from_be_bytes([x[0], x[1], x[2], x[3]]) as usize)
            .ok_or_else(|| bad_data("truncated snappy block"))
    };
    while !b.is_empty() {
        let total = be(b)?;
        b = &b[4..];
        let mut got = 0;
        while got < total {
            let n = be(b)?;
            b = &b[4..];
            let chunk = b.get(..n).ok_or_else(|| bad_data("truncated snappy block"))?;
            let d = dec.decompress_vec(chunk).map_err(bad_data)?;
            if d.is_empty() {
                return Err(bad_data("empty snappy chunk"));
            }
            got += d.len();
            out.extend_from_slice(&d);
            b = &b[n..];
            if out.len() > MAX_ZIP_ENTRY as usize {
                return Err(bad_data("snappy object too large"));
            }
        }
    }
    Ok(out)
}

struct ChunkReader<'a> {
    spec: &'a TextSpec,
    indices: &'a [usize],
    schema: &'a SchemaRef,
    batch_size: usize,
    skip: usize,
    tx: &'a tokio::sync::mpsc::Sender<Result<RecordBatch>>,
}

impl ChunkReader<'_> {
    fn run(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        let mut input = decompressor(name, bytes)?;
        let mut buf: Vec<u8> = Vec::with_capacity(CHUNK + 1024);
        let mut eof = false;
        while !eof {
            // Fill up to CHUNK bytes.
            let start = buf.len();
            buf.resize(start.max(CHUNK) + 64 * 1024, 0);
            let mut filled = start;
            while filled < buf.len() {
                let n = input.read(&mut buf[filled..]).map_err(bad_data)?;
                if n == 0 {
                    eof = true;
                    break;
                }
                filled += n;
            }
            buf.truncate(filled);
            let cut = if eof {
                buf.len()
            } else {
                match memrchr(b'\n', &buf) {
                    Some(i) => i + 1,
                    None if buf.len() > MAX_LINE => return Err(bad_data(format!("a line of {name} is too long"))),
                    None => continue,
                }
            };
            let rest = buf.split_off(cut);
            let mut lines = &buf[..];
            while self.skip > 0 && !lines.is_empty() {
                let end = memchr(b'\n', lines).map_or(lines.len(), |i| i + 1);
                lines = &lines[end..];
                self.skip -= 1;
            }
            if !lines.is_empty() && !self.parse(lines)? {
                return Ok(());
            }
            buf = rest;
        }
        Ok(())
    }

    /// Sends the batches of these complete lines; false when the consumer is gone.
    fn send(&self, batch: RecordBatch) -> bool {
        self.tx.blocking_send(Ok(batch)).is_ok()
    }

    fn parse(&self, lines: &[u8]) -> Result<bool> {
        if self.schema.fields().is_empty() {
            // Nothing projected (count(*)): only the row count matters.
            let rows = lines
                .split(|b| *b == b'\n')
                .filter(|l| l.iter().any(|b| !b.is_ascii_whitespace()))
                .count();
            let batch = RecordBatch::try_new_with_options(
                self.schema.clone(),
                vec![],
                &RecordBatchOptions::new().with_row_count(Some(rows)),
            )?;
            return Ok(self.send(batch));
        }
        match &self.spec.format {
            TextFormat::Json {
                case_insensitive,
                ignore_malformed,
                mapping,
            } => self.json(lines, *case_insensitive, *ignore_malformed, mapping),
            TextFormat::Delimited { delim, null } => {
                let rows = lines
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
                self.strings(rows.map(|l| split_delimited(l, delim)), Some(null))
            }
            TextFormat::Csv { sep, quote, escape } => {
                let rows = lines
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
                self.strings(rows.map(|l| split_csv(l, *sep, *quote, *escape)), None)
            }
        }
    }

    fn json(&self, lines: &[u8], ci: bool, ignore: bool, mapping: &HashMap<String, String>) -> Result<bool> {
        let decode_schema = Arc::new(Schema::new(
            self.schema
                .fields()
                .iter()
                .map(|f| {
                    let key = mapping.get(f.name()).cloned().unwrap_or_else(|| f.name().clone());
                    let key = if ci { key.to_lowercase() } else { key };
                    Field::new(key, f.data_type().clone(), true)
                })
                .collect::<Vec<_>>(),
        ));
        let lowered;
        let mut data = lines;
        if ci && lines.iter().any(u8::is_ascii_uppercase) {
            let mut v = lines.to_vec();
            lowercase_keys(&mut v);
            lowered = v;
            data = &lowered;
        }
        match self.decode_json(&decode_schema, data) {
            Ok(batches) => {
                for b in batches {
                    if !self.send(b) {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Err(e) if !ignore => Err(bad_data(format!("Row is not a valid JSON Object - {e}"))),
            Err(_) => {
                // Keep only the lines that decode on their own.
                let mut owned = Vec::with_capacity(data.len());
                for line in data.split(|b| *b == b'\n') {
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    // A line that does not decode is a row of NULLs, as in Athena.
                    if self.decode_json(&decode_schema, line).is_ok() {
                        owned.extend_from_slice(line);
                    } else {
                        owned.extend_from_slice(b"{}");
                    }
                    owned.push(b'\n');
                }
                let batches = self.decode_json(&decode_schema, &owned).map_err(bad_data)?;
                for b in batches {
                    if !self.send(b) {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
        }
    }

    fn decode_json(&self, decode_schema: &SchemaRef, data: &[u8]) -> Result<Vec<RecordBatch>> {
        let mut decoder = ReaderBuilder::new(decode_schema.clone())
            .with_batch_size(self.batch_size)
            .with_coerce_primitive(true)
            .build_decoder()?;
        let mut out = Vec::new();
        let mut pos = 0;
        loop {
            let n = decoder.decode(&data[pos..])?;
            pos += n;
            if let Some(b) = decoder.flush()? {
                out.push(RecordBatch::try_new(self.schema.clone(), b.columns().to_vec())?);
            }
            if pos >= data.len() && n == 0 {
                break;
            }
        }
        Ok(out)
    }

    /// Rows of string fields → typed columns (by position among the file columns).
    fn strings<'b>(
        &self,
        rows: impl Iterator<Item = Vec<std::borrow::Cow<'b, [u8]>>>,
        null: Option<&[u8]>,
    ) -> Result<bool> {
        let mut builders: Vec<StringBuilder> = self.indices.iter().map(|_| StringBuilder::new()).collect();
        let mut n = 0;
        let flush = |builders: &mut Vec<StringBuilder>| -> Result<RecordBatch> {
            let cols: Vec<ArrayRef> = builders
                .iter_mut()
                .zip(self.schema.fields())
                .map(|(b, f)| {
                    let a: ArrayRef = Arc::new(b.finish());
                    if f.data_type() == &DataType::Utf8 {
                        Ok(a)
                    } else {
                        cast_with_options(&a, f.data_type(), &CastOptions::default())
                    }
                })
                .collect::<std::result::Result<_, _>>()?;
            Ok(RecordBatch::try_new(self.schema.clone(), cols)?)
        };
        for fields in rows {
            for ((b, idx), f) in builders.iter_mut().zip(self.indices).zip(self.schema.fields()) {
                match fields.get(*idx) {
                    None => b.append_null(),
                    Some(v) if null.is_some_and(|n| v.as_ref() == n) => b.append_null(),
                    Some(v) if v.is_empty() && !matches!(f.data_type(), DataType::Utf8 | DataType::Utf8View) => {
                        b.append_null()
                    }
                    Some(v) => b.append_value(String::from_utf8_lossy(v)),
                }
            }
            n += 1;
            if n == self.batch_size {
                n = 0;
                if !self.send(flush(&mut builders)?) {
                    return Ok(false);
                }
            }
        }
        if n > 0 {
            return Ok(self.send(flush(&mut builders)?));
        }
        Ok(true)
    }
}

fn memchr(c: u8, s: &[u8]) -> Option<usize> {
    s.iter().position(|b| *b == c)
}

fn memrchr(c: u8, s: &[u8]) -> Option<usize> {
    s.iter().rposition(|b| *b == c)
}

fn split_delimited<'b>(line: &'b [u8], delim: &[u8]) -> Vec<std::borrow::Cow<'b, [u8]>> {
    let mut out = Vec::new();
    if delim.is_empty() {
        out.push(std::borrow::Cow::Borrowed(line));
        return out;
    }
    let mut start = 0;
    let mut i = 0;
    while i + delim.len() <= line.len() {
        if &line[i..i + delim.len()] == delim {
            out.push(std::borrow::Cow::Borrowed(&line[start..i]));
            i += delim.len();
            start = i;
        } else {
            i += 1;
        }
    }
    out.push(std::borrow::Cow::Borrowed(&line[start..]));
    out
}

/// OpenCSV: fields separated by `sep`, optionally quoted; inside quotes `quote quote` or
/// `escape quote` is a quote.
fn split_csv<'b>(line: &'b [u8], sep: u8, quote: u8, escape: u8) -> Vec<std::borrow::Cow<'b, [u8]>> {
    let mut out = Vec::new();
    let mut field = Vec::new();
    let mut in_quotes = false;
    let mut i = 0;
    while i < line.len() {
        let c = line[i];
        if in_quotes {
            if c == escape && escape != quote && i + 1 < line.len() {
                field.push(line[i + 1]);
                i += 2;
                continue;
            }
            if c == quote {
                if line.get(i + 1) == Some(&quote) {
                    field.push(quote);
                    i += 2;
                    continue;
                }
                in_quotes = false;
            } else {
                field.push(c);
            }
        } else if c == quote {
            in_quotes = true;
        } else if c == sep {
            out.push(std::borrow::Cow::Owned(std::mem::take(&mut field)));
        } else {
            field.push(c);
        }
        i += 1;
    }
    out.push(std::borrow::Cow::Owned(field));
    out
}

/// Lower-cases (ASCII) every object key of the JSON lines in `buf`, in place.
pub fn lowercase_keys(buf: &mut [u8]) {
    let mut i = 0;
    let mut in_string = false;
    let mut start = 0;
    while i < buf.len() {
        let c = buf[i];
        if in_string {
            if c == b'\\' {
                i += 2;
                continue;
            }
            if c == b'\n' {
                in_string = false;
            } else if c == b'"' {
                in_string = false;
                let mut j = i + 1;
                while j < buf.len() && matches!(buf[j], b' ' | b'\t' | b'\r') {
                    j += 1;
                }
                if buf.get(j) == Some(&b':') {
                    buf[start..i].make_ascii_lowercase();
                }
            }
        } else if c == b'"' {
            in_string = true;
            start = i + 1;
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_lowercased_but_values_kept() {
        let mut b = br#"{"Id": 1, "Name":"Ann \"X\"", "Nested": {"InNer": "VaL"}}"#.to_vec();
        lowercase_keys(&mut b);
        assert_eq!(
            String::from_utf8_lossy(&b),
            r#"{"id": 1, "name":"Ann \"X\"", "nested": {"inner": "VaL"}}"#
        );
    }

    #[test]
    fn csv_and_delimited_splitting() {
        let f = split_csv(br#"a,"b,c","d""e",\x"#, b',', b'"', b'\\');
        let f: Vec<_> = f.iter().map(|c| String::from_utf8_lossy(c).into_owned()).collect();
        assert_eq!(f, vec!["a", "b,c", "d\"e", "\\x"]);
        let d = split_delimited(b"1\x012\x01", b"\x01");
        assert_eq!(d.len(), 3);
    }
}
