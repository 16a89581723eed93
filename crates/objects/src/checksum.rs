//! Digests computed while a body streams: MD5 (the ETag) and one optional S3 additional
//! checksum (CRC32, CRC32C, CRC64NVME, SHA1, SHA256).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use md5::{Digest as _, Md5};

use crate::error::{Error, Result};
use crate::types::{ChecksumAlgorithm, ChecksumRequest};

/// CRC-64/NVME (reflected polynomial 0x9A6C9329AC4BC9B5, init and xorout all ones).
const CRC64_NVME_TABLE: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u64;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x9A6C_9329_AC4B_C9B5
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

enum Extra {
    Crc32(crc32fast::Hasher),
    Crc32c(u32),
    Crc64Nvme(u64),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

/// Streaming MD5 plus an optional additional checksum.
pub(crate) struct BodyHasher {
    md5: Md5,
    extra: Option<Extra>,
}

/// The digests of a finished body.
#[derive(Debug, Clone)]
pub(crate) struct Digests {
    pub md5: [u8; 16],
    pub checksum: Option<(ChecksumAlgorithm, String)>,
}

impl BodyHasher {
    pub fn new(algorithm: Option<ChecksumAlgorithm>) -> BodyHasher {
        let extra = algorithm.map(|a| match a {
            ChecksumAlgorithm::Crc32 => Extra::Crc32(crc32fast::Hasher::new()),
            ChecksumAlgorithm::Crc32c => Extra::Crc32c(0),
            ChecksumAlgorithm::Crc64Nvme => Extra::Crc64Nvme(!0),
            ChecksumAlgorithm::Sha1 => Extra::Sha1(sha1::Sha1::new()),
            ChecksumAlgorithm::Sha256 => Extra::Sha256(sha2::Sha256::new()),
        });
        BodyHasher { md5: Md5::new(), extra }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.md5.update(data);
        match &mut self.extra {
            None => {}
            Some(Extra::Crc32(h)) => h.update(data),
            Some(Extra::Crc32c(c)) => *c = crc32c::crc32c_append(*c, data),
            Some(Extra::Crc64Nvme(c)) => {
                let mut crc = *c;
                for &b in data {
                    crc = CRC64_NVME_TABLE[((crc ^ u64::from(b)) & 0xFF) as usize] ^ (crc >> 8);
                }
                *c = crc;
            }
            Some(Extra::Sha1(h)) => h.update(data),
            Some(Extra::Sha256(h)) => h.update(data),
        }
    }

    pub fn finish(self) -> Digests {
        let md5: [u8; 16] = self.md5.finalize().into();
        let checksum = self.extra.map(|e| match e {
            Extra::Crc32(h) => (ChecksumAlgorithm::Crc32, B64.encode(h.finalize().to_be_bytes())),
            Extra::Crc32c(c) => (ChecksumAlgorithm::Crc32c, B64.encode(c.to_be_bytes())),
            Extra::Crc64Nvme(c) => (ChecksumAlgorithm::Crc64Nvme, B64.encode((!c).to_be_bytes())),
            Extra::Sha1(h) => (ChecksumAlgorithm::Sha1, B64.encode(h.finalize())),
            Extra::Sha256(h) => (ChecksumAlgorithm::Sha256, B64.encode(h.finalize())),
        });
        Digests { md5, checksum }
    }
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Checks the caller's Content-MD5 and additional checksum against the computed digests.
pub(crate) fn verify(digests: &Digests, content_md5: Option<&str>, checksum: Option<&ChecksumRequest>) -> Result<()> {
    if let Some(expected) = content_md5 {
        let decoded = B64.decode(expected.trim()).ok().filter(|d| d.len() == 16);
        let Some(decoded) = decoded else {
            return Err(Error::InvalidDigest {
                algorithm: "Content-MD5".into(),
                value: expected.to_string(),
            });
        };
        if decoded != digests.md5 {
            return Err(Error::BadDigest {
                algorithm: "Content-MD5".into(),
                expected: expected.to_string(),
                calculated: B64.encode(digests.md5),
            });
        }
    }
    if let Some(req) = checksum
        && let Some(expected) = &req.expected_b64
    {
        let calculated = match &digests.checksum {
            Some((alg, value)) if *alg == req.algorithm => value.clone(),
            _ => return Err(Error::Internal("checksum was not computed".into())),
        };
        if expected.trim() != calculated {
            return Err(Error::BadDigest {
                algorithm: req.algorithm.as_str().into(),
                expected: expected.clone(),
                calculated,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(alg: ChecksumAlgorithm, data: &[u8]) -> String {
        let mut h = BodyHasher::new(Some(alg));
        // Split to exercise incremental updates.
        let (a, b) = data.split_at(data.len() / 2);
        h.update(a);
        h.update(b);
        h.finish().checksum.map(|(_, v)| v).unwrap_or_default()
    }

    fn be32(v: u32) -> String {
        B64.encode(v.to_be_bytes())
    }

    #[test]
    fn known_check_values() {
        let data = b"123456789";
        assert_eq!(digest(ChecksumAlgorithm::Crc32, data), be32(0xCBF4_3926));
        assert_eq!(digest(ChecksumAlgorithm::Crc32c, data), be32(0xE306_9283));
        assert_eq!(
            digest(ChecksumAlgorithm::Crc64Nvme, data),
            B64.encode(0xAE8B_1486_0A79_9888u64.to_be_bytes())
        );
        // Values S3 returns for the body "hello world".
        assert_eq!(digest(ChecksumAlgorithm::Crc32, b"hello world"), "DUoRhQ==");
        assert_eq!(digest(ChecksumAlgorithm::Crc32c, b"hello world"), "yZRlqg==");
        assert_eq!(
            digest(ChecksumAlgorithm::Sha256, b"hello world"),
            "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek="
        );
        assert_eq!(
            digest(ChecksumAlgorithm::Sha1, b"hello world"),
            "Kq5sNclPz7QV2+lfQIuc6R7oRu0="
        );
        let mut h = BodyHasher::new(None);
        h.update(b"hello world");
        assert_eq!(hex(&h.finish().md5), "5eb63bbbe01eeed093cb22bb8f5acdc3");
    }
}
