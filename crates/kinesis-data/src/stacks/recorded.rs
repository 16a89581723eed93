//! Types recorded without a service behind them, so that templates declaring them deploy
//! (`cdk bootstrap`'s own template: its container assets repository and, with
//! `--bootstrap-customer-key`, its KMS key and alias). Their `Ref` and `Fn::GetAtt` values
//! are the ones AWS documents, so templates and outputs that read them work; nothing can
//! use them (there is no ECR registry and no KMS here).

use kd_stacks::{ProvisionError, Provisioned, ResourceRequest};
use serde_json::{Value, json};

use super::{generated_name, invalid, s};

/// `AWS::ECR::Repository`.
pub(super) const ECR_REPOSITORY: &str = "AWS::ECR::Repository";
/// `AWS::KMS::Key`.
pub(super) const KMS_KEY: &str = "AWS::KMS::Key";
/// `AWS::KMS::Alias`.
pub(super) const KMS_ALIAS: &str = "AWS::KMS::Alias";

/// Whether `t` is one of the recorded types.
pub(super) fn is_recorded(t: &str) -> bool {
    matches!(t, ECR_REPOSITORY | KMS_KEY | KMS_ALIAS)
}

/// "Update requires: Replacement" per the types' AWS documentation.
pub(super) fn replaces(t: &str, old: &Value, new: &Value) -> bool {
    let differs = |k: &str| old.get(k) != new.get(k);
    match t {
        ECR_REPOSITORY => differs("RepositoryName"),
        KMS_KEY => differs("KeySpec") || differs("MultiRegion") || differs("KeyUsage"),
        KMS_ALIAS => differs("AliasName"),
        _ => false,
    }
}

/// A repository name as ECR allows it (lowercase, 2–256 characters of `a-z0-9._/-`).
fn repository_name(name: &str) -> Result<(), ProvisionError> {
    let ok = (2..=256).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._/-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "Resource handler returned message: \"Invalid parameter at 'repositoryName' failed to satisfy constraint: 'must satisfy regular expression '(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*''\" (RequestToken: {name})"
        )))
    }
}

/// Makes (records) one resource; `physical` is the existing id on an update.
pub(super) fn provision(r: &ResourceRequest<'_>, physical: Option<&str>) -> Result<Provisioned, ProvisionError> {
    let stack = r.stack;
    let p = r.properties;
    let (partition, region, account) = (stack.partition(), &stack.region, &stack.account_id);
    match r.resource_type {
        ECR_REPOSITORY => {
            let name = match physical {
                Some(name) => name.to_owned(),
                None => {
                    s(p, "RepositoryName").unwrap_or_else(|| generated_name(&stack.stack_name, r.logical_id, 256, true))
                }
            };
            repository_name(&name)?;
            Ok(Provisioned::named(
                name.clone(),
                [
                    (
                        "Arn".to_owned(),
                        json!(format!("arn:{partition}:ecr:{region}:{account}:repository/{name}")),
                    ),
                    (
                        "RepositoryUri".to_owned(),
                        json!(format!("{account}.dkr.ecr.{region}.amazonaws.com/{name}")),
                    ),
                ],
            ))
        }
        KMS_KEY => {
            let id = physical
                .map(str::to_owned)
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            Ok(Provisioned::named(
                id.clone(),
                [
                    (
                        "Arn".to_owned(),
                        json!(format!("arn:{partition}:kms:{region}:{account}:key/{id}")),
                    ),
                    ("KeyId".to_owned(), json!(id)),
                ],
            ))
        }
        KMS_ALIAS => {
            let name = s(p, "AliasName").ok_or_else(|| invalid("Property AliasName cannot be empty."))?;
            if !name.starts_with("alias/") || name.starts_with("alias/aws/") {
                return Err(invalid(format!(
                    "Resource handler returned message: \"Alias must start with the prefix \\\"alias/\\\" and may not begin with \\\"alias/aws/\\\": {name}\""
                )));
            }
            s(p, "TargetKeyId").ok_or_else(|| invalid("Property TargetKeyId cannot be empty."))?;
            Ok(Provisioned::named(name, []))
        }
        other => Err(ProvisionError::Unsupported(other.to_owned())),
    }
}
