//! Validation of bucket notification configurations (PutBucketNotificationConfiguration),
//! as S3 does it before storing: known event names, `prefix`/`suffix` filter rules at most
//! once each, a well-formed function ARN, and no two configurations sharing an event type
//! with overlapping filters; and, through [`DestinationCheck`], that each function exists
//! and lets S3 invoke it. The configuration is stored as given; [`lambda_targets`] and
//! [`LambdaTarget::matches`] read it back for the notification dispatcher.

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

/// Checks a notification destination as S3 does when a configuration is stored.
pub trait DestinationCheck: Send + Sync + 'static {
    /// `Ok` when `function_arn` exists and its resource policy lets `s3.amazonaws.com`
    /// invoke it for `bucket` (owned by `bucket_owner`); otherwise why not.
    fn check_function(&self, function_arn: &str, bucket: &str, bucket_owner: &str) -> Result<(), String>;
}

/// One function destination of a stored configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LambdaTarget {
    /// The configuration's `Id` (the event's `configurationId`).
    pub id: String,
    /// The function ARN.
    pub function_arn: String,
    /// Event types (`s3:ObjectCreated:*`, …).
    pub events: Vec<String>,
    /// Key prefix filter.
    pub prefix: String,
    /// Key suffix filter.
    pub suffix: String,
}

impl LambdaTarget {
    /// Whether an event named `event_name` (`ObjectCreated:Put`) on `key` goes to this target.
    pub fn matches(&self, event_name: &str, key: &str) -> bool {
        let full = format!("s3:{event_name}");
        let family = full.rsplit_once(':').map_or(full.as_str(), |(f, _)| f);
        let event_ok = self
            .events
            .iter()
            .any(|e| *e == full || e.strip_suffix(":*").is_some_and(|f| f == family));
        event_ok && key.starts_with(&self.prefix) && key.ends_with(&self.suffix)
    }
}

/// The function destinations of a configuration stored by PutBucketNotificationConfiguration.
pub fn lambda_targets(stored: &str) -> Vec<LambdaTarget> {
    let Ok(cfg) = serde_json::from_str::<NotificationConfiguration>(stored) else {
        return Vec::new();
    };
    cfg.lambda_function_configurations
        .unwrap_or_default()
        .iter()
        .filter_map(|c| {
            let (prefix, suffix) = filter_of(c).ok()?;
            Some(LambdaTarget {
                id: c.id.clone().unwrap_or_else(|| "notification".to_owned()),
                function_arn: c.lambda_function_arn.clone(),
                events: c.events.iter().map(|e| e.as_ref().to_owned()).collect(),
                prefix,
                suffix,
            })
        })
        .collect()
}

#[cfg(test)]
mod target_tests {
    use super::*;

    #[test]
    fn targets_match_events_and_filters() {
        let t = LambdaTarget {
            id: "c".into(),
            function_arn: "arn:aws:lambda:us-east-1:000000000000:function:f".into(),
            events: vec!["s3:ObjectCreated:*".into()],
            prefix: "raw/".into(),
            suffix: ".gz".into(),
        };
        assert!(t.matches("ObjectCreated:Put", "raw/a.gz"));
        assert!(t.matches("ObjectCreated:CompleteMultipartUpload", "raw/b.gz"));
        assert!(!t.matches("ObjectRemoved:Delete", "raw/a.gz"));
        assert!(!t.matches("ObjectCreated:Put", "other/a.gz"));
        assert!(!t.matches("ObjectCreated:Put", "raw/a.txt"));
        let exact = LambdaTarget {
            events: vec!["s3:ObjectRemoved:Delete".into()],
            prefix: String::new(),
            suffix: String::new(),
            ..t
        };
        assert!(exact.matches("ObjectRemoved:Delete", "x"));
        assert!(!exact.matches("ObjectCreated:Put", "x"));
    }
}
