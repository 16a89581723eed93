//! Hash keys: the MD5 of a partition key read as a big-endian 128-bit integer, and the
//! even split of the key space into N shards.

use md5::{Digest, Md5};

/// The largest hash key, `2^128 - 1`.
pub const MAX_HASH_KEY: u128 = u128::MAX;

/// The hash key of a partition key.
pub fn hash_key(partition_key: &str) -> u128 {
    let digest = Md5::digest(partition_key.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest);
    u128::from_be_bytes(bytes)
}

/// Parses a decimal hash key (`ExplicitHashKey`, `NewStartingHashKey`): `None` unless it is a
/// decimal integer in `[0, 2^128 - 1]`.
pub fn parse_hash_key(s: &str) -> Option<u128> {
    if s.is_empty() || s.len() > 39 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u128>().ok()
}

/// The inclusive ranges of `n` evenly split shards: width `floor(2^128 / n)`, the last one
/// ending at `2^128 - 1`.
pub fn uniform_ranges(n: u32) -> Vec<(u128, u128)> {
    let n128 = u128::from(n.max(1));
    if n128 == 1 {
        return vec![(0, MAX_HASH_KEY)];
    }
    // floor((MAX + 1) / n) without overflowing (n >= 2, so it is at most 2^127).
    let width = MAX_HASH_KEY / n128 + u128::from(MAX_HASH_KEY % n128 == n128 - 1);
    (0..n128)
        .map(|i| {
            let start = i * width;
            let end = if i + 1 == n128 {
                MAX_HASH_KEY
            } else {
                (i + 1) * width - 1
            };
            (start, end)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_big_endian() {
        // md5("a") = 0cc175b9c0f1b6a831c399e269772661
        assert_eq!(hash_key("a"), 0x0cc1_75b9_c0f1_b6a8_31c3_99e2_6977_2661);
    }

    #[test]
    fn ranges_cover_the_key_space() {
        for n in [1u32, 2, 3, 4, 7, 10, 64] {
            let r = uniform_ranges(n);
            assert_eq!(r.len() as u32, n);
            assert_eq!(r[0].0, 0);
            assert_eq!(r[r.len() - 1].1, MAX_HASH_KEY);
            for w in r.windows(2) {
                assert_eq!(w[0].1 + 1, w[1].0);
            }
        }
        assert_eq!(uniform_ranges(2)[0].1, 170141183460469231731687303715884105727);
        assert_eq!(uniform_ranges(4)[1].0, 85070591730234615865843651857942052864);
    }

    #[test]
    fn hash_key_parsing() {
        assert_eq!(parse_hash_key("0"), Some(0));
        assert_eq!(
            parse_hash_key("340282366920938463463374607431768211455"),
            Some(MAX_HASH_KEY)
        );
        assert_eq!(parse_hash_key("340282366920938463463374607431768211456"), None);
        assert_eq!(parse_hash_key("-1"), None);
        assert_eq!(parse_hash_key(""), None);
    }
}
