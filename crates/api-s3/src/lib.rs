//! The S3 adapter: the S3 REST API (restXml, path-style and virtual-hosted) served by the
//! `s3s` protocol crate, whose `S3` trait we implement over the `objects` engine. s3s parses
//! requests into typed inputs generated from AWS's model, verifies S3's own signatures
//! (including aws-chunked payloads) against the `kd-iam` key store, and renders outputs and
//! errors as S3's XML. It sits between the `edge`, which hands it every request for S3, and
//! the objects engine. See ARCHITECTURE.md for why s3s.

pub mod access;
pub mod auth;
pub mod host;
pub mod notify;
pub mod ops;

use std::sync::Arc;

use kd_iam::Iam;
use kd_objects::Objects;
use s3s::service::{S3Service, S3ServiceBuilder};

/// Our implementation of the s3s `S3` trait (the operations are in [`ops`]).
#[derive(Clone)]
pub struct S3Api {
    iam: Arc<Iam>,
    objects: Arc<Objects>,
    destinations: Option<Arc<dyn notify::DestinationCheck>>,
    /// The authoriser's cache of bucket policies, told about every change.
    policies: Option<Arc<access::BucketPolicies>>,
}

impl std::fmt::Debug for S3Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Api").finish_non_exhaustive()
    }
}

impl S3Api {
    /// The adapter.
    pub fn new(iam: Arc<Iam>, objects: Arc<Objects>) -> Self {
        Self {
            iam,
            objects,
            destinations: None,
            policies: None,
        }
    }

    /// Tells `policies` (the authoriser's cache) about every change of a bucket's policy or
    /// existence.
    pub fn with_policies(mut self, policies: Arc<access::BucketPolicies>) -> Self {
        self.policies = Some(policies);
        self
    }

    fn forget_policy(&self, bucket: &str) {
        if let Some(p) = &self.policies {
            p.forget(bucket);
        }
    }

    /// Checks notification destinations (functions) with `check` before storing a
    /// configuration, as S3 does.
    pub fn with_destinations(mut self, check: Arc<dyn notify::DestinationCheck>) -> Self {
        self.destinations = Some(check);
        self
    }

    /// The account of the access key that signed a request.
    pub fn account_of(&self, creds: Option<&s3s::auth::Credentials>) -> Option<String> {
        creds
            .and_then(|c| self.iam.principal(&c.access_key))
            .map(|p| p.account_id)
    }
}

/// The S3 service: s3s with our adapter, our key store and our host rules.
pub fn service(
    iam: Arc<Iam>,
    authz: Arc<kd_iam::authz::Authorizer>,
    objects: Arc<Objects>,
    base_domains: Vec<String>,
    destinations: Option<Arc<dyn notify::DestinationCheck>>,
) -> S3Service {
    let policies = Arc::new(access::BucketPolicies::new(objects.clone()));
    let mut api = S3Api::new(iam.clone(), objects).with_policies(policies.clone());
    if let Some(d) = destinations {
        api = api.with_destinations(d);
    }
    let mut b = S3ServiceBuilder::new(api);
    b.set_auth(auth::IamAuth::new(iam.clone()));
    b.set_access(access::IamAccess::new(iam, authz, policies));
    b.set_host(host::Hosts::new(base_domains));
    b.build()
}
