//! Sequence numbers and shard iterators.
//!
//! A record's sequence number is `SEQUENCE_BASE + offset`, where `offset` is the record's
//! log-wide offset in its stream's log (see `kd_storage::log`). Offsets are assigned by one
//! writer in commit order, so sequence numbers are unique in the stream and strictly
//! increasing within a shard, and a shard's `StartingSequenceNumber` is the log's next offset
//! when the shard opened. The base makes them 38-digit decimals starting with `49`, the
//! shape clients have seen from AWS; clients compare them numerically.
//!
//! A shard iterator is an opaque base64 token: version, stream uid, shard index, the offset
//! to read from, and when it was issued (iterators expire after five minutes), protected
//! by a CRC so a mangled token is `InvalidArgumentException`, not a wrong read.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Added to log offsets to form sequence numbers.
pub const SEQUENCE_BASE: u128 = 49_000_000_000_000_000_000_000_000_000_000_000_000;

/// The sequence number of a log offset.
pub fn to_sequence(offset: u64) -> String {
    (SEQUENCE_BASE + u128::from(offset)).to_string()
}

/// Parses a sequence number into a log offset. `None` when it is not a decimal number or is
/// not one we could have issued.
pub fn parse_sequence(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 129 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: u128 = s.parse().ok()?;
    let off = v.checked_sub(SEQUENCE_BASE)?;
    u64::try_from(off).ok()
}

/// Whether `s` has the shape of a sequence number (`0|([1-9]\d{0,128})`).
pub fn is_sequence_shape(s: &str) -> bool {
    !s.is_empty() && s.len() <= 129 && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
}

/// How long an iterator stays valid.
pub const ITERATOR_TTL_MS: i64 = 300_000;

const TOKEN_VERSION: u8 = 1;

/// The decoded content of a shard iterator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IteratorToken {
    /// The stream's unique id (changes when a stream is deleted and created again).
    pub stream_uid: u128,
    /// The shard's index (`shardId-<index>`).
    pub shard: u32,
    /// The log offset to read from.
    pub offset: u64,
    /// When the iterator was issued, epoch ms.
    pub issued_ms: i64,
}

impl IteratorToken {
    /// The token as the opaque string clients hold.
    pub fn encode(&self) -> String {
        let mut b = Vec::with_capacity(41);
        b.push(TOKEN_VERSION);
        b.extend_from_slice(&self.stream_uid.to_be_bytes());
        b.extend_from_slice(&self.shard.to_be_bytes());
        b.extend_from_slice(&self.offset.to_be_bytes());
        b.extend_from_slice(&self.issued_ms.to_be_bytes());
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_be_bytes());
        STANDARD.encode(b)
    }

    /// Reads a token; `None` if it is not one of ours or was altered.
    pub fn decode(s: &str) -> Option<Self> {
        if s.len() > 512 {
            return None;
        }
        let b = STANDARD.decode(s.as_bytes()).ok()?;
        if b.len() != 41 || b[0] != TOKEN_VERSION {
            return None;
        }
        let (body, crc) = b.split_at(37);
        if crc32fast::hash(body).to_be_bytes() != crc {
            return None;
        }
        Some(Self {
            stream_uid: u128::from_be_bytes(body[1..17].try_into().ok()?),
            shard: u32::from_be_bytes(body[17..21].try_into().ok()?),
            offset: u64::from_be_bytes(body[21..29].try_into().ok()?),
            issued_ms: i64::from_be_bytes(body[29..37].try_into().ok()?),
        })
    }
}

/// `shardId-000000000007` for index 7.
pub fn shard_id(index: u32) -> String {
    format!("shardId-{index:012}")
}

/// The index of a shard id (`shardId-000000000007` → 7); also accepts the short forms AWS
/// accepts (`7`, `shardId-7`).
pub fn parse_shard_id(s: &str) -> Option<u32> {
    let digits = s.strip_prefix("shardId-").unwrap_or(s);
    if digits.is_empty() || digits.len() > 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_round_trip() {
        assert_eq!(to_sequence(0).len(), 38);
        assert!(to_sequence(0).starts_with("49"));
        assert_eq!(parse_sequence(&to_sequence(12345)), Some(12345));
        assert_eq!(parse_sequence("1"), None);
        assert_eq!(parse_sequence("abc"), None);
        assert!(to_sequence(9) < to_sequence(10));
    }

    #[test]
    fn iterator_tokens_detect_tampering() {
        let t = IteratorToken {
            stream_uid: 7,
            shard: 3,
            offset: 99,
            issued_ms: 1_700_000_000_000,
        };
        let s = t.encode();
        assert_eq!(IteratorToken::decode(&s), Some(t));
        let mut bad = s.into_bytes();
        bad[10] = if bad[10] == b'A' { b'B' } else { b'A' };
        assert_eq!(IteratorToken::decode(&String::from_utf8_lossy(&bad)), None);
        assert_eq!(IteratorToken::decode("not a token"), None);
    }

    #[test]
    fn shard_ids() {
        assert_eq!(shard_id(7), "shardId-000000000007");
        assert_eq!(parse_shard_id("shardId-000000000007"), Some(7));
        assert_eq!(parse_shard_id("7"), Some(7));
        assert_eq!(parse_shard_id("shardId-x"), None);
    }
}
