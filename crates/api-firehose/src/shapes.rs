//! The modeled shapes Firehose checks (ARNs, file extensions, tag keys) and the prefix
//! expression rules of S3 destinations (`!{…}`), as plain functions.

use std::collections::BTreeMap;

/// `arn:.*:iam::\d{12}:role/[a-zA-Z_0-9+=,.@\-_/]+`.
pub const ROLE_ARN_RE: &str = "arn:.*:iam::\\d{12}:role/[a-zA-Z_0-9+=,.@\\-_/]+";
/// `arn:.*:s3:::[\w\.\-]{1,255}`.
pub const BUCKET_ARN_RE: &str = "arn:.*:s3:::[\\w\\.\\-]{1,255}";
/// `arn:.*:kinesis:[a-zA-Z0-9\-]+:\d{12}:stream/[a-zA-Z0-9_.-]+`.
pub const STREAM_ARN_RE: &str = "arn:.*:kinesis:[a-zA-Z0-9\\-]+:\\d{12}:stream/[a-zA-Z0-9_.-]+";
/// A Lambda function ARN, as a processor's `LambdaArn` must be.
pub const LAMBDA_ARN_RE: &str =
    "arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]+:\\d{12}:function:[a-zA-Z0-9-_]{1,64}(:(\\$LATEST|[a-zA-Z0-9-_]{1,128}))?";
/// `^$|\.[0-9a-z!\-_.*'()]+`.
pub const FILE_EXTENSION_RE: &str = "^$|\\.[0-9a-z!\\-_.*'()]+";

fn account_ok(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn name_ok(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// The partition of an ARN (`arn:<partition>:…`), any text without `:` here.
fn after_partition<'a>(arn: &'a str, service: &str) -> Option<&'a str> {
    let rest = arn.strip_prefix("arn:")?;
    let (_, rest) = rest.split_once(':')?;
    rest.strip_prefix(service)?.strip_prefix(':')
}

/// Whether `arn` is a role ARN.
pub fn is_role_arn(arn: &str) -> bool {
    let Some(rest) = after_partition(arn, "iam") else {
        return false;
    };
    let Some(rest) = rest.strip_prefix(':') else {
        return false;
    };
    let Some((account, res)) = rest.split_once(':') else {
        return false;
    };
    let Some(role) = res.strip_prefix("role/") else {
        return false;
    };
    account_ok(account)
        && !role.is_empty()
        && role
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@-_/".contains(&b))
}

/// The bucket of a bucket ARN.
pub fn bucket_of(arn: &str) -> Option<&str> {
    let bucket = after_partition(arn, "s3")?.strip_prefix("::")?;
    let ok =
        (1..=255).contains(&bucket.len()) && bucket.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    ok.then_some(bucket)
}

/// Whether `arn` is a Kinesis stream ARN.
pub fn is_stream_arn(arn: &str) -> bool {
    let Some(rest) = after_partition(arn, "kinesis") else {
        return false;
    };
    let Some((region, rest)) = rest.split_once(':') else {
        return false;
    };
    let Some((account, res)) = rest.split_once(':') else {
        return false;
    };
    let Some(name) = res.strip_prefix("stream/") else {
        return false;
    };
    !region.is_empty()
        && region.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && account_ok(account)
        && name_ok(name)
}

/// Whether `arn` is a Lambda function ARN:
/// `arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]` (name 1–64
/// `[a-zA-Z0-9-_]`, qualifier `$LATEST`, a version or an alias).
pub fn is_lambda_arn(arn: &str) -> bool {
    if !arn.starts_with("arn:aws") {
        return false;
    }
    let Some(rest) = after_partition(arn, "lambda") else {
        return false;
    };
    let mut parts = rest.splitn(4, ':');
    let (Some(region), Some(account), Some(kind), Some(tail)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let word = |s: &str, max: usize| {
        (1..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let (name, qualifier) = match tail.split_once(':') {
        Some((n, q)) => (n, Some(q)),
        None => (tail, None),
    };
    !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && account_ok(account)
        && kind == "function"
        && word(name, 64)
        && qualifier.is_none_or(|q| q == "$LATEST" || word(q, 128))
}

/// Whether `ext` is a valid `FileExtension`.
pub fn is_file_extension(ext: &str) -> bool {
    ext.is_empty()
        || ext.strip_prefix('.').is_some_and(|r| {
            !r.is_empty()
                && r.bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b"!-_.*'()".contains(&b))
        })
}

/// Whether `key` is a valid tag key: `^(?!aws:)[\p{L}\p{Z}\p{N}_.\/=+\-@%]*$`.
pub fn is_tag_key(key: &str) -> bool {
    !key.starts_with("aws:")
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || c.is_whitespace() || "_./=+-@%".contains(c))
}

/// One `!{namespace:value}` expression of a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// `!{timestamp:<pattern>}`.
    Timestamp,
    /// `!{firehose:random-string}`.
    RandomString,
    /// `!{firehose:error-output-type}`.
    ErrorOutputType,
    /// `!{partitionKeyFromQuery:<key>}`.
    FromQuery(String),
    /// `!{partitionKeyFromLambda:<key>}`.
    FromLambda(String),
}

/// The expressions of a prefix, or why it is not valid.
pub fn expressions(prefix: &str) -> Result<Vec<Expr>, String> {
    let mut out = Vec::new();
    let mut rest = prefix;
    while let Some(at) = rest.find("!{") {
        let after = &rest[at + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!(
                "The expression starting at '{}' is not closed with '}}'.",
                &rest[at..]
            ));
        };
        let body = &after[..end];
        let shown = format!("!{{{body}}}");
        let (ns, value) = body
            .split_once(':')
            .ok_or_else(|| format!("The expression '{shown}' is not valid."))?;
        let expr = match (ns, value) {
            ("timestamp", p) if !p.is_empty() => Expr::Timestamp,
            ("firehose", "random-string") => Expr::RandomString,
            ("firehose", "error-output-type") => Expr::ErrorOutputType,
            ("partitionKeyFromQuery", k) if !k.is_empty() => Expr::FromQuery(k.to_owned()),
            ("partitionKeyFromLambda", k) if !k.is_empty() => Expr::FromLambda(k.to_owned()),
            _ => return Err(format!("The expression '{shown}' is not valid.")),
        };
        out.push(expr);
        rest = &after[end + 1..];
    }
    Ok(out)
}

/// Parses a `MetadataExtractionQuery` such as `{customer_id:.customer_id,device:.device.id}`
/// into key → query; each query a path of object members (`.a`, `.a.b`).
pub fn metadata_queries(q: &str) -> Result<BTreeMap<String, String>, String> {
    let bad = || {
        format!(
            "MetadataExtractionQuery '{q}' is not supported: kinesis-data evaluates queries of the form {{key:.field[.field…], …}}."
        )
    };
    let inner = q
        .trim()
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .ok_or_else(bad)?;
    let mut out = BTreeMap::new();
    for part in inner.split(',') {
        let (k, path) = part.split_once(':').ok_or_else(bad)?;
        let (k, path) = (k.trim(), path.trim());
        let path_ok = path.strip_prefix('.').is_some_and(|p| {
            p.split('.')
                .all(|seg| !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
        });
        if k.is_empty() || !path_ok {
            return Err(bad());
        }
        out.insert(k.to_owned(), path.to_owned());
    }
    if out.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns() {
        assert!(is_role_arn("arn:aws:iam::000000000000:role/firehose"));
        assert!(is_role_arn("arn:aws:iam::000000000000:role/path/x"));
        assert!(!is_role_arn("arn:aws:iam::0000:role/x"));
        assert!(!is_role_arn("arn:aws:iam::000000000000:user/x"));
        assert_eq!(bucket_of("arn:aws:s3:::my-bucket"), Some("my-bucket"));
        assert_eq!(bucket_of("arn:aws:s3:::"), None);
        assert_eq!(bucket_of("my-bucket"), None);
        assert!(is_stream_arn("arn:aws:kinesis:us-east-1:000000000000:stream/s"));
        assert!(!is_stream_arn("arn:aws:kinesis:us-east-1:000000000000:stream/"));
        assert!(is_lambda_arn("arn:aws:lambda:us-east-1:000000000000:function:f"));
        assert!(is_lambda_arn(
            "arn:aws:lambda:eu-west-1:000000000000:function:my_fn-2:$LATEST"
        ));
        assert!(is_lambda_arn("arn:aws:lambda:eu-west-1:000000000000:function:f:7"));
        assert!(is_lambda_arn(
            "arn:aws-cn:lambda:cn-north-1:000000000000:function:f:live"
        ));
        assert!(!is_lambda_arn("arn:aws:lambda:us-east-1:000000000000:function:"));
        assert!(!is_lambda_arn("arn:aws:lambda:us-east-1:0000:function:f"));
        assert!(!is_lambda_arn("arn:aws:lambda:us-east-1:000000000000:layer:f"));
        assert!(!is_lambda_arn("arn:aws:lambda:us-east-1:000000000000:function:f:a:b"));
        assert!(!is_lambda_arn("arn:aws:lambda::000000000000:function:f"));
        assert!(!is_lambda_arn("arn:aws:s3:::b"));
        assert!(!is_lambda_arn("f"));
        assert!(!is_lambda_arn(&format!(
            "arn:aws:lambda:us-east-1:000000000000:function:{}",
            "x".repeat(65)
        )));
    }

    #[test]
    fn extensions_and_tags() {
        assert!(is_file_extension(""));
        assert!(is_file_extension(".json.gz"));
        assert!(!is_file_extension("json"));
        assert!(!is_file_extension(".JSON"));
        assert!(is_tag_key("team name"));
        assert!(!is_tag_key("aws:x"));
        assert!(!is_tag_key("a#b"));
    }

    #[test]
    fn prefix_expressions() {
        assert_eq!(
            expressions("a/!{timestamp:yyyy}/!{firehose:random-string}/"),
            Ok(vec![Expr::Timestamp, Expr::RandomString])
        );
        assert_eq!(
            expressions("!{partitionKeyFromQuery:c}"),
            Ok(vec![Expr::FromQuery("c".into())])
        );
        assert!(expressions("!{nope:x}").is_err());
        assert!(expressions("a!{timestamp:yyyy").is_err());
        assert_eq!(expressions("plain/"), Ok(vec![]));
    }

    #[test]
    fn metadata_query_parsing() {
        let q = metadata_queries("{customer_id:.customer_id, d:.device.id}").expect("valid");
        assert_eq!(q.get("customer_id").map(String::as_str), Some(".customer_id"));
        assert_eq!(q.get("d").map(String::as_str), Some(".device.id"));
        assert!(metadata_queries("{a:.b | ascii}").is_err());
        assert!(metadata_queries("a:.b").is_err());
    }
}
