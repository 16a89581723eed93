//! Modeled-constraint checks, reported as AWS does: `ValidationException` with
//! `N validation error(s) detected: Value '…' at '…' failed to satisfy constraint: …`.
//! The generic [`Validator`] lives in `kd-wire`; the Kinesis shapes are [`KinesisChecks`].

pub use kd_wire::validate::Validator;

/// The Kinesis member shapes.
pub trait KinesisChecks {
    /// A stream name: 1–128 of `[a-zA-Z0-9_.-]`.
    fn stream_name(&mut self, v: Option<&str>, field: &str);
    /// A stream ARN: 1–2048 matching `arn:aws.*:kinesis:.*:\d{12}:stream/\S+`.
    fn stream_arn(&mut self, v: Option<&str>, field: &str);
    /// A shard id: 1–128 of `[a-zA-Z0-9_.-]`, the same shape as a stream name.
    fn shard_id(&mut self, v: Option<&str>, field: &str);
    /// A decimal hash key: `0|([1-9]\d{0,38})`.
    fn hash_key_pattern(&mut self, v: Option<&str>, field: &str);
    /// A sequence number: `0|([1-9]\d{0,128})`.
    fn sequence_pattern(&mut self, v: Option<&str>, field: &str);
}

impl KinesisChecks for Validator {
    fn stream_name(&mut self, v: Option<&str>, field: &str) {
        self.name(v, field, 1, 128);
    }

    fn stream_arn(&mut self, v: Option<&str>, field: &str) {
        self.length(v, field, 1, 2048);
        self.pattern(
            v,
            field,
            |v| kd_stream::parse_stream_arn(v).is_some(),
            "arn:aws.*:kinesis:.*:\\d{12}:stream/\\S+",
        );
    }

    fn shard_id(&mut self, v: Option<&str>, field: &str) {
        self.stream_name(v, field);
    }

    fn hash_key_pattern(&mut self, v: Option<&str>, field: &str) {
        self.pattern(
            v,
            field,
            |v| {
                v == "0"
                    || (!v.is_empty() && v.len() <= 39 && !v.starts_with('0') && v.bytes().all(|b| b.is_ascii_digit()))
            },
            "0|([1-9]\\d{0,38})",
        );
    }

    fn sequence_pattern(&mut self, v: Option<&str>, field: &str) {
        self.pattern(v, field, kd_stream::seq::is_sequence_shape, "0|([1-9]\\d{0,128})");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_aws_shape() {
        let mut v = Validator::default();
        v.stream_name(Some("bad name"), "streamName");
        let e = v.finish().expect_err("invalid");
        assert_eq!(
            e.message,
            "1 validation error detected: Value 'bad name' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"
        );
        let mut v = Validator::default();
        v.required(&None::<String>, "shardId");
        v.range(Some(0), "limit", 1, 10000);
        let e = v.finish().expect_err("invalid");
        assert!(
            e.message
                .starts_with("2 validation errors detected: Value null at 'shardId'"),
            "{}",
            e.message
        );
    }
}
