//! Helpers shared by the test modules.

use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::Blob;

/// The AWS error code and HTTP status of a failed SDK call.
pub fn code_of<E, R>(e: &SdkError<E, R>) -> (String, u16)
where
    E: ProvideErrorMetadata + std::fmt::Debug,
    R: HttpStatus + std::fmt::Debug,
{
    let code = e
        .as_service_error()
        .and_then(|s| s.code())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("not a service error: {e:?}"));
    let status = e.raw_response().map(|r| r.status_u16()).unwrap_or(0);
    (code, status)
}

/// Anything with an HTTP status (the SDK's raw response).
pub trait HttpStatus {
    /// The status code.
    fn status_u16(&self) -> u16;
}

impl HttpStatus for aws_sdk_kinesis::config::http::HttpResponse {
    fn status_u16(&self) -> u16 {
        self.status().as_u16()
    }
}

/// The message of a failed SDK call.
pub fn message_of<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> String {
    e.as_service_error()
        .and_then(|s| s.message())
        .unwrap_or_default()
        .to_owned()
}

/// Asserts a call failed with `code` and `status`.
#[macro_export]
macro_rules! assert_aws_error {
    ($result:expr, $code:expr, $status:expr) => {{
        let err = match $result {
            Ok(v) => panic!("expected {} but the call succeeded: {:?}", $code, v),
            Err(e) => e,
        };
        let (code, status) = $crate::common::code_of(&err);
        assert_eq!(
            code,
            $code,
            "wrong error code; message: {}",
            $crate::common::message_of(&err)
        );
        assert_eq!(status, $status, "wrong status for {}", $code);
        $crate::common::message_of(&err)
    }};
}

/// A blob of `n` bytes derived from `seed`.
pub fn blob(seed: u64, n: usize) -> Blob {
    Blob::new(payload(seed, n))
}

/// `n` deterministic bytes from `seed`.
pub fn payload(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A TRIM_HORIZON iterator for one shard.
pub async fn trim_horizon(c: &aws_sdk_kinesis::Client, stream: &str, shard: &str) -> anyhow::Result<String> {
    let out = c
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard)
        .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
        .send()
        .await?;
    out.shard_iterator.ok_or_else(|| anyhow::anyhow!("no iterator"))
}

/// Every record of a shard from TRIM_HORIZON to the tip: (sequence number, data, partition key).
pub async fn read_all(
    c: &aws_sdk_kinesis::Client,
    stream: &str,
    shard: &str,
) -> anyhow::Result<Vec<(String, Vec<u8>, String)>> {
    let mut it = trim_horizon(c, stream, shard).await?;
    let mut out = Vec::new();
    loop {
        let r = c.get_records().shard_iterator(&it).send().await?;
        let n = r.records().len();
        for rec in r.records() {
            out.push((
                rec.sequence_number().to_owned(),
                rec.data().as_ref().to_vec(),
                rec.partition_key().unwrap_or_default().to_owned(),
            ));
        }
        match r.next_shard_iterator() {
            Some(next) if n > 0 => it = next.to_owned(),
            _ => return Ok(out),
        }
    }
}

/// Creates user `name` with `policy` inline and returns its (key id, secret).
pub async fn user_with(s: &kd_test_support::TestServer, name: &str, policy: &str) -> anyhow::Result<(String, String)> {
    let iam = s.iam();
    iam.create_user().user_name(name).send().await?;
    iam.put_user_policy()
        .user_name(name)
        .policy_name("p")
        .policy_document(policy)
        .send()
        .await?;
    let k = iam.create_access_key().user_name(name).send().await?;
    let k = k.access_key().ok_or_else(|| anyhow::anyhow!("no key"))?;
    Ok((k.access_key_id().to_owned(), k.secret_access_key().to_owned()))
}
