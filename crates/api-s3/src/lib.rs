//! The S3 adapter: the S3 REST API (restXml, path-style and virtual-hosted) served by the
//! `s3s` protocol crate, whose `S3` trait we implement over the `objects` engine. s3s parses
//! requests into typed inputs generated from AWS's model, verifies S3's own signatures
//! (including aws-chunked payloads) against the `kd-iam` key store, and renders outputs and
//! errors as S3's XML. It sits between the `edge`, which hands it every request for S3, and
//! the objects engine. See ARCHITECTURE.md for why s3s.

pub mod auth;
pub mod host;

use std::sync::Arc;

use kd_iam::Iam;
use s3s::service::{S3Service, S3ServiceBuilder};

/// Our implementation of the s3s `S3` trait.
#[derive(Debug, Clone)]
pub struct S3Api {
    iam: Arc<Iam>,
}

#[async_trait::async_trait]
impl s3s::S3 for S3Api {}

impl S3Api {
    /// The adapter.
    pub fn new(iam: Arc<Iam>) -> Self {
        Self { iam }
    }

    /// The account of the access key that signed a request.
    pub fn account_of(&self, creds: Option<&s3s::auth::Credentials>) -> Option<String> {
        creds
            .and_then(|c| self.iam.principal(&c.access_key))
            .map(|p| p.account_id)
    }
}

/// The S3 service: s3s with our adapter, our key store and our host rules.
pub fn service(iam: Arc<Iam>, base_domains: Vec<String>) -> S3Service {
    let mut b = S3ServiceBuilder::new(S3Api::new(iam.clone()));
    b.set_auth(auth::IamAuth::new(iam));
    b.set_host(host::Hosts::new(base_domains));
    b.build()
}
