//! Validation of bucket notification configurations (PutBucketNotificationConfiguration),
//! as S3 does it before storing: known event names, `prefix`/`suffix` filter rules at most
//! once each, a well-formed function ARN, and no two configurations sharing an event type
//! with overlapping filters. Delivery to functions is the functions engine's job; the
//! configuration is stored as given.

use s3s::dto::{LambdaFunctionConfiguration, NotificationConfiguration};
use s3s::{S3Result, s3_error};

/// Event names S3 accepts in a configuration.
pub const EVENTS: &[&str] = &[
    "s3:ObjectCreated:*",
    "s3:ObjectCreated:Put",
    "s3:ObjectCreated:Post",
    "s3:ObjectCreated:Copy",
    "s3:ObjectCreated:CompleteMultipartUpload",
    "s3:ObjectRemoved:*",
    "s3:ObjectRemoved:Delete",
    "s3:ObjectRemoved:DeleteMarkerCreated",
    "s3:ObjectTagging:*",
    "s3:ObjectTagging:Put",
    "s3:ObjectTagging:Delete",
    "s3:ObjectRestore:*",
    "s3:ObjectRestore:Post",
    "s3:ObjectRestore:Completed",
    "s3:ObjectRestore:Delete",
    "s3:ReducedRedundancyLostObject",
    "s3:Replication:*",
    "s3:LifecycleExpiration:*",
    "s3:LifecycleTransition",
    "s3:IntelligentTiering",
    "s3:ObjectAcl:Put",
];

/// (prefix, suffix) of a configuration's key filter.
pub fn filter_of(c: &LambdaFunctionConfiguration) -> S3Result<(String, String)> {
    let mut prefix = None;
    let mut suffix = None;
    let rules = c
        .filter
        .as_ref()
        .and_then(|f| f.key.as_ref())
        .and_then(|k| k.filter_rules.as_ref());
    for r in rules.into_iter().flatten() {
        let name = r
            .name
            .as_ref()
            .map(|n| n.as_str().to_ascii_lowercase())
            .unwrap_or_default();
        let value = r.value.clone().unwrap_or_default();
        let slot = match name.as_str() {
            "prefix" => &mut prefix,
            "suffix" => &mut suffix,
            _ => {
                return Err(s3_error!(
                    InvalidArgument,
                    "filter rule name must be either prefix or suffix"
                ));
            }
        };
        if slot.is_some() {
            return Err(s3_error!(
                InvalidArgument,
                "Cannot specify more than one {name} rule in a filter."
            ));
        }
        *slot = Some(value);
    }
    Ok((prefix.unwrap_or_default(), suffix.unwrap_or_default()))
}

fn event_family(e: &str) -> &str {
    e.rsplit_once(':').map_or(e, |(family, _)| family)
}

fn events_overlap(a: &str, b: &str) -> bool {
    a == b || (event_family(a) == event_family(b) && (a.ends_with(":*") || b.ends_with(":*")))
}

fn valid_function_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.split(':').collect();
    parts.len() >= 7
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "lambda"
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5] == "function"
        && !parts[6].is_empty()
}

/// Checks a configuration as S3 would before storing it.
pub fn validate(cfg: &NotificationConfiguration) -> S3Result<()> {
    let lambdas = cfg.lambda_function_configurations.as_deref().unwrap_or_default();
    let mut seen: Vec<(Vec<String>, String, String)> = Vec::new();
    for c in lambdas {
        if !valid_function_arn(&c.lambda_function_arn) {
            return Err(s3_error!(InvalidArgument, "The ARN is not well formed"));
        }
        if c.events.is_empty() {
            return Err(s3_error!(
                MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema"
            ));
        }
        for e in &c.events {
            if !EVENTS.contains(&e.as_ref()) {
                return Err(s3_error!(
                    InvalidArgument,
                    "The event is not supported for notifications"
                ));
            }
        }
        let (prefix, suffix) = filter_of(c)?;
        let events: Vec<String> = c.events.iter().map(|e| e.as_ref().to_owned()).collect();
        for (other_events, op, os) in &seen {
            let shared = events.iter().any(|e| other_events.iter().any(|o| events_overlap(e, o)));
            let prefixes_overlap = prefix.starts_with(op.as_str()) || op.starts_with(prefix.as_str());
            let suffixes_overlap = suffix.ends_with(os.as_str()) || os.ends_with(suffix.as_str());
            if shared && prefixes_overlap && suffixes_overlap {
                return Err(s3_error!(
                    InvalidArgument,
                    "Configurations overlap. Configurations on the same bucket cannot share a common event type."
                ));
            }
        }
        seen.push((events, prefix, suffix));
    }
    Ok(())
}
