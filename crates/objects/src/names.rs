//! S3 naming and tagging rules.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// Maximum key length in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// Checks S3's bucket naming rules (general purpose buckets).
pub fn validate_bucket_name(name: &str) -> Result<()> {
    let bad = || Error::InvalidBucketName {
        bucket: name.to_string(),
    };
    let bytes = name.as_bytes();
    if !(3..=63).contains(&bytes.len()) {
        return Err(bad());
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'.' || *b == b'-')
    {
        return Err(bad());
    }
    let edge_ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !edge_ok(bytes[0]) || !edge_ok(bytes[bytes.len() - 1]) {
        return Err(bad());
    }
    if name.contains("..") || name.contains(".-") || name.contains("-.") {
        return Err(bad());
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err(bad());
    }
    const PREFIXES: [&str; 3] = ["xn--", "sthree-", "amzn-s3-demo-"];
    const SUFFIXES: [&str; 5] = ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"];
    if PREFIXES.iter().any(|p| name.starts_with(p)) || SUFFIXES.iter().any(|s| name.ends_with(s)) {
        return Err(bad());
    }
    Ok(())
}

/// Checks an object key: 1..=1024 bytes.
pub fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::InvalidArgument("The object key must not be empty".into()));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(Error::KeyTooLong { len: key.len() });
    }
    Ok(())
}

/// Checks a tag set: at most `max` tags, keys 1..=128 and values 0..=256 characters, no
/// `aws:` prefix.
pub fn validate_tags(tags: &BTreeMap<String, String>, max: usize) -> Result<()> {
    if tags.len() > max {
        return Err(Error::InvalidTag(format!("Object tags cannot be greater than {max}")));
    }
    for (k, v) in tags {
        let klen = k.chars().count();
        if klen == 0 || klen > 128 {
            return Err(Error::InvalidTag("The TagKey you have provided is invalid".into()));
        }
        if v.chars().count() > 256 {
            return Err(Error::InvalidTag("The TagValue you have provided is invalid".into()));
        }
        if k.starts_with("aws:") {
            return Err(Error::InvalidTag("Your TagKey cannot be prefixed with aws:".into()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names() {
        for ok in ["abc", "my-bucket.1", "a".repeat(63).as_str(), "1bucket", "b-1.x"] {
            assert!(validate_bucket_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            &"a".repeat(64),
            "My-Bucket",
            "my_bucket",
            "-abc",
            "abc-",
            ".abc",
            "a..b",
            "a.-b",
            "192.168.5.4",
            "xn--abc",
            "sthree-x",
            "abc-s3alias",
            "abc--ol-s3",
            "bücket",
            "a b c",
        ] {
            assert!(
                matches!(validate_bucket_name(bad), Err(Error::InvalidBucketName { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn keys_and_tags() {
        assert!(validate_key("a").is_ok());
        assert!(validate_key(&"é".repeat(512)).is_ok());
        assert!(matches!(
            validate_key(&"é".repeat(513)),
            Err(Error::KeyTooLong { len: 1026 })
        ));
        assert!(matches!(validate_key(""), Err(Error::InvalidArgument(_))));
        let mut t = BTreeMap::new();
        for i in 0..10 {
            t.insert(format!("k{i}"), "v".repeat(256));
        }
        assert!(validate_tags(&t, 10).is_ok());
        t.insert("k10".into(), String::new());
        assert!(matches!(validate_tags(&t, 10), Err(Error::InvalidTag(_))));
        assert!(validate_tags(&t, 50).is_ok());
        let one = |k: String, v: String| BTreeMap::from([(k, v)]);
        assert!(validate_tags(&one("k".repeat(128), String::new()), 10).is_ok());
        assert!(validate_tags(&one("k".repeat(129), String::new()), 10).is_err());
        assert!(validate_tags(&one(String::new(), "v".into()), 10).is_err());
        assert!(validate_tags(&one("k".into(), "v".repeat(257)), 10).is_err());
        assert!(validate_tags(&one("aws:x".into(), "v".into()), 10).is_err());
    }
}
