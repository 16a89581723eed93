//! Byte-level encoding of segment headers, record batches and index files.
//!
//! Everything here is pure (no I/O) so it can be tested exhaustively. Decoders treat their
//! input as untrusted: every length is checked against the bytes that are actually there
//! before anything is sliced or allocated.

use std::fmt;

use super::Record;

/// Magic bytes that open every segment file.
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"KDLOGSEG";
/// Magic bytes that open every index file.
pub(crate) const INDEX_MAGIC: [u8; 8] = *b"KDLOGIDX";
/// On-disk format version of segment and index files.
pub(crate) const FORMAT_VERSION: u32 = 1;
/// `magic[8] | version u32 | reserved u32 | base_offset u64`.
pub(crate) const SEGMENT_HEADER_LEN: u64 = 24;
/// `len u32 | crc32 u32`.
pub(crate) const FRAME_HEADER_LEN: usize = 8;
/// `partition u32 | count u32 | first_offset u64 | timestamp_ms i64`.
pub(crate) const BODY_HEADER_LEN: usize = 24;
/// `key_len u16 | data_len u32` around every record's bytes.
pub(crate) const RECORD_OVERHEAD: usize = 6;
/// Largest batch body accepted (and written).
pub(crate) const MAX_BODY_LEN: usize = 1 << 30;
/// Largest record key.
pub(crate) const MAX_KEY_LEN: usize = u16::MAX as usize;
/// `magic[8] | version u32 | reserved u32 | base_offset u64 | segment_len u64 | count u32`.
pub(crate) const INDEX_HEADER_LEN: usize = 36;
/// `partition u32 | count u32 | first_offset u64 | timestamp_ms i64 | pos u64 | len u32`.
pub(crate) const INDEX_ENTRY_LEN: usize = 36;
/// Trailing crc32 of an index file.
pub(crate) const INDEX_TRAILER_LEN: usize = 4;

/// Why a piece of bytes was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CodecError(pub &'static str);

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// The fixed fields of a batch body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchHeader {
    pub partition: u32,
    pub count: u32,
    pub first_offset: u64,
    pub timestamp_ms: i64,
}

/// Where one batch lives: kept in memory per partition and persisted in index files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchEntry {
    pub partition: u32,
    pub count: u32,
    pub first_offset: u64,
    pub timestamp_ms: i64,
    /// Base offset of the segment holding the batch.
    pub segment: u64,
    /// Byte position of the batch frame in its segment file.
    pub pos: u64,
    /// Length of the whole frame (`FRAME_HEADER_LEN` + body).
    pub len: u32,
}

impl BatchEntry {
    /// One past the last offset of the batch.
    pub fn end_offset(&self) -> u64 {
        self.first_offset.saturating_add(u64::from(self.count))
    }
}

/// A little-endian cursor over untrusted bytes.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], CodecError> {
        if self.bytes.len() < n {
            return Err(CodecError(what));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], CodecError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, CodecError> {
        self.array(what).map(u16::from_le_bytes)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, CodecError> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, CodecError> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn i64(&mut self, what: &'static str) -> Result<i64, CodecError> {
        self.array(what).map(i64::from_le_bytes)
    }
}

// ---------------------------------------------------------------------------------------
// Segment header
// ---------------------------------------------------------------------------------------

pub(crate) fn encode_segment_header(base_offset: u64) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut out = [0u8; SEGMENT_HEADER_LEN as usize];
    out[0..8].copy_from_slice(&SEGMENT_MAGIC);
    out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    // 12..16 reserved (zero)
    out[16..24].copy_from_slice(&base_offset.to_le_bytes());
    out
}

/// Returns the base offset recorded in a segment header.
pub(crate) fn decode_segment_header(bytes: &[u8]) -> Result<u64, CodecError> {
    let mut r = Reader { bytes };
    let magic: [u8; 8] = r.array("segment header truncated")?;
    if magic != SEGMENT_MAGIC {
        return Err(CodecError("bad segment magic"));
    }
    if r.u32("segment header truncated")? != FORMAT_VERSION {
        return Err(CodecError("unsupported segment format version"));
    }
    r.u32("segment header truncated")?;
    r.u64("segment header truncated")
}

// ---------------------------------------------------------------------------------------
// Batches
// ---------------------------------------------------------------------------------------

/// Length of the body that `records` encode to, or `None` on arithmetic overflow.
pub(crate) fn body_len(records: &[Record]) -> Option<usize> {
    records.iter().try_fold(BODY_HEADER_LEN, |acc, r| {
        acc.checked_add(RECORD_OVERHEAD)?
            .checked_add(r.key.len())?
            .checked_add(r.data.len())
    })
}

/// Appends one frame to `out` and returns its length. The caller has validated the input:
/// `records.len() == header.count`, keys fit `u16`, the body fits [`MAX_BODY_LEN`].
pub(crate) fn encode_batch(out: &mut Vec<u8>, header: &BatchHeader, records: &[Record]) -> usize {
    debug_assert_eq!(records.len(), header.count as usize);
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
    out.extend_from_slice(&header.partition.to_le_bytes());
    out.extend_from_slice(&header.count.to_le_bytes());
    out.extend_from_slice(&header.first_offset.to_le_bytes());
    out.extend_from_slice(&header.timestamp_ms.to_le_bytes());
    for r in records {
        debug_assert!(r.key.len() <= MAX_KEY_LEN);
        out.extend_from_slice(&(r.key.len() as u16).to_le_bytes());
        out.extend_from_slice(&r.key);
        out.extend_from_slice(&(r.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&r.data);
    }
    let body_start = start + FRAME_HEADER_LEN;
    let body_len = out.len() - body_start;
    debug_assert!(body_len <= MAX_BODY_LEN);
    let crc = crc32fast::hash(&out[body_start..]);
    out[start..start + 4].copy_from_slice(&(body_len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    out.len() - start
}

/// Splits a frame header into (body length, crc). The length is validated against the
/// format limits but not against the bytes available; callers do that.
pub(crate) fn decode_frame_header(bytes: [u8; FRAME_HEADER_LEN]) -> Result<(usize, u32), CodecError> {
    let mut r = Reader { bytes: &bytes };
    let len = r.u32("frame header truncated")? as usize;
    let crc = r.u32("frame header truncated")?;
    if len < BODY_HEADER_LEN {
        return Err(CodecError("batch body shorter than its header"));
    }
    if len > MAX_BODY_LEN {
        return Err(CodecError("batch body longer than the format limit"));
    }
    Ok((len, crc))
}

/// Iterates over the records of a body whose header has been read.
pub(crate) struct RecordIter<'a> {
    reader: Reader<'a>,
    left: u32,
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<(&'a [u8], &'a [u8]), CodecError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        Some(self.next_record())
    }
}

impl<'a> RecordIter<'a> {
    fn next_record(&mut self) -> Result<(&'a [u8], &'a [u8]), CodecError> {
        let key_len = self.reader.u16("record key length truncated")? as usize;
        let key = self.reader.take(key_len, "record key truncated")?;
        let data_len = self.reader.u32("record data length truncated")? as usize;
        let data = self.reader.take(data_len, "record data truncated")?;
        Ok((key, data))
    }
}

/// Parses a body header and returns an iterator over its records. Checks that `count` is
/// plausible for the body length (so callers may pre-allocate `count` slots).
pub(crate) fn body_records(body: &[u8]) -> Result<(BatchHeader, RecordIter<'_>), CodecError> {
    let mut r = Reader { bytes: body };
    let header = BatchHeader {
        partition: r.u32("batch header truncated")?,
        count: r.u32("batch header truncated")?,
        first_offset: r.u64("batch header truncated")?,
        timestamp_ms: r.i64("batch header truncated")?,
    };
    if header.count == 0 {
        return Err(CodecError("batch with zero records"));
    }
    if header.count as usize > r.bytes.len() / RECORD_OVERHEAD {
        return Err(CodecError("record count larger than the body can hold"));
    }
    if header.first_offset.checked_add(u64::from(header.count)).is_none() {
        return Err(CodecError("batch offsets overflow"));
    }
    Ok((
        header,
        RecordIter {
            reader: r,
            left: header.count,
        },
    ))
}

/// Checks the structure of a body (records fill it exactly) without allocating.
pub(crate) fn validate_body(body: &[u8]) -> Result<BatchHeader, CodecError> {
    let (header, mut iter) = body_records(body)?;
    for rec in iter.by_ref() {
        rec?;
    }
    if !iter.reader.bytes.is_empty() {
        return Err(CodecError("trailing bytes after the last record"));
    }
    Ok(header)
}

/// A decoded batch borrowing from its frame.
pub(crate) struct DecodedBatch<'a> {
    pub header: BatchHeader,
    pub records: Vec<(&'a [u8], &'a [u8])>,
}

/// Decodes one complete frame (exactly `frame.len()` bytes), verifying length, crc and
/// structure.
pub(crate) fn decode_frame(frame: &[u8]) -> Result<DecodedBatch<'_>, CodecError> {
    let mut head = [0u8; FRAME_HEADER_LEN];
    let Some(h) = frame.get(..FRAME_HEADER_LEN) else {
        return Err(CodecError("frame header truncated"));
    };
    head.copy_from_slice(h);
    let (len, crc) = decode_frame_header(head)?;
    let body = &frame[FRAME_HEADER_LEN..];
    if body.len() != len {
        return Err(CodecError("frame length does not match its header"));
    }
    if crc32fast::hash(body) != crc {
        return Err(CodecError("batch crc mismatch"));
    }
    let (header, mut iter) = body_records(body)?;
    let mut records = Vec::with_capacity(header.count as usize);
    for rec in iter.by_ref() {
        records.push(rec?);
    }
    if !iter.reader.bytes.is_empty() {
        return Err(CodecError("trailing bytes after the last record"));
    }
    Ok(DecodedBatch { header, records })
}

// ---------------------------------------------------------------------------------------
// Index files
// ---------------------------------------------------------------------------------------

/// Encodes the index of a sealed segment whose file is `segment_len` bytes long.
pub(crate) fn encode_index(base_offset: u64, segment_len: u64, entries: &[BatchEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(INDEX_HEADER_LEN + entries.len() * INDEX_ENTRY_LEN + INDEX_TRAILER_LEN);
    out.extend_from_slice(&INDEX_MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&base_offset.to_le_bytes());
    out.extend_from_slice(&segment_len.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        out.extend_from_slice(&e.partition.to_le_bytes());
        out.extend_from_slice(&e.count.to_le_bytes());
        out.extend_from_slice(&e.first_offset.to_le_bytes());
        out.extend_from_slice(&e.timestamp_ms.to_le_bytes());
        out.extend_from_slice(&e.pos.to_le_bytes());
        out.extend_from_slice(&e.len.to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Upper bound on the size of a valid index file for a segment of `segment_len` bytes.
pub(crate) fn max_index_len(segment_len: u64) -> u64 {
    let min_frame = (FRAME_HEADER_LEN + BODY_HEADER_LEN + RECORD_OVERHEAD) as u64;
    let max_entries = segment_len.saturating_sub(SEGMENT_HEADER_LEN) / min_frame;
    (INDEX_HEADER_LEN + INDEX_TRAILER_LEN) as u64 + max_entries * INDEX_ENTRY_LEN as u64
}

/// Decodes and fully validates an index file against the segment it describes: base
/// offset, segment length, contiguous frames covering the whole segment, ascending offsets
/// starting at or after `min_first_offset`.
pub(crate) fn decode_index(
    bytes: &[u8],
    base_offset: u64,
    segment_len: u64,
    min_first_offset: u64,
) -> Result<Vec<BatchEntry>, CodecError> {
    let Some(crc_at) = bytes.len().checked_sub(INDEX_TRAILER_LEN) else {
        return Err(CodecError("index truncated"));
    };
    let (content, trailer) = bytes.split_at(crc_at);
    let mut t = Reader { bytes: trailer };
    if t.u32("index truncated")? != crc32fast::hash(content) {
        return Err(CodecError("index crc mismatch"));
    }
    let mut r = Reader { bytes: content };
    let magic: [u8; 8] = r.array("index header truncated")?;
    if magic != INDEX_MAGIC {
        return Err(CodecError("bad index magic"));
    }
    if r.u32("index header truncated")? != FORMAT_VERSION {
        return Err(CodecError("unsupported index format version"));
    }
    r.u32("index header truncated")?;
    if r.u64("index header truncated")? != base_offset {
        return Err(CodecError("index base offset does not match its segment"));
    }
    if r.u64("index header truncated")? != segment_len {
        return Err(CodecError("index describes a different segment length"));
    }
    let count = r.u32("index header truncated")? as usize;
    if r.bytes.len() != count.saturating_mul(INDEX_ENTRY_LEN) {
        return Err(CodecError("index entry count does not match its length"));
    }
    let mut entries = Vec::with_capacity(count);
    let mut pos = SEGMENT_HEADER_LEN;
    let mut next_offset = min_first_offset.max(base_offset);
    for _ in 0..count {
        let e = BatchEntry {
            partition: r.u32("index entry truncated")?,
            count: r.u32("index entry truncated")?,
            first_offset: r.u64("index entry truncated")?,
            timestamp_ms: r.i64("index entry truncated")?,
            segment: base_offset,
            pos: r.u64("index entry truncated")?,
            len: r.u32("index entry truncated")?,
        };
        if e.count == 0 {
            return Err(CodecError("index entry with zero records"));
        }
        if (e.len as usize) < FRAME_HEADER_LEN + BODY_HEADER_LEN || e.len as usize > FRAME_HEADER_LEN + MAX_BODY_LEN {
            return Err(CodecError("index entry with impossible length"));
        }
        if e.pos != pos {
            return Err(CodecError("index entries are not contiguous"));
        }
        if e.first_offset < next_offset || e.first_offset.checked_add(u64::from(e.count)).is_none() {
            return Err(CodecError("index offsets are not ascending"));
        }
        pos += u64::from(e.len);
        next_offset = e.end_offset();
        entries.push(e);
    }
    if pos != segment_len {
        return Err(CodecError("index does not cover the whole segment"));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &[u8], data: &[u8]) -> Record {
        Record {
            key: key.to_vec(),
            data: data.to_vec(),
        }
    }

    fn sample() -> (BatchHeader, Vec<Record>) {
        let records = vec![
            rec(b"alpha", b"one"),
            rec(b"", b""),
            rec(b"k", &[7u8; 300]),
            rec(&[0xffu8; 40], b"tail"),
        ];
        let header = BatchHeader {
            partition: 3,
            count: records.len() as u32,
            first_offset: 1_000,
            timestamp_ms: -5,
        };
        (header, records)
    }

    #[test]
    fn batch_round_trip() {
        let (header, records) = sample();
        let mut buf = vec![0xAA; 5]; // encoding appends
        let len = encode_batch(&mut buf, &header, &records);
        assert_eq!(len, buf.len() - 5);
        assert_eq!(len, FRAME_HEADER_LEN + body_len(&records).unwrap_or(0));
        let frame = &buf[5..];
        let decoded = decode_frame(frame).expect("valid frame");
        assert_eq!(decoded.header, header);
        let got: Vec<Record> = decoded.records.iter().map(|(k, d)| rec(k, d)).collect();
        assert_eq!(got, records);
        assert_eq!(validate_body(&frame[FRAME_HEADER_LEN..]), Ok(header));
    }

    #[test]
    fn every_truncation_is_rejected() {
        let (header, records) = sample();
        let mut buf = Vec::new();
        encode_batch(&mut buf, &header, &records);
        for cut in 0..buf.len() {
            assert!(decode_frame(&buf[..cut]).is_err(), "cut at {cut}");
        }
        // Extra bytes are rejected as well.
        let mut longer = buf.clone();
        longer.push(0);
        assert!(decode_frame(&longer).is_err());
    }

    #[test]
    fn every_single_byte_corruption_is_rejected() {
        let (header, records) = sample();
        let mut buf = Vec::new();
        encode_batch(&mut buf, &header, &records);
        for i in 0..buf.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = buf.clone();
                bad[i] ^= flip;
                assert!(decode_frame(&bad).is_err(), "flip {flip:#x} at {i}");
            }
        }
    }

    #[test]
    fn structurally_bad_bodies_with_valid_crc_are_rejected() {
        // Bodies whose lengths lie, but with a correct crc: only structure checks catch them.
        fn frame_of(body: &[u8]) -> Vec<u8> {
            let mut f = Vec::new();
            f.extend_from_slice(&(body.len() as u32).to_le_bytes());
            f.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
            f.extend_from_slice(body);
            f
        }
        let mut head = Vec::new();
        head.extend_from_slice(&1u32.to_le_bytes()); // partition
        head.extend_from_slice(&1u32.to_le_bytes()); // count
        head.extend_from_slice(&0u64.to_le_bytes());
        head.extend_from_slice(&0i64.to_le_bytes());

        // key_len claims more than is there
        let mut b = head.clone();
        b.extend_from_slice(&u16::MAX.to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        assert!(decode_frame(&frame_of(&b)).is_err());
        assert!(validate_body(&b).is_err());

        // data_len huge
        let mut b = head.clone();
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_frame(&frame_of(&b)).is_err());

        // huge count (must not allocate)
        let mut b = head.clone();
        b[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        b.extend_from_slice(&[0; 6]);
        assert!(decode_frame(&frame_of(&b)).is_err());

        // zero count
        let mut b = head.clone();
        b[4..8].copy_from_slice(&0u32.to_le_bytes());
        assert!(decode_frame(&frame_of(&b)).is_err());

        // trailing garbage after the records
        let mut b = head.clone();
        b.extend_from_slice(&[0; 6]);
        b.push(9);
        assert!(decode_frame(&frame_of(&b)).is_err());

        // offsets overflow
        let mut b = head.clone();
        b[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        b.extend_from_slice(&[0; 6]);
        assert!(decode_frame(&frame_of(&b)).is_err());

        // and the well-formed one passes
        let mut b = head;
        b.extend_from_slice(&[0; 6]);
        assert!(decode_frame(&frame_of(&b)).is_ok());
    }

    #[test]
    fn frame_header_limits() {
        let mut h = [0u8; FRAME_HEADER_LEN];
        h[0..4].copy_from_slice(&(BODY_HEADER_LEN as u32 - 1).to_le_bytes());
        assert!(decode_frame_header(h).is_err());
        h[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_frame_header(h).is_err());
        h[0..4].copy_from_slice(&(BODY_HEADER_LEN as u32).to_le_bytes());
        assert!(decode_frame_header(h).is_ok());
    }

    #[test]
    fn segment_header_round_trip_and_rejects() {
        let h = encode_segment_header(42);
        assert_eq!(decode_segment_header(&h), Ok(42));
        for cut in 0..h.len() {
            assert!(decode_segment_header(&h[..cut]).is_err());
        }
        let mut bad = h;
        bad[0] ^= 1;
        assert!(decode_segment_header(&bad).is_err());
        let mut bad = h;
        bad[8] = 99;
        assert!(decode_segment_header(&bad).is_err());
    }

    #[test]
    fn index_round_trip_and_rejects() {
        let base = 100;
        let entries = vec![
            BatchEntry {
                partition: 0,
                count: 2,
                first_offset: 100,
                timestamp_ms: 5,
                segment: base,
                pos: SEGMENT_HEADER_LEN,
                len: 50,
            },
            BatchEntry {
                partition: 2,
                count: 1,
                first_offset: 102,
                timestamp_ms: 6,
                segment: base,
                pos: SEGMENT_HEADER_LEN + 50,
                len: 40,
            },
        ];
        let seg_len = SEGMENT_HEADER_LEN + 90;
        let bytes = encode_index(base, seg_len, &entries);
        assert!(bytes.len() as u64 <= max_index_len(seg_len));
        assert_eq!(decode_index(&bytes, base, seg_len, 0), Ok(entries.clone()));
        // wrong segment length / base / overlapping offsets
        assert!(decode_index(&bytes, base, seg_len + 1, 0).is_err());
        assert!(decode_index(&bytes, base + 1, seg_len, 0).is_err());
        assert!(decode_index(&bytes, base, seg_len, 101).is_err());
        for cut in 0..bytes.len() {
            assert!(decode_index(&bytes[..cut], base, seg_len, 0).is_err());
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(decode_index(&bad, base, seg_len, 0).is_err(), "flip at {i}");
        }
    }
}
