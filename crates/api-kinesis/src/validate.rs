//! Modeled-constraint checks, reported as AWS does: `ValidationException` with
//! `N validation error(s) detected: Value '…' at '…' failed to satisfy constraint: …`.

use kd_wire::ServiceError;

/// Collects constraint violations of one request.
#[derive(Default)]
pub struct Validator {
    errors: Vec<String>,
}

fn shown(value: &str) -> String {
    // AWS echoes the value; keep the echo bounded.
    let v: String = value.chars().take(256).collect();
    v
}

impl Validator {
    /// A violation with the value echoed.
    pub fn fail(&mut self, value: &str, field: &str, constraint: &str) {
        self.errors.push(format!(
            "Value '{}' at '{field}' failed to satisfy constraint: {constraint}",
            shown(value)
        ));
    }

    /// A violation without the value (blobs, nulls).
    pub fn fail_no_value(&mut self, field: &str, constraint: &str) {
        self.errors
            .push(format!("Value at '{field}' failed to satisfy constraint: {constraint}"));
    }

    /// Required member.
    pub fn required<T>(&mut self, v: &Option<T>, field: &str) {
        if v.is_none() {
            self.errors.push(format!(
                "Value null at '{field}' failed to satisfy constraint: Member must not be null"
            ));
        }
    }

    /// String length in characters.
    pub fn length(&mut self, v: Option<&str>, field: &str, min: usize, max: usize) {
        if let Some(v) = v {
            let n = v.chars().count();
            if n < min {
                self.fail(
                    v,
                    field,
                    &format!("Member must have length greater than or equal to {min}"),
                );
            } else if n > max {
                self.fail(
                    v,
                    field,
                    &format!("Member must have length less than or equal to {max}"),
                );
            }
        }
    }

    /// A stream name: 1–128 of `[a-zA-Z0-9_.-]`.
    pub fn stream_name(&mut self, v: Option<&str>, field: &str) {
        if let Some(v) = v {
            self.length(Some(v), field, 1, 128);
            if !v.is_empty()
                && !v
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
            {
                self.fail(
                    v,
                    field,
                    "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+",
                );
            }
        }
    }

    /// A stream ARN: 1–2048 matching `arn:aws.*:kinesis:.*:\d{12}:stream/\S+`.
    pub fn stream_arn(&mut self, v: Option<&str>, field: &str) {
        if let Some(v) = v {
            self.length(Some(v), field, 1, 2048);
            if kd_stream::parse_stream_arn(v).is_none() {
                self.fail(
                    v,
                    field,
                    "Member must satisfy regular expression pattern: arn:aws.*:kinesis:.*:\\d{12}:stream/\\S+",
                );
            }
        }
    }

    /// A shard id: 1–128 of `[a-zA-Z0-9_.-]`, the same shape as a stream name.
    pub fn shard_id(&mut self, v: Option<&str>, field: &str) {
        self.stream_name(v, field);
    }

    /// An integer range.
    pub fn range(&mut self, v: Option<i64>, field: &str, min: i64, max: i64) {
        if let Some(v) = v {
            if v < min {
                self.fail(
                    &v.to_string(),
                    field,
                    &format!("Member must have value greater than or equal to {min}"),
                );
            } else if v > max {
                self.fail(
                    &v.to_string(),
                    field,
                    &format!("Member must have value less than or equal to {max}"),
                );
            }
        }
    }

    /// A decimal hash key: `0|([1-9]\d{0,38})`.
    pub fn hash_key_pattern(&mut self, v: Option<&str>, field: &str) {
        if let Some(v) = v {
            let ok = v == "0"
                || (!v.is_empty() && v.len() <= 39 && !v.starts_with('0') && v.bytes().all(|b| b.is_ascii_digit()));
            if !ok {
                self.fail(
                    v,
                    field,
                    "Member must satisfy regular expression pattern: 0|([1-9]\\d{0,38})",
                );
            }
        }
    }

    /// A sequence number: `0|([1-9]\d{0,128})`.
    pub fn sequence_pattern(&mut self, v: Option<&str>, field: &str) {
        if let Some(v) = v
            && !kd_stream::seq::is_sequence_shape(v)
        {
            self.fail(
                v,
                field,
                "Member must satisfy regular expression pattern: 0|([1-9]\\d{0,128})",
            );
        }
    }

    /// One of the enum's values.
    pub fn one_of(&mut self, v: Option<&str>, field: &str, allowed: &[&str]) {
        if let Some(v) = v
            && !allowed.contains(&v)
        {
            self.fail(
                v,
                field,
                &format!("Member must satisfy enum value set: [{}]", allowed.join(", ")),
            );
        }
    }

    /// The ValidationException, if anything failed.
    pub fn finish(self) -> Result<(), ServiceError> {
        match self.errors.len() {
            0 => Ok(()),
            n => Err(ServiceError::client(
                "ValidationException",
                format!(
                    "{n} validation error{} detected: {}",
                    if n == 1 { "" } else { "s" },
                    self.errors.join("; ")
                ),
            )),
        }
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
