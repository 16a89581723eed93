//! Writing query-protocol replies: elements, the response envelope in CloudFormation's
//! namespace, and timestamps with milliseconds as CloudFormation writes them.

use bytes::Bytes;
use kd_wire::xml_escape;

/// CloudFormation's XML namespace.
pub const NS: &str = "http://cloudformation.amazonaws.com/doc/2010-05-15/";

/// An XML fragment under construction.
#[derive(Debug, Default)]
pub struct Xml {
    out: String,
}

impl Xml {
    /// `<name>escaped text</name>`.
    pub fn el(&mut self, name: &str, text: &str) {
        self.open(name);
        self.out.push_str(&xml_escape(text));
        self.close(name);
    }

    /// `<name>text</name>` when there is a text.
    pub fn opt(&mut self, name: &str, text: Option<&str>) {
        if let Some(t) = text {
            self.el(name, t);
        }
    }

    /// Text as is (already escaped).
    pub fn raw(&mut self, text: &str) {
        self.out.push_str(text);
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

    /// `<name><member>…</member>…</name>`, each member written by `f`.
    pub fn members<T>(&mut self, name: &str, items: impl IntoIterator<Item = T>, mut f: impl FnMut(&mut Xml, T)) {
        self.open(name);
        for item in items {
            self.open("member");
            f(self, item);
            self.close("member");
        }
        self.close(name);
    }

    /// The fragment.
    pub fn finish(self) -> String {
        self.out
    }
}

/// The 200 reply of `action`: its `Result` element (if the operation has an output) and the
/// response metadata.
pub fn response(action: &str, result: Option<&str>, request_id: &str) -> http::Response<Bytes> {
    let mut body = format!("<{action}Response xmlns=\"{NS}\">");
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

/// `2026-11-26T14:00:00.123Z` for ms since the epoch (UTC).
pub fn timestamp(ms: i64) -> String {
    let secs = kd_storage::civil::format_iso8601(ms.div_euclid(1000));
    format!("{}.{:03}Z", secs.trim_end_matches('Z'), ms.rem_euclid(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_milliseconds() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp(1_795_701_600_042), "2026-11-26T14:00:00.042Z");
    }

    #[test]
    fn envelope_and_members() {
        let mut x = Xml::default();
        x.members("Capabilities", ["CAPABILITY_IAM"], |x, c| x.el("member_text", c));
        assert_eq!(
            x.finish(),
            "<Capabilities><member><member_text>CAPABILITY_IAM</member_text></member></Capabilities>"
        );
        let r = response("DeleteStack", None, "rid");
        let body = String::from_utf8_lossy(r.body()).into_owned();
        assert_eq!(
            body,
            format!(
                "<DeleteStackResponse xmlns=\"{NS}\"><ResponseMetadata><RequestId>rid</RequestId></ResponseMetadata></DeleteStackResponse>"
            )
        );
    }
}
