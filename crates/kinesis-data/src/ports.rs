//! The delivery engine's ports, implemented over the other engines: [`S3Sink`] writes
//! delivered objects through the objects engine and [`KinesisSource`] reads source streams
//! through the stream engine. Both act as the delivery stream's role: each call is
//! authorised for the session `arn:aws:sts::<acct>:assumed-role/<role>/firehose` with the
//! role's identity policies, exactly as a request signed by that session would be.

use std::sync::Arc;

use bytes::Bytes;
use kd_delivery::{ObjectSink, PortError, SourceBatch, SourceRecord, SourceShard, StreamSource};
use kd_iam::authz::Authorizer;
use kd_iam::{Iam, Principal, PrincipalKind};
use kd_objects::{Objects, PutOptions};
use kd_stream::{Engine, IteratorStart, Scope, StreamRef};

/// The session a delivery stream acts as.
const SESSION: &str = "firehose";

/// Builds the principal of the role's Firehose session and authorises its calls.
#[derive(Debug, Clone)]
pub struct RoleActor {
    iam: Arc<Iam>,
    authz: Arc<Authorizer>,
    session: &'static str,
}

impl RoleActor {
    /// Over the key/entity store and the shared authoriser, as the `firehose` session.
    pub fn new(iam: Arc<Iam>, authz: Arc<Authorizer>) -> Self {
        Self {
            iam,
            authz,
            session: SESSION,
        }
    }

    /// The same actor acting as session `session` of the role (e.g. a function's name).
    pub fn with_session(&self, session: &'static str) -> Self {
        Self {
            session,
            ..self.clone()
        }
    }

    pub(crate) fn principal(&self, role_arn: &str) -> Result<Principal, PortError> {
        let session = self.session;
        let (account, role_name) = kd_iam::store::parse_role_arn(role_arn)
            .ok_or_else(|| PortError::AccessDenied(format!("{role_arn} is not a role ARN")))?;
        let role_id = self
            .iam
            .store()
            .and_then(|s| s.get_role(&account, &role_name).ok())
            .map_or_else(|| role_name.clone(), |r| r.id);
        Ok(Principal {
            arn: format!("arn:aws:sts::{account}:assumed-role/{role_name}/{session}"),
            user_id: format!("{role_id}:{session}"),
            account_id: account,
            access_key_id: String::new(),
            kind: PrincipalKind::AssumedRole {
                role_name,
                session_name: session.to_owned(),
            },
            session_token: None,
            expiration_ms: None,
        })
    }

    /// `Ok(principal)` when the role may perform every one of `actions` on `resource`.
    pub(crate) fn allow(&self, role_arn: &str, actions: &[&str], resource: &str) -> Result<Principal, PortError> {
        let principal = self.principal(role_arn)?;
        if self.authz.enabled() {
            let ctx = self.authz.context_for(&principal);
            for action in actions {
                self.authz
                    .check(&principal, action, resource, &ctx)
                    .map_err(|d| PortError::AccessDenied(d.message))?;
            }
        }
        Ok(principal)
    }
}

/// [`ObjectSink`] over the objects engine.
#[derive(Debug, Clone)]
pub struct S3Sink {
    objects: Arc<Objects>,
    actor: RoleActor,
}

impl S3Sink {
    /// A sink writing through `objects` as the delivery stream's role.
    pub fn new(objects: Arc<Objects>, actor: RoleActor) -> Self {
        Self { objects, actor }
    }
}

fn object_error(e: kd_objects::Error) -> PortError {
    match e {
        kd_objects::Error::NoSuchBucket { bucket } => {
            PortError::NotFound(format!("The specified bucket does not exist: {bucket}"))
        }
        other => PortError::Other(other.to_string()),
    }
}

#[async_trait::async_trait]
impl ObjectSink for S3Sink {
    async fn put_object(
        &self,
        account: &str,
        role_arn: &str,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_encoding: Option<&str>,
    ) -> Result<(), PortError> {
        let principal = self
            .actor
            .allow(role_arn, &["s3:PutObject"], &format!("arn:aws:s3:::{bucket}/{key}"))?;
        let info = self.objects.bucket(bucket).map_err(object_error)?;
        // Bucket policies are not evaluated yet: another account's bucket is refused.
        let _ = account;
        if info.owner_account != principal.account_id {
            return Err(PortError::AccessDenied(format!(
                "Access Denied: bucket {bucket} belongs to another account"
            )));
        }
        let opts = PutOptions {
            content_type: Some("application/octet-stream".to_owned()),
            content_encoding: content_encoding.map(str::to_owned),
            ..PutOptions::default()
        };
        let body = futures_util::stream::iter([Ok::<Bytes, std::io::Error>(body)]);
        self.objects
            .put_object(bucket, key, body, opts)
            .await
            .map(|_| ())
            .map_err(object_error)
    }
}

/// [`StreamSource`] over the stream engine.
#[derive(Debug, Clone)]
pub struct KinesisSource {
    engine: Arc<Engine>,
    actor: RoleActor,
}

impl KinesisSource {
    /// A source reading through `engine` as the delivery stream's role.
    pub fn new(engine: Arc<Engine>, actor: RoleActor) -> Self {
        Self { engine, actor }
    }
}

pub(crate) fn scope_of(stream_arn: &str) -> Result<Scope, PortError> {
    let (region, account, _) = kd_stream::parse_stream_arn(stream_arn)
        .ok_or_else(|| PortError::NotFound(format!("{stream_arn} is not a stream ARN")))?;
    Ok(Scope {
        account: account.to_owned(),
        region: region.to_owned(),
    })
}

fn stream_error(e: kd_stream::Error) -> PortError {
    match e {
        kd_stream::Error::StreamNotFound { .. } | kd_stream::Error::ShardNotFound(_) => {
            PortError::NotFound(e.to_string())
        }
        other => PortError::Other(other.to_string()),
    }
}

impl KinesisSource {
    /// Every shard of the stream (all ListShards pages).
    pub(crate) async fn all_shards(
        &self,
        scope: &Scope,
        stream_arn: &str,
    ) -> Result<Vec<kd_stream::ShardInfo>, PortError> {
        let r = StreamRef {
            name: None,
            arn: Some(stream_arn),
        };
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = match &token {
                None => self.engine.list_shards(scope, r, None, None, None, 10_000).await,
                Some(t) => {
                    self.engine
                        .list_shards(scope, StreamRef::default(), Some(t), None, None, 10_000)
                        .await
                }
            }
            .map_err(stream_error)?;
            out.extend(page.shards);
            match page.next_token {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    /// A shard iterator of the stream.
    pub(crate) async fn iterator(
        &self,
        scope: &Scope,
        stream_arn: &str,
        shard: &str,
        start: IteratorStart,
    ) -> Result<String, PortError> {
        let r = StreamRef {
            name: None,
            arn: Some(stream_arn),
        };
        self.engine
            .get_shard_iterator(scope, r, shard, start)
            .await
            .map_err(stream_error)
    }
}

#[async_trait::async_trait]
impl StreamSource for KinesisSource {
    async fn shards(&self, stream_arn: &str, role_arn: &str) -> Result<Vec<SourceShard>, PortError> {
        self.actor.allow(role_arn, &["kinesis:ListShards"], stream_arn)?;
        let scope = scope_of(stream_arn)?;
        Ok(self
            .all_shards(&scope, stream_arn)
            .await?
            .into_iter()
            .map(|s| SourceShard {
                closed: s.end_sequence.is_some(),
                parents: s.parent.into_iter().chain(s.adjacent_parent).collect(),
                shard_id: s.shard_id,
            })
            .collect())
    }

    async fn latest(&self, stream_arn: &str, role_arn: &str, shard_id: &str) -> Result<Option<String>, PortError> {
        self.actor.allow(role_arn, &["kinesis:GetShardIterator"], stream_arn)?;
        let scope = scope_of(stream_arn)?;
        let start = self
            .all_shards(&scope, stream_arn)
            .await?
            .into_iter()
            .find(|s| s.shard_id == shard_id)
            .and_then(|s| kd_stream::seq::parse_sequence(&s.start_sequence))
            .ok_or_else(|| PortError::NotFound(format!("Shard {shard_id} of {stream_arn} does not exist")))?;
        let it = self
            .iterator(&scope, stream_arn, shard_id, IteratorStart::Latest)
            .await?;
        let tok = kd_stream::seq::IteratorToken::decode(&it)
            .ok_or_else(|| PortError::Other("the stream engine returned an unreadable iterator".to_owned()))?;
        // The iterator points just past the newest record; nothing before the shard's start.
        Ok((tok.offset > start).then(|| kd_stream::seq::to_sequence(tok.offset - 1)))
    }

    async fn read(
        &self,
        stream_arn: &str,
        role_arn: &str,
        shard_id: &str,
        after: Option<&str>,
        max_records: usize,
    ) -> Result<SourceBatch, PortError> {
        self.actor.allow(
            role_arn,
            &["kinesis:GetShardIterator", "kinesis:GetRecords"],
            stream_arn,
        )?;
        let scope = scope_of(stream_arn)?;
        let start = match after {
            Some(seq) => IteratorStart::AfterSequence(seq.to_owned()),
            None => IteratorStart::TrimHorizon,
        };
        let it = self.iterator(&scope, stream_arn, shard_id, start).await?;
        let out = self
            .engine
            .get_records(&scope, &it, max_records.clamp(1, 10_000))
            .await
            .map_err(stream_error)?;
        Ok(SourceBatch {
            end_of_shard: out.next_iterator.is_none(),
            records: out
                .records
                .into_iter()
                .map(|r| SourceRecord {
                    sequence_number: r.sequence_number,
                    data: Bytes::from(r.data),
                    partition_key: r.partition_key,
                    arrival_ms: r.arrival_ms,
                })
                .collect(),
        })
    }
}
