//! awsJson1.1: `POST /` with `X-Amz-Target: <Prefix>.<Operation>`, a JSON object body, and a
//! JSON reply; or the same shapes as one CBOR map (`application/x-amz-cbor-1.1`, what AWS's
//! Java SDKs and the KCL send to Kinesis by default). Errors carry `__type` and `message` in
//! the body and `x-amzn-ErrorType` as a header; botocore and the smithy SDKs read either.

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{ServiceError, insert};

/// `Content-Type` of awsJson1.1 requests and replies.
pub const JSON_1_1: &str = "application/x-amz-json-1.1";
/// `Content-Type` of the CBOR variant.
pub const CBOR_1_1: &str = "application/x-amz-cbor-1.1";

/// The body encoding a request arrived in; the reply uses the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-amz-json-1.1` (or any JSON type).
    Json,
    /// `application/x-amz-cbor-1.1`.
    Cbor,
}

impl Encoding {
    /// The encoding named by a `Content-Type` header (JSON unless it says CBOR).
    pub fn from_content_type(content_type: Option<&str>) -> Self {
        match content_type {
            Some(ct) if ct.trim().to_ascii_lowercase().starts_with("application/x-amz-cbor") => Encoding::Cbor,
            _ => Encoding::Json,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Encoding::Json => JSON_1_1,
            Encoding::Cbor => CBOR_1_1,
        }
    }
}

/// Field names whose CBOR form differs from their JSON form, per service.
#[derive(Debug, Clone, Copy)]
pub struct CborShape {
    /// Members that are blobs: base64 strings in JSON, byte strings in CBOR.
    pub blob_fields: &'static [&'static str],
    /// Members that are timestamps: epoch seconds in JSON, tag 1 + epoch milliseconds in CBOR.
    pub timestamp_fields: &'static [&'static str],
}

/// Decodes a request body into `T`. An empty body reads as `{}`. Malformed input is a
/// `SerializationException`, as AWS answers it.
pub fn decode<T: DeserializeOwned>(encoding: Encoding, body: &[u8]) -> Result<T, ServiceError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    let result = match encoding {
        Encoding::Json => serde_json::from_slice::<T>(body).map_err(|e| e.to_string()),
        Encoding::Cbor => {
            let value = if body == b"{}" {
                Ok(serde_json::Value::Object(Default::default()))
            } else {
                crate::cbor::decode_to_json(body).map_err(|e| e.to_string())
            };
            value.and_then(|v| serde_json::from_value::<T>(v).map_err(|e| e.to_string()))
        }
    };
    result.map_err(|e| ServiceError::client("SerializationException", serialization_message(&e)))
}

fn serialization_message(detail: &str) -> String {
    // AWS does not echo parser internals at length; keep the first line, bounded.
    let first = detail.lines().next().unwrap_or_default();
    let short: String = first.chars().take(200).collect();
    if short.is_empty() {
        "Start of structure or map found where not expected.".to_owned()
    } else {
        short
    }
}

/// A 200 reply carrying `value`.
pub fn ok_response<T: Serialize>(
    encoding: Encoding,
    shape: &CborShape,
    value: &T,
    request_id: &str,
) -> http::Response<Bytes> {
    let body = match encoding {
        Encoding::Json => serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec()),
        Encoding::Cbor => {
            let v = serde_json::to_value(value).unwrap_or_else(|_| serde_json::json!({}));
            crate::cbor::encode_from_json(&v, shape.blob_fields, shape.timestamp_fields)
        }
    };
    response(encoding, http::StatusCode::OK, Bytes::from(body), request_id)
}

/// An error reply in the awsJson envelope.
pub fn error_response(encoding: Encoding, err: &ServiceError, request_id: &str) -> http::Response<Bytes> {
    let v = serde_json::json!({ "__type": err.code, "message": err.message });
    let body = match encoding {
        Encoding::Json => Bytes::from(v.to_string()),
        Encoding::Cbor => Bytes::from(crate::cbor::encode_from_json(&v, &[], &[])),
    };
    let mut resp = response(encoding, err.status, body, request_id);
    insert(resp.headers_mut(), "x-amzn-errortype", &err.code);
    resp
}

fn response(encoding: Encoding, status: http::StatusCode, body: Bytes, request_id: &str) -> http::Response<Bytes> {
    let mut resp = http::Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(encoding.content_type()),
    );
    insert(h, "x-amzn-requestid", request_id);
    insert(h, "x-amz-id-2", request_id);
    resp
}

/// The operation named by an `X-Amz-Target` header with the given prefix (`Kinesis_20131202`).
pub fn operation<'a>(target: &'a str, prefix: &str) -> Option<&'a str> {
    target.strip_prefix(prefix)?.strip_prefix('.')
}

/// `serde(with = "kd_wire::json::base64_bytes")` for blob members: base64 text in JSON.
pub mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes bytes as base64 text.
    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    /// Reads base64 text into bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD.decode(s.as_bytes()).map_err(serde::de::Error::custom)
    }
}

/// `serde(default, with = "kd_wire::json::opt_base64_bytes")` for optional blob members:
/// absent or null → `None`, base64 text → bytes (invalid base64 is a serialization error).
pub mod opt_base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer};

    /// Reads optional base64 text into bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        match <Option<std::borrow::Cow<'de, str>>>::deserialize(d)? {
            None => Ok(None),
            Some(s) => STANDARD
                .decode(s.as_bytes())
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    struct In {
        #[serde(rename = "Data", with = "base64_bytes")]
        data: Vec<u8>,
    }

    #[test]
    fn decodes_json_and_reports_serialization_errors() {
        let v: In = decode(Encoding::Json, br#"{"Data":"aGk="}"#).expect("valid");
        assert_eq!(v.data, b"hi");
        let e = decode::<In>(Encoding::Json, b"{not json").expect_err("invalid");
        assert_eq!(e.code, "SerializationException");
        let e = decode::<In>(Encoding::Json, br#"{"Data":"!!"}"#).expect_err("bad base64");
        assert_eq!(e.code, "SerializationException");
    }

    #[test]
    fn error_envelope_has_type_and_header() {
        let r = error_response(
            Encoding::Json,
            &ServiceError::client("ValidationException", "bad"),
            "r1",
        );
        assert_eq!(r.status(), 400);
        assert_eq!(r.headers()["x-amzn-errortype"], "ValidationException");
        let v: serde_json::Value = serde_json::from_slice(r.body()).expect("json");
        assert_eq!(v["__type"], "ValidationException");
        assert_eq!(v["message"], "bad");
    }

    #[test]
    fn target_parsing() {
        assert_eq!(
            operation("Kinesis_20131202.PutRecord", "Kinesis_20131202"),
            Some("PutRecord")
        );
        assert_eq!(operation("Kinesis_20131202PutRecord", "Kinesis_20131202"), None);
    }
}
