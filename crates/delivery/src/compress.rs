//! Output compression of delivered objects.
//!
//! * `GZIP`: one gzip member (flate2, level [`crate::Config::gzip_level`], default 1).
//! * `ZIP`: a zip archive with ONE deflated entry named like the object's file name without
//!   its extension (see [`compress_named`]; [`compress`] names the entry `data`).
//! * `Snappy`: the Snappy *framing* format (`snap::write::FrameEncoder`, stream identifier,
//!   CRC-32C per chunk).
//! * `HADOOP_SNAPPY`: Hadoop's block framing (`BlockCompressorStream`): a 4-byte big-endian
//!   uncompressed length, then for each compressed chunk a 4-byte big-endian compressed
//!   length and a raw Snappy block; chunks hold at most 256 KiB of uncompressed data.
//!   Empty input yields an empty body.

use std::io::{self, Write};

use crate::model::Compression;

/// Largest uncompressed chunk of one HADOOP_SNAPPY block.
pub const HADOOP_SNAPPY_CHUNK: usize = 256 * 1024;

/// Compresses `data` in `format` (`level` is used by GZIP only). A ZIP entry is named `data`.
pub fn compress(format: Compression, level: u32, data: &[u8]) -> io::Result<Vec<u8>> {
    compress_named(format, level, data, "data")
}

/// Like [`compress`], naming the ZIP entry `entry_name`.
pub fn compress_named(format: Compression, level: u32, data: &[u8], entry_name: &str) -> io::Result<Vec<u8>> {
    match format {
        Compression::Uncompressed => Ok(data.to_vec()),
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(data.len() / 2 + 64),
                flate2::Compression::new(level.min(9)),
            );
            enc.write_all(data)?;
            enc.finish()
        }
        Compression::Zip => {
            let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::with_capacity(data.len() / 2 + 128)));
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .large_file(data.len() >= u32::MAX as usize);
            w.start_file(entry_name, options).map_err(io::Error::other)?;
            w.write_all(data)?;
            let cursor = w.finish().map_err(io::Error::other)?;
            Ok(cursor.into_inner())
        }
        Compression::Snappy => {
            let mut enc = snap::write::FrameEncoder::new(Vec::with_capacity(data.len() / 2 + 64));
            enc.write_all(data)?;
            enc.into_inner().map_err(|e| io::Error::other(e.to_string()))
        }
        Compression::HadoopSnappy => hadoop_snappy(data),
    }
}

/// Compresses the concatenation of `records` without first building it in memory (for the
/// streaming formats GZIP, ZIP and Snappy); the block formats concatenate first.
pub fn compress_records<'a>(
    format: Compression,
    level: u32,
    records: impl Iterator<Item = &'a [u8]> + Clone,
    entry_name: &str,
) -> io::Result<Vec<u8>> {
    let total: usize = records.clone().map(<[u8]>::len).sum();
    match format {
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(total / 2 + 64),
                flate2::Compression::new(level.min(9)),
            );
            for r in records {
                enc.write_all(r)?;
            }
            enc.finish()
        }
        Compression::Zip => {
            let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::with_capacity(total / 2 + 128)));
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .large_file(total >= u32::MAX as usize);
            w.start_file(entry_name, options).map_err(io::Error::other)?;
            for r in records {
                w.write_all(r)?;
            }
            let cursor = w.finish().map_err(io::Error::other)?;
            Ok(cursor.into_inner())
        }
        Compression::Snappy => {
            let mut enc = snap::write::FrameEncoder::new(Vec::with_capacity(total / 2 + 64));
            for r in records {
                enc.write_all(r)?;
            }
            enc.into_inner().map_err(|e| io::Error::other(e.to_string()))
        }
        Compression::Uncompressed | Compression::HadoopSnappy => {
            let mut raw = Vec::with_capacity(total);
            for r in records {
                raw.extend_from_slice(r);
            }
            if format == Compression::Uncompressed {
                Ok(raw)
            } else {
                hadoop_snappy(&raw)
            }
        }
    }
}

fn hadoop_snappy(data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    let mut enc = snap::raw::Encoder::new();
    // Hadoop writes one block per buffer of at most the buffer size; each block starts with
    // the uncompressed length of that block, then its compressed chunks.
    for block in data.chunks(HADOOP_SNAPPY_CHUNK) {
        let len = u32::try_from(block.len()).map_err(io::Error::other)?;
        out.extend_from_slice(&len.to_be_bytes());
        let compressed = enc.compress_vec(block).map_err(io::Error::other)?;
        let clen = u32::try_from(compressed.len()).map_err(io::Error::other)?;
        out.extend_from_slice(&clen.to_be_bytes());
        out.extend_from_slice(&compressed);
    }
    Ok(out)
}

/// The default file extension of `format` (FileExtension replaces it).
pub fn extension(format: Compression) -> &'static str {
    match format {
        Compression::Uncompressed => "",
        Compression::Gzip => ".gz",
        Compression::Zip => ".zip",
        Compression::Snappy | Compression::HadoopSnappy => ".snappy",
    }
}

/// The `Content-Encoding` of objects written in `format`.
pub fn content_encoding(format: Compression) -> Option<&'static str> {
    match format {
        Compression::Uncompressed => None,
        Compression::Gzip => Some("gzip"),
        Compression::Zip => Some("zip"),
        Compression::Snappy => Some("snappy"),
        Compression::HadoopSnappy => Some("hadoop-snappy"),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn sample(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8 ^ (i / 7) as u8).collect()
    }

    fn hadoop_decode(mut b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let be = |s: &[u8]| u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize;
        while !b.is_empty() {
            let ulen = be(b);
            assert!(ulen <= HADOOP_SNAPPY_CHUNK);
            b = &b[4..];
            let mut got = 0;
            while got < ulen {
                let clen = be(b);
                let chunk = snap::raw::Decoder::new()
                    .decompress_vec(&b[4..4 + clen])
                    .expect("block");
                got += chunk.len();
                out.extend(chunk);
                b = &b[4 + clen..];
            }
            assert_eq!(got, ulen);
        }
        out
    }

    fn decode(format: Compression, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match format {
            Compression::Uncompressed => out.extend_from_slice(body),
            Compression::Gzip => {
                flate2::read::GzDecoder::new(body).read_to_end(&mut out).expect("gzip");
            }
            Compression::Zip => {
                let mut z = zip::ZipArchive::new(io::Cursor::new(body.to_vec())).expect("zip");
                assert_eq!(z.len(), 1);
                let mut e = z.by_index(0).expect("entry");
                assert_eq!(e.name().expect("name"), "entry");
                assert_eq!(e.compression(), zip::CompressionMethod::Deflated);
                e.read_to_end(&mut out).expect("unzip");
            }
            Compression::Snappy => {
                snap::read::FrameDecoder::new(body)
                    .read_to_end(&mut out)
                    .expect("snappy");
            }
            Compression::HadoopSnappy => out = hadoop_decode(body),
        }
        out
    }

    #[test]
    fn every_format_round_trips() {
        for format in [
            Compression::Uncompressed,
            Compression::Gzip,
            Compression::Zip,
            Compression::Snappy,
            Compression::HadoopSnappy,
        ] {
            for n in [0, 1, 1000, HADOOP_SNAPPY_CHUNK, HADOOP_SNAPPY_CHUNK * 2 + 17] {
                let data = sample(n);
                let body = compress_named(format, 1, &data, "entry").expect("compress");
                assert!(decode(format, &body) == data, "{} of {n} bytes", format.as_str());
            }
        }
    }

    #[test]
    fn extensions_and_encodings() {
        assert_eq!(extension(Compression::Gzip), ".gz");
        assert_eq!(extension(Compression::HadoopSnappy), ".snappy");
        assert_eq!(extension(Compression::Uncompressed), "");
        assert_eq!(content_encoding(Compression::HadoopSnappy), Some("hadoop-snappy"));
        assert_eq!(content_encoding(Compression::Uncompressed), None);
    }
}
