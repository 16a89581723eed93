//! Writing query-protocol replies: elements, the response envelope, timestamps and the
//! URL encoding IAM applies to policy documents.

use bytes::Bytes;
use kd_wire::xml_escape;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// RFC 3986 unreserved characters stay; everything else is percent-encoded.
const POLICY_DOC: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// A policy document as IAM returns it (percent-encoded JSON).
pub fn url_encode(doc: &str) -> String {
    utf8_percent_encode(doc, POLICY_DOC).to_string()
}

/// An XML fragment under construction.
#[derive(Debug, Default)]
pub struct Xml {
    out: String,
}

impl Xml {
    /// `<name>escaped text</name>`.
    pub fn el(&mut self, name: &str, text: &str) {
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
        self.out.push_str(&xml_escape(text));
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
    }

    /// `<name>`.
    pub fn open(&mut self, name: &str) {
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
    }

    /// `</name>`.
    pub fn close(&mut self, name: &str) {
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
    }

    /// The fragment.
    pub fn finish(self) -> String {
        self.out
    }
}

/// The 200 reply of `action`: its `Result` element (if the operation has an output) and the
/// response metadata.
pub fn response(namespace: &str, action: &str, result: Option<&str>, request_id: &str) -> http::Response<Bytes> {
    let mut body = format!("<{action}Response xmlns=\"{namespace}\">");
    if let Some(inner) = result {
        body.push_str(&format!("<{action}Result>{inner}</{action}Result>"));
    }
    body.push_str(&format!(
        "<ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></{action}Response>",
        xml_escape(request_id)
    ));
    let mut resp = http::Response::new(Bytes::from(body));
    resp.headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/xml"));
    kd_wire::insert(resp.headers_mut(), "x-amzn-requestid", request_id);
    resp
}

/// `2026-11-26T14:00:00Z` for ms since the epoch (UTC, whole seconds).
pub fn iso8601(ms: i64) -> String {
    kd_storage::civil::format_iso8601(ms.div_euclid(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_iso8601() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(1_795_701_600_000), "2026-11-26T14:00:00Z");
        assert_eq!(iso8601(951_782_400_999), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn documents_are_percent_encoded() {
        assert_eq!(
            url_encode("{\"Version\": \"2012-10-17\"}"),
            "%7B%22Version%22%3A%20%222012-10-17%22%7D"
        );
    }

    #[test]
    fn envelope_has_result_and_request_id() {
        let r = response("ns", "GetRole", Some("<Role/>"), "rid");
        let body = String::from_utf8_lossy(r.body()).into_owned();
        assert_eq!(
            body,
            "<GetRoleResponse xmlns=\"ns\"><GetRoleResult><Role/></GetRoleResult><ResponseMetadata><RequestId>rid</RequestId></ResponseMetadata></GetRoleResponse>"
        );
    }
}
