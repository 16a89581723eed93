//! IAM and STS through aws-sdk-iam / aws-sdk-sts against the in-process server: entity
//! lifecycles, policy documents (URL-encoded on the way out), the IAM error codes, user keys
//! and STS sessions used for signing, session expiry and tokens, and persistence.

use std::sync::Arc;

use aws_sdk_iam::types::{PolicyScopeType, Tag};
use kd_storage::{Clock, ManualClock, SystemClock};
use kd_test_support::{ACCOUNT, TestServer, iam_client, raw_http, sign_headers, sts_client};
use serde_json::Value;

use crate::assert_aws_error;

type R = anyhow::Result<()>;

const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
const TRUST_ACCOUNT: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:root"},"Action":"sts:AssumeRole"}]}"#;
const READ: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Read","Effect":"Allow","Action":["s3:GetObject","s3:ListBucket"],"Resource":["arn:aws:s3:::raw-bucket","arn:aws:s3:::raw-bucket/*"]}]}"#;
const WRITE: &str =
    r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"kinesis:PutRecord","Resource":"*"}}"#;
const AWS_POLICY: &str = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole";

/// The JSON of a URL-encoded policy document as IAM returns it.
fn decoded(doc: Option<&str>) -> Value {
    let text = percent_encoding::percent_decode_str(doc.expect("a document"))
        .decode_utf8()
        .expect("UTF-8 document");
    serde_json::from_str(&text).expect("JSON document")
}

fn json(doc: &str) -> Value {
    serde_json::from_str(doc).expect("JSON")
}

#[tokio::test]
async fn role_lifecycle_with_trust_document() -> R {
    let srv = TestServer::start().await?;
    let iam = srv.iam();
    let created = iam
        .create_role()
        .role_name("app-role")
        .path("/svc/")
        .description("the app")
        .assume_role_policy_document(TRUST)
        .tags(Tag::builder().key("team").value("data").build()?)
        .send()
        .await?;
    let role = created.role().expect("role");
    assert_eq!(role.arn(), "arn:aws:iam::000000000000:role/svc/app-role");
    assert!(role.role_id().starts_with("AROA"), "{}", role.role_id());
    assert_eq!(role.path(), "/svc/");
    assert_eq!(role.max_session_duration(), Some(3600));
    assert_eq!(decoded(role.assume_role_policy_document()), json(TRUST));

    let got = iam.get_role().role_name("app-role").send().await?;
    let got = got.role().expect("role");
    assert_eq!(got.role_id(), role.role_id());
    assert_eq!(got.description(), Some("the app"));
    assert_eq!(got.tags().len(), 1);
    assert_eq!(decoded(got.assume_role_policy_document()), json(TRUST));
    assert!(got.create_date().secs() > 1_700_000_000);

    assert_aws_error!(
        iam.create_role()
            .role_name("app-role")
            .assume_role_policy_document(TRUST)
            .send()
            .await,
        "EntityAlreadyExists",
        409
    );
    assert_aws_error!(
        iam.create_role()
            .role_name("bad name")
            .assume_role_policy_document(TRUST)
            .send()
            .await,
        "ValidationError",
        400
    );

    iam.update_role()
        .role_name("app-role")
        .description("changed")
        .max_session_duration(7200)
        .send()
        .await?;
    iam.update_assume_role_policy()
        .role_name("app-role")
        .policy_document(TRUST_ACCOUNT)
        .send()
        .await?;
    let got = iam.get_role().role_name("app-role").send().await?;
    let got = got.role().expect("role");
    assert_eq!(got.description(), Some("changed"));
    assert_eq!(got.max_session_duration(), Some(7200));
    assert_eq!(decoded(got.assume_role_policy_document()), json(TRUST_ACCOUNT));

    for n in ["b-role", "c-role"] {
        iam.create_role()
            .role_name(n)
            .assume_role_policy_document(TRUST)
            .send()
            .await?;
    }
    let all = iam.list_roles().send().await?;
    let names: Vec<&str> = all.roles().iter().map(|r| r.role_name()).collect();
    assert_eq!(names, ["app-role", "b-role", "c-role"]);
    assert!(!all.is_truncated());
    let first = iam.list_roles().max_items(2).send().await?;
    assert_eq!(first.roles().len(), 2);
    assert!(first.is_truncated());
    let rest = iam
        .list_roles()
        .max_items(2)
        .marker(first.marker().expect("marker"))
        .send()
        .await?;
    assert_eq!(rest.roles().len(), 1);
    assert_eq!(rest.roles()[0].role_name(), "c-role");
    assert!(!rest.is_truncated());
    let svc = iam.list_roles().path_prefix("/svc/").send().await?;
    assert_eq!(svc.roles().len(), 1);

    iam.delete_role().role_name("app-role").send().await?;
    assert_aws_error!(iam.get_role().role_name("app-role").send().await, "NoSuchEntity", 404);
    assert_aws_error!(
        iam.delete_role().role_name("app-role").send().await,
        "NoSuchEntity",
        404
    );
    srv.stop().await
}

#[tokio::test]
async fn inline_policies_and_malformed_documents() -> R {
    let srv = TestServer::start().await?;
    let iam = srv.iam();
    iam.create_role()
        .role_name("r")
        .assume_role_policy_document(TRUST)
        .send()
        .await?;
    iam.put_role_policy()
        .role_name("r")
        .policy_name("read")
        .policy_document(READ)
        .send()
        .await?;
    let got = iam.get_role_policy().role_name("r").policy_name("read").send().await?;
    assert_eq!(got.role_name(), "r");
    assert_eq!(got.policy_name(), "read");
    assert_eq!(decoded(Some(got.policy_document())), json(READ));
    let names = iam.list_role_policies().role_name("r").send().await?;
    assert_eq!(names.policy_names(), ["read"]);

    let msg = assert_aws_error!(iam.delete_role().role_name("r").send().await, "DeleteConflict", 409);
    assert_eq!(msg, "Cannot delete entity, must delete policies first.");

    assert_aws_error!(
        iam.put_role_policy()
            .role_name("r")
            .policy_name("bad")
            .policy_document("{not json")
            .send()
            .await,
        "MalformedPolicyDocument",
        400
    );
    let with_principal =
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*"}]}"#;
    assert_aws_error!(
        iam.put_role_policy()
            .role_name("r")
            .policy_name("bad")
            .policy_document(with_principal)
            .send()
            .await,
        "MalformedPolicyDocument",
        400
    );
    assert_aws_error!(
        iam.create_role()
            .role_name("r2")
            .assume_role_policy_document("[]")
            .send()
            .await,
        "MalformedPolicyDocument",
        400
    );
    assert_aws_error!(
        iam.get_role_policy().role_name("r").policy_name("nope").send().await,
        "NoSuchEntity",
        404
    );
    assert_aws_error!(
        iam.put_role_policy()
            .role_name("ghost")
            .policy_name("p")
            .policy_document(READ)
            .send()
            .await,
        "NoSuchEntity",
        404
    );

    iam.delete_role_policy()
        .role_name("r")
        .policy_name("read")
        .send()
        .await?;
    assert!(
        iam.list_role_policies()
            .role_name("r")
            .send()
            .await?
            .policy_names()
            .is_empty()
    );
    iam.delete_role().role_name("r").send().await?;
    srv.stop().await
}

#[tokio::test]
async fn managed_policy_versions_and_attachments() -> R {
    let srv = TestServer::start().await?;
    let iam = srv.iam();
    iam.create_role()
        .role_name("r")
        .assume_role_policy_document(TRUST)
        .send()
        .await?;
    let created = iam
        .create_policy()
        .policy_name("reader")
        .path("/team/")
        .description("reads raw")
        .policy_document(READ)
        .send()
        .await?;
    let policy = created.policy().expect("policy");
    let arn = policy.arn().expect("arn").to_owned();
    assert_eq!(arn, "arn:aws:iam::000000000000:policy/team/reader");
    assert!(policy.policy_id().is_some_and(|id| id.starts_with("ANPA")));
    assert_eq!(policy.default_version_id(), Some("v1"));
    assert_eq!(policy.attachment_count(), Some(0));
    assert_aws_error!(
        iam.create_policy()
            .policy_name("reader")
            .policy_document(READ)
            .send()
            .await,
        "EntityAlreadyExists",
        409
    );

    let v2 = iam
        .create_policy_version()
        .policy_arn(&arn)
        .policy_document(WRITE)
        .set_as_default(true)
        .send()
        .await?;
    let v2 = v2.policy_version().expect("version");
    assert_eq!(v2.version_id(), Some("v2"));
    assert!(v2.is_default_version());
    let got = iam
        .get_policy_version()
        .policy_arn(&arn)
        .version_id("v2")
        .send()
        .await?;
    assert_eq!(decoded(got.policy_version().and_then(|v| v.document())), json(WRITE));
    let got = iam
        .get_policy_version()
        .policy_arn(&arn)
        .version_id("v1")
        .send()
        .await?;
    assert!(!got.policy_version().expect("v1").is_default_version());
    assert_eq!(decoded(got.policy_version().and_then(|v| v.document())), json(READ));
    assert_eq!(
        iam.get_policy()
            .policy_arn(&arn)
            .send()
            .await?
            .policy()
            .and_then(|p| p.default_version_id()),
        Some("v2")
    );
    for _ in 3..=5 {
        iam.create_policy_version()
            .policy_arn(&arn)
            .policy_document(READ)
            .send()
            .await?;
    }
    assert_aws_error!(
        iam.create_policy_version()
            .policy_arn(&arn)
            .policy_document(READ)
            .send()
            .await,
        "LimitExceeded",
        409
    );

    iam.attach_role_policy().role_name("r").policy_arn(&arn).send().await?;
    let attached = iam.list_attached_role_policies().role_name("r").send().await?;
    let attached = attached.attached_policies();
    assert_eq!(attached.len(), 1);
    assert_eq!(attached[0].policy_arn(), Some(arn.as_str()));
    assert_eq!(attached[0].policy_name(), Some("reader"));
    let got = iam.get_policy().policy_arn(&arn).send().await?;
    assert_eq!(got.policy().and_then(|p| p.attachment_count()), Some(1));
    let local = iam
        .list_policies()
        .scope(PolicyScopeType::Local)
        .only_attached(true)
        .send()
        .await?;
    let local: Vec<Option<&str>> = local.policies().iter().map(|p| p.arn()).collect();
    assert_eq!(local, [Some(arn.as_str())]);

    let msg = assert_aws_error!(iam.delete_policy().policy_arn(&arn).send().await, "DeleteConflict", 409);
    assert_eq!(msg, "Cannot delete a policy attached to entities.");
    let msg = assert_aws_error!(iam.delete_role().role_name("r").send().await, "DeleteConflict", 409);
    assert_eq!(msg, "Cannot delete entity, must detach all policies first.");

    iam.detach_role_policy().role_name("r").policy_arn(&arn).send().await?;
    assert_aws_error!(
        iam.detach_role_policy().role_name("r").policy_arn(&arn).send().await,
        "NoSuchEntity",
        404
    );
    iam.delete_policy().policy_arn(&arn).send().await?;
    assert_aws_error!(iam.get_policy().policy_arn(&arn).send().await, "NoSuchEntity", 404);
    assert_aws_error!(
        iam.attach_role_policy()
            .role_name("r")
            .policy_arn("arn:aws:iam::000000000000:policy/ghost")
            .send()
            .await,
        "NoSuchEntity",
        404
    );
    iam.delete_role().role_name("r").send().await?;
    srv.stop().await
}

#[tokio::test]
async fn aws_managed_policies() -> R {
    let srv = TestServer::start().await?;
    let iam = srv.iam();
    let got = iam.get_policy().policy_arn(AWS_POLICY).send().await?;
    let p = got.policy().expect("policy");
    assert_eq!(p.arn(), Some(AWS_POLICY));
    assert_eq!(p.default_version_id(), Some("v1"));
    let v = iam
        .get_policy_version()
        .policy_arn(AWS_POLICY)
        .version_id("v1")
        .send()
        .await?;
    let doc = decoded(v.policy_version().and_then(|v| v.document()));
    assert_eq!(doc["Version"], "2012-10-17");

    iam.create_role()
        .role_name("fn")
        .assume_role_policy_document(TRUST)
        .send()
        .await?;
    iam.attach_role_policy()
        .role_name("fn")
        .policy_arn(AWS_POLICY)
        .send()
        .await?;
    let attached = iam.list_attached_role_policies().role_name("fn").send().await?;
    assert_eq!(attached.attached_policies()[0].policy_arn(), Some(AWS_POLICY));
    let listed = iam
        .list_policies()
        .scope(PolicyScopeType::Aws)
        .only_attached(true)
        .send()
        .await?;
    let arns: Vec<Option<&str>> = listed.policies().iter().map(|p| p.arn()).collect();
    assert_eq!(arns, [Some(AWS_POLICY)]);
    let all = iam.list_policies().scope(PolicyScopeType::Aws).send().await?;
    assert!(all.policies().len() > 1);
    assert_aws_error!(
        iam.get_policy()
            .policy_arn("arn:aws:iam::aws:policy/NoSuchManagedPolicy")
            .send()
            .await,
        "NoSuchEntity",
        404
    );
    assert_aws_error!(
        iam.delete_policy().policy_arn(AWS_POLICY).send().await,
        "NoSuchEntity",
        404
    );
    srv.stop().await
}

#[tokio::test]
async fn users_keys_and_caller_identity() -> R {
    let srv = TestServer::start().await?;
    let iam = srv.iam();
    let root = srv.sts().get_caller_identity().send().await?;
    assert_eq!(root.arn(), Some("arn:aws:iam::000000000000:root"));
    assert_eq!(root.account(), Some(ACCOUNT));
    assert_eq!(root.user_id(), Some(ACCOUNT));

    let user = iam.create_user().user_name("alice").path("/people/").send().await?;
    let user = user.user().expect("user");
    assert_eq!(user.arn(), "arn:aws:iam::000000000000:user/people/alice");
    assert!(user.user_id().starts_with("AIDA"));
    assert_aws_error!(
        iam.create_user().user_name("alice").send().await,
        "EntityAlreadyExists",
        409
    );
    iam.put_user_policy()
        .user_name("alice")
        .policy_name("inline")
        .policy_document(READ)
        .send()
        .await?;
    let got = iam
        .get_user_policy()
        .user_name("alice")
        .policy_name("inline")
        .send()
        .await?;
    assert_eq!(decoded(Some(got.policy_document())), json(READ));
    iam.attach_user_policy()
        .user_name("alice")
        .policy_arn(AWS_POLICY)
        .send()
        .await?;

    let k1 = iam.create_access_key().user_name("alice").send().await?;
    let k1 = k1.access_key().expect("key");
    assert_eq!(k1.access_key_id().len(), 20);
    assert!(k1.access_key_id().starts_with("AKIA"));
    assert_eq!(k1.secret_access_key().len(), 40);
    assert_eq!(k1.status().as_str(), "Active");
    iam.create_access_key().user_name("alice").send().await?;
    assert_aws_error!(
        iam.create_access_key().user_name("alice").send().await,
        "LimitExceeded",
        409
    );
    let keys = iam.list_access_keys().user_name("alice").send().await?;
    assert_eq!(keys.access_key_metadata().len(), 2);

    let as_alice = sts_client(&srv.endpoint(), k1.access_key_id(), k1.secret_access_key(), None);
    let me = as_alice.get_caller_identity().send().await?;
    assert_eq!(me.arn(), Some(user.arn()));
    assert_eq!(me.user_id(), Some(user.user_id()));
    assert_eq!(me.account(), Some(ACCOUNT));
    let alice_iam = iam_client(&srv.endpoint(), k1.access_key_id(), k1.secret_access_key(), None);
    // Policies are enforced: alice may read only what her policies allow.
    let msg = assert_aws_error!(alice_iam.get_user().send().await, "AccessDenied", 403);
    assert_eq!(
        msg,
        format!(
            "User: {} is not authorized to perform: iam:GetUser on resource: {} because no identity-based policy allows the iam:GetUser action",
            user.arn(),
            user.arn()
        )
    );
    iam.put_user_policy()
        .user_name("alice")
        .policy_name("self")
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iam:GetUser","Resource":"arn:aws:iam::*:user/*/${aws:username}"}]}"#)
        .send()
        .await?;
    let me = alice_iam.get_user().send().await?;
    assert_eq!(me.user().map(|u| u.user_name()), Some("alice"));

    let wrong = sts_client(&srv.endpoint(), k1.access_key_id(), "not-the-secret", None);
    assert_aws_error!(wrong.get_caller_identity().send().await, "SignatureDoesNotMatch", 403);

    let msg = assert_aws_error!(iam.delete_user().user_name("alice").send().await, "DeleteConflict", 409);
    assert_eq!(msg, "Cannot delete entity, must delete policies first.");
    iam.delete_user_policy()
        .user_name("alice")
        .policy_name("self")
        .send()
        .await?;
    iam.delete_user_policy()
        .user_name("alice")
        .policy_name("inline")
        .send()
        .await?;
    iam.detach_user_policy()
        .user_name("alice")
        .policy_arn(AWS_POLICY)
        .send()
        .await?;
    let msg = assert_aws_error!(iam.delete_user().user_name("alice").send().await, "DeleteConflict", 409);
    assert_eq!(msg, "Cannot delete entity, must delete access keys first.");
    for k in keys.access_key_metadata() {
        iam.delete_access_key()
            .user_name("alice")
            .access_key_id(k.access_key_id().expect("id"))
            .send()
            .await?;
    }
    assert_aws_error!(as_alice.get_caller_identity().send().await, "InvalidClientTokenId", 403);
    iam.delete_user().user_name("alice").send().await?;
    assert_aws_error!(iam.get_user().user_name("alice").send().await, "NoSuchEntity", 404);
    srv.stop().await
}

#[tokio::test]
async fn assume_role_sessions_tokens_and_expiry() -> R {
    let clock = Arc::new(ManualClock::new(SystemClock.now_ms()));
    let srv = TestServer::start_with_clock(clock.clone(), |_| {}).await?;
    let iam = srv.iam();
    let role = iam
        .create_role()
        .role_name("worker")
        .assume_role_policy_document(TRUST_ACCOUNT)
        .send()
        .await?;
    let role = role.role().expect("role");
    let sts = srv.sts();
    let out = sts
        .assume_role()
        .role_arn(role.arn())
        .role_session_name("job-1")
        .duration_seconds(900)
        .send()
        .await?;
    let creds = out.credentials().expect("credentials");
    assert!(creds.access_key_id().starts_with("ASIA"));
    assert_eq!(creds.access_key_id().len(), 20);
    let expires = creds.expiration().secs();
    let now = clock.now_ms() / 1000;
    assert!((now + 899..=now + 901).contains(&expires), "{expires} vs {now}");
    let assumed = out.assumed_role_user().expect("assumed role user");
    assert_eq!(assumed.arn(), "arn:aws:sts::000000000000:assumed-role/worker/job-1");
    assert_eq!(assumed.assumed_role_id(), format!("{}:job-1", role.role_id()));

    let session = sts_client(
        &srv.endpoint(),
        creds.access_key_id(),
        creds.secret_access_key(),
        Some(creds.session_token()),
    );
    let me = session.get_caller_identity().send().await?;
    assert_eq!(me.arn(), Some(assumed.arn()));
    assert_eq!(me.user_id(), Some(assumed.assumed_role_id()));

    let no_token = sts_client(&srv.endpoint(), creds.access_key_id(), creds.secret_access_key(), None);
    assert_aws_error!(no_token.get_caller_identity().send().await, "InvalidClientTokenId", 403);
    let wrong_token = sts_client(
        &srv.endpoint(),
        creds.access_key_id(),
        creds.secret_access_key(),
        Some("not-the-token"),
    );
    assert_aws_error!(
        wrong_token.get_caller_identity().send().await,
        "InvalidClientTokenId",
        403
    );

    assert_aws_error!(
        sts.assume_role()
            .role_arn(role.arn())
            .role_session_name("long")
            .duration_seconds(7200)
            .send()
            .await,
        "ValidationError",
        400
    );
    assert_aws_error!(
        sts.assume_role()
            .role_arn(role.arn())
            .role_session_name("x")
            .send()
            .await,
        "ValidationError",
        400
    );
    assert_aws_error!(
        sts.assume_role()
            .role_arn("arn:aws:iam::000000000000:role/ghost")
            .role_session_name("s1")
            .send()
            .await,
        "AccessDenied",
        403
    );

    clock.advance(901_000);
    assert_aws_error!(session.get_caller_identity().send().await, "ExpiredToken", 403);
    srv.stop().await
}

#[tokio::test]
async fn unknown_action_and_caller_without_user() -> R {
    let srv = TestServer::start().await?;
    let url = format!("{}/", srv.endpoint());
    let body = b"Action=FlyToTheMoon&Version=2010-05-08";
    let headers = vec![(
        "content-type".to_owned(),
        "application/x-www-form-urlencoded; charset=utf-8".to_owned(),
    )];
    let signed = sign_headers("POST", &url, &headers, body, "iam", "us-east-1")?;
    let (status, _, reply) = raw_http(srv.inner().addr(), "POST", "/", &signed, body).await?;
    let reply = String::from_utf8_lossy(&reply).into_owned();
    assert_eq!(status, 400, "{reply}");
    assert!(reply.contains("<Code>InvalidAction</Code>"), "{reply}");
    assert!(reply.contains("<Type>Sender</Type>"), "{reply}");

    // Root credentials have no user of their own.
    assert_aws_error!(srv.iam().create_access_key().send().await, "ValidationError", 400);
    srv.stop().await
}

#[tokio::test]
async fn entities_keys_and_sessions_survive_restart() -> R {
    let mut srv = TestServer::start().await?;
    let iam = srv.iam();
    iam.create_role()
        .role_name("keep")
        .assume_role_policy_document(TRUST_ACCOUNT)
        .send()
        .await?;
    iam.put_role_policy()
        .role_name("keep")
        .policy_name("inline")
        .policy_document(READ)
        .send()
        .await?;
    let policy = iam
        .create_policy()
        .policy_name("managed")
        .policy_document(WRITE)
        .send()
        .await?;
    let arn = policy.policy().and_then(|p| p.arn()).expect("arn").to_owned();
    iam.attach_role_policy()
        .role_name("keep")
        .policy_arn(&arn)
        .send()
        .await?;
    iam.create_user().user_name("bob").send().await?;
    let key = iam.create_access_key().user_name("bob").send().await?;
    let key = key.access_key().expect("key").clone();
    let session = srv
        .sts()
        .assume_role()
        .role_arn("arn:aws:iam::000000000000:role/keep")
        .role_session_name("s-1")
        .send()
        .await?;
    let creds = session.credentials().expect("credentials").clone();

    srv.restart().await?;
    let iam = srv.iam();
    let role = iam.get_role().role_name("keep").send().await?;
    assert_eq!(
        decoded(role.role().and_then(|r| r.assume_role_policy_document())),
        json(TRUST_ACCOUNT)
    );
    let inline = iam
        .get_role_policy()
        .role_name("keep")
        .policy_name("inline")
        .send()
        .await?;
    assert_eq!(decoded(Some(inline.policy_document())), json(READ));
    let attached = iam.list_attached_role_policies().role_name("keep").send().await?;
    assert_eq!(attached.attached_policies()[0].policy_arn(), Some(arn.as_str()));
    assert_eq!(
        iam.get_policy()
            .policy_arn(&arn)
            .send()
            .await?
            .policy()
            .and_then(|p| p.attachment_count()),
        Some(1)
    );
    let bob = sts_client(&srv.endpoint(), key.access_key_id(), key.secret_access_key(), None);
    assert_eq!(
        bob.get_caller_identity().send().await?.arn(),
        Some("arn:aws:iam::000000000000:user/bob")
    );
    let s = sts_client(
        &srv.endpoint(),
        creds.access_key_id(),
        creds.secret_access_key(),
        Some(creds.session_token()),
    );
    assert_eq!(
        s.get_caller_identity().send().await?.arn(),
        Some("arn:aws:sts::000000000000:assumed-role/keep/s-1")
    );
    srv.stop().await
}
