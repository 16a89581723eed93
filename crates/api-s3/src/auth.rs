//! The bridge between s3s and our key store: s3s verifies S3's own signatures (header,
//! presigned, aws-chunked with per-chunk signatures, trailers) and asks us for the secret of
//! the access key a request claims. One key store (`kd-iam`) serves every service.

use std::sync::Arc;

use kd_iam::Iam;
use s3s::auth::{S3Auth, SecretKey};
use s3s::{S3Result, s3_error};

/// s3s authentication backed by the `kd-iam` key store.
#[derive(Debug, Clone)]
pub struct IamAuth {
    iam: Arc<Iam>,
}

impl IamAuth {
    /// Authentication over `iam`'s keys.
    pub fn new(iam: Arc<Iam>) -> Self {
        Self { iam }
    }
}

#[async_trait::async_trait]
impl S3Auth for IamAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.iam.secret_for(access_key) {
            Some(secret) => Ok(SecretKey::from(secret)),
            None => Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            )),
        }
    }
}
