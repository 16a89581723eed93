//! Modeled-constraint checks shared by the awsJson adapters, reported as AWS does:
//! `ValidationException` with `N validation error(s) detected: Value '…' at '…' failed to
//! satisfy constraint: …`. Service-specific shapes (stream ARNs, sequence numbers, …) are
//! added by each adapter as extension traits over [`Validator`].

use crate::ServiceError;

/// Collects constraint violations of one request.
#[derive(Debug, Default)]
pub struct Validator {
    errors: Vec<String>,
}

fn shown(value: &str) -> String {
    // AWS echoes the value; keep the echo bounded.
    value.chars().take(256).collect()
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

    /// A resource name: `min..=max` characters of `[a-zA-Z0-9_.-]`.
    pub fn name(&mut self, v: Option<&str>, field: &str, min: usize, max: usize) {
        if let Some(v) = v {
            self.length(Some(v), field, min, max);
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

    /// A value that must satisfy `ok`, reported with the regular expression AWS models.
    pub fn pattern(&mut self, v: Option<&str>, field: &str, ok: impl FnOnce(&str) -> bool, regex: &str) {
        if let Some(v) = v
            && !ok(v)
        {
            self.fail(
                v,
                field,
                &format!("Member must satisfy regular expression pattern: {regex}"),
            );
        }
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

    /// Whether nothing has failed so far.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
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
        v.name(Some("bad name"), "deliveryStreamName", 1, 64);
        let e = v.finish().expect_err("invalid");
        assert_eq!(
            e.message,
            "1 validation error detected: Value 'bad name' at 'deliveryStreamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"
        );
        let mut v = Validator::default();
        v.required(&None::<String>, "x");
        v.range(Some(0), "limit", 1, 10);
        v.pattern(Some("a"), "p", |s| s == "b", "b");
        let e = v.finish().expect_err("invalid");
        assert!(
            e.message.starts_with("3 validation errors detected: Value null at 'x'"),
            "{}",
            e.message
        );
        assert!(e.message.ends_with("Member must satisfy regular expression pattern: b"));
    }
}
