//! IAM providers: the helpers of `AWS::IAM::Role` (its inline and managed policies, its
//! deletion), `AWS::IAM::Policy` (inline policies of roles and users) and
//! `AWS::IAM::ManagedPolicy` (customer managed policies, attached to roles and users). The
//! IAM engine has no groups: `Groups` fails the resource.

use std::collections::{BTreeMap, BTreeSet};

use kd_stacks::{ProvisionError, Provisioned, ResourceRequest};
use serde_json::{Value, json};

use super::{IAM_VERSION, document, failed, generated_name, invalid, is_missing, list, s, strings};
use crate::client::Client;

fn no_groups(kind: &str, p: &Value) -> Result<(), ProvisionError> {
    if list(p, "Groups").is_empty() {
        Ok(())
    } else {
        Err(invalid(format!(
            "{kind} Groups are not supported by kinesis-data: its IAM has no groups (Roles and Users are)"
        )))
    }
}

/// Checks an `AWS::IAM::Policy`'s properties.
pub(super) fn check_policy_targets(p: &Value) -> Result<(), ProvisionError> {
    no_groups("AWS::IAM::Policy", p)?;
    if s(p, "PolicyName").is_none() || p.get("PolicyDocument").is_none() {
        return Err(invalid("Properties PolicyName and PolicyDocument are required."));
    }
    if list(p, "Roles").is_empty() && list(p, "Users").is_empty() {
        return Err(invalid("At least one of [Groups,Roles,Users] must be non-empty."));
    }
    Ok(())
}

/// The holders of an inline policy: (holder kind, name), for `PutRolePolicy` /
/// `PutUserPolicy`.
fn holders(p: &Value) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = strings(p, "Roles").into_iter().map(|r| ("Role", r)).collect();
    out.extend(strings(p, "Users").into_iter().map(|u| ("User", u)));
    out
}

async fn delete_inline(c: &Client, kind: &str, holder: &str, name: &str) -> Result<(), ProvisionError> {
    let holder_key = format!("{kind}Name");
    match c
        .query(
            "iam",
            IAM_VERSION,
            &format!("Delete{kind}Policy"),
            &[(holder_key.as_str(), holder), ("PolicyName", name)],
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_missing(&e) => Ok(()),
        Err(e) => Err(failed(e)),
    }
}

/// Puts the policy on its roles and users and takes the old one off those (or names) it
/// left.
pub(super) async fn put_policy(c: &Client, p: &Value, old: &Value) -> Result<(), ProvisionError> {
    let name = s(p, "PolicyName").unwrap_or_default();
    let doc = document(p.get("PolicyDocument")).unwrap_or_default();
    let want = holders(p);
    for (kind, holder) in &want {
        let holder_key = format!("{kind}Name");
        c.query(
            "iam",
            IAM_VERSION,
            &format!("Put{kind}Policy"),
            &[
                (holder_key.as_str(), holder),
                ("PolicyName", &name),
                ("PolicyDocument", &doc),
            ],
        )
        .await
        .map_err(failed)?;
    }
    let old_name = s(old, "PolicyName").unwrap_or_default();
    for (kind, holder) in holders(old) {
        if old_name != name || !want.iter().any(|(k, h)| *k == kind && *h == holder) {
            delete_inline(c, kind, &holder, &old_name).await?;
        }
    }
    Ok(())
}

/// Deletes an `AWS::IAM::Policy` from every holder.
pub(super) async fn delete_policy(c: &Client, p: &Value) -> Result<(), ProvisionError> {
    let name = s(p, "PolicyName").unwrap_or_default();
    for (kind, holder) in holders(p) {
        delete_inline(c, kind, &holder, &name).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------- ManagedPolicy

/// `ManagedPolicyName`, `Path` and `Description` can only be set when the policy is made.
pub(super) fn managed_replaces(old: &Value, new: &Value) -> bool {
    ["ManagedPolicyName", "Path", "Description"]
        .iter()
        .any(|k| old.get(*k) != new.get(*k))
}

fn managed_provisioned(policy: &crate::client::Node) -> Provisioned {
    let text = |k: &str| policy.text_of(k).unwrap_or_default().to_owned();
    let arn = text("Arn");
    Provisioned::named(
        arn.clone(),
        [
            ("PolicyArn".to_owned(), json!(arn)),
            ("PolicyId".to_owned(), json!(text("PolicyId"))),
            ("DefaultVersionId".to_owned(), json!(text("DefaultVersionId"))),
            ("IsAttachable".to_owned(), json!(text("IsAttachable") != "false")),
            (
                "AttachmentCount".to_owned(),
                json!(text("AttachmentCount").parse::<u64>().unwrap_or(0)),
            ),
            ("CreateDate".to_owned(), json!(text("CreateDate"))),
            ("UpdateDate".to_owned(), json!(text("UpdateDate"))),
        ],
    )
}

/// Attaches the policy to the roles and users of `p` it was not attached to under `old`,
/// and detaches it from those it left.
async fn attachments(c: &Client, arn: &str, p: &Value, old: &Value) -> Result<(), ProvisionError> {
    let set = |v: &Value| -> BTreeSet<(&'static str, String)> {
        let mut out: BTreeSet<(&'static str, String)> = strings(v, "Roles").into_iter().map(|r| ("Role", r)).collect();
        out.extend(strings(v, "Users").into_iter().map(|u| ("User", u)));
        out
    };
    let (want, had) = (set(p), set(old));
    for (kind, holder) in want.difference(&had) {
        let holder_key = format!("{kind}Name");
        c.query(
            "iam",
            IAM_VERSION,
            &format!("Attach{kind}Policy"),
            &[(holder_key.as_str(), holder), ("PolicyArn", arn)],
        )
        .await
        .map_err(failed)?;
    }
    for (kind, holder) in had.difference(&want) {
        let holder_key = format!("{kind}Name");
        match c
            .query(
                "iam",
                IAM_VERSION,
                &format!("Detach{kind}Policy"),
                &[(holder_key.as_str(), holder), ("PolicyArn", arn)],
            )
            .await
        {
            Ok(_) => {}
            Err(e) if is_missing(&e) => {}
            Err(e) => return Err(failed(e)),
        }
    }
    Ok(())
}

/// Creates an `AWS::IAM::ManagedPolicy`.
pub(super) async fn create_managed(c: &Client, r: &ResourceRequest<'_>) -> Result<Provisioned, ProvisionError> {
    let p = r.properties;
    no_groups("AWS::IAM::ManagedPolicy", p)?;
    let doc = document(p.get("PolicyDocument")).ok_or_else(|| invalid("Property PolicyDocument cannot be empty."))?;
    let name =
        s(p, "ManagedPolicyName").unwrap_or_else(|| generated_name(&r.stack.stack_name, r.logical_id, 128, false));
    let mut params = vec![("PolicyName", name), ("PolicyDocument", doc)];
    for k in ["Path", "Description"] {
        if let Some(v) = s(p, k) {
            params.push((k, v));
        }
    }
    let all: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let made = c
        .query("iam", IAM_VERSION, "CreatePolicy", &all)
        .await
        .map_err(failed)?;
    let policy = made
        .find("Policy")
        .ok_or_else(|| invalid("CreatePolicy answered without a Policy"))?;
    let arn = policy.text_of("Arn").unwrap_or_default().to_owned();
    if let Err(e) = attachments(c, &arn, p, &Value::Null).await {
        let _ = delete_managed(c, &arn, p).await;
        return Err(e);
    }
    Ok(managed_provisioned(policy))
}

/// Updates a managed policy in place: a new default version for a new document (the oldest
/// non-default version is deleted first when there are five), and its attachments.
pub(super) async fn update_managed(
    c: &Client,
    arn: &str,
    p: &Value,
    old: &Value,
) -> Result<Provisioned, ProvisionError> {
    no_groups("AWS::IAM::ManagedPolicy", p)?;
    if p.get("PolicyDocument") != old.get("PolicyDocument") {
        let doc =
            document(p.get("PolicyDocument")).ok_or_else(|| invalid("Property PolicyDocument cannot be empty."))?;
        let versions = policy_versions(c, arn).await?;
        if versions.len() >= 5
            && let Some((oldest, _)) = versions.iter().find(|(_, default)| !default)
        {
            c.query(
                "iam",
                IAM_VERSION,
                "DeletePolicyVersion",
                &[("PolicyArn", arn), ("VersionId", oldest)],
            )
            .await
            .map_err(failed)?;
        }
        c.query(
            "iam",
            IAM_VERSION,
            "CreatePolicyVersion",
            &[("PolicyArn", arn), ("PolicyDocument", &doc), ("SetAsDefault", "true")],
        )
        .await
        .map_err(failed)?;
    }
    attachments(c, arn, p, old).await?;
    let got = c
        .query("iam", IAM_VERSION, "GetPolicy", &[("PolicyArn", arn)])
        .await
        .map_err(failed)?;
    let policy = got
        .find("Policy")
        .ok_or_else(|| invalid("GetPolicy answered without a Policy"))?;
    Ok(managed_provisioned(policy))
}

/// (version id, is default), oldest first.
async fn policy_versions(c: &Client, arn: &str) -> Result<Vec<(String, bool)>, ProvisionError> {
    let v = c
        .query("iam", IAM_VERSION, "ListPolicyVersions", &[("PolicyArn", arn)])
        .await
        .map_err(failed)?;
    let mut out: Vec<(String, bool)> = v
        .find("Versions")
        .map(|l| {
            l.all("member")
                .filter_map(|m| {
                    Some((
                        m.text_of("VersionId")?.to_owned(),
                        m.text_of("IsDefaultVersion") == Some("true"),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    // `v1`, `v2`, …: oldest first by number.
    out.sort_by_key(|(id, _)| id.trim_start_matches('v').parse::<u64>().unwrap_or(u64::MAX));
    Ok(out)
}

/// Detaches the policy from its holders, deletes its non-default versions, then the policy.
pub(super) async fn delete_managed(c: &Client, arn: &str, p: &Value) -> Result<(), ProvisionError> {
    attachments(c, arn, &Value::Null, p).await?;
    let versions = match policy_versions(c, arn).await {
        Ok(v) => v,
        Err(_) => return Ok(()),
    };
    for (id, default) in versions {
        if !default {
            c.query(
                "iam",
                IAM_VERSION,
                "DeletePolicyVersion",
                &[("PolicyArn", arn), ("VersionId", &id)],
            )
            .await
            .map_err(failed)?;
        }
    }
    match c.query("iam", IAM_VERSION, "DeletePolicy", &[("PolicyArn", arn)]).await {
        Ok(_) => Ok(()),
        Err(e) if is_missing(&e) => Ok(()),
        Err(e) => Err(failed(e)),
    }
}

/// Inline `Policies` and `ManagedPolicyArns` of a role, from `old` to `p`.
pub(super) async fn role_policies(c: &Client, role: &str, p: &Value, old: &Value) -> Result<(), ProvisionError> {
    let inline = |v: &Value| -> BTreeMap<String, String> {
        list(v, "Policies")
            .iter()
            .filter_map(|x| Some((s(x, "PolicyName")?, document(x.get("PolicyDocument"))?)))
            .collect()
    };
    let (want, had) = (inline(p), inline(old));
    for (name, doc) in &want {
        if had.get(name) != Some(doc) {
            c.query(
                "iam",
                IAM_VERSION,
                "PutRolePolicy",
                &[("RoleName", role), ("PolicyName", name), ("PolicyDocument", doc)],
            )
            .await
            .map_err(failed)?;
        }
    }
    for name in had.keys().filter(|n| !want.contains_key(*n)) {
        c.query(
            "iam",
            IAM_VERSION,
            "DeleteRolePolicy",
            &[("RoleName", role), ("PolicyName", name)],
        )
        .await
        .map_err(failed)?;
    }
    let want: BTreeSet<String> = strings(p, "ManagedPolicyArns").into_iter().collect();
    let had: BTreeSet<String> = strings(old, "ManagedPolicyArns").into_iter().collect();
    for arn in want.difference(&had) {
        c.query(
            "iam",
            IAM_VERSION,
            "AttachRolePolicy",
            &[("RoleName", role), ("PolicyArn", arn)],
        )
        .await
        .map_err(failed)?;
    }
    for arn in had.difference(&want) {
        c.query(
            "iam",
            IAM_VERSION,
            "DetachRolePolicy",
            &[("RoleName", role), ("PolicyArn", arn)],
        )
        .await
        .map_err(failed)?;
    }
    Ok(())
}

/// Detaches and deletes every policy of the role, then the role.
pub(super) async fn delete_role(c: &Client, role: &str) -> anyhow::Result<()> {
    let attached = c
        .query("iam", IAM_VERSION, "ListAttachedRolePolicies", &[("RoleName", role)])
        .await?;
    let arns: Vec<String> = attached
        .find("AttachedPolicies")
        .map(|a| {
            a.all("member")
                .filter_map(|m| m.text_of("PolicyArn"))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    for arn in arns {
        c.query(
            "iam",
            IAM_VERSION,
            "DetachRolePolicy",
            &[("RoleName", role), ("PolicyArn", &arn)],
        )
        .await?;
    }
    let inline = c
        .query("iam", IAM_VERSION, "ListRolePolicies", &[("RoleName", role)])
        .await?;
    let names: Vec<String> = inline
        .find("PolicyNames")
        .map(|a| a.all("member").map(|m| m.text.clone()).collect())
        .unwrap_or_default();
    for name in names {
        c.query(
            "iam",
            IAM_VERSION,
            "DeleteRolePolicy",
            &[("RoleName", role), ("PolicyName", &name)],
        )
        .await?;
    }
    c.query("iam", IAM_VERSION, "DeleteRole", &[("RoleName", role)]).await?;
    Ok(())
}
