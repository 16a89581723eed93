//! A small XML tree for request bodies (parsed with quick-xml's pull parser, bounded in size
//! and depth) and a writer for replies.

use quick_xml::Reader;
use quick_xml::events::Event;

/// Largest request body accepted (1 MiB).
pub const MAX_BODY: usize = 1024 * 1024;
/// Deepest element nesting accepted.
pub const MAX_DEPTH: usize = 32;
/// Most elements in one body.
pub const MAX_ELEMENTS: usize = 100_000;

/// An element: its local name (namespace prefix dropped), children and text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    /// Local name.
    pub name: String,
    /// Child elements in order.
    pub children: Vec<Element>,
    /// The element's own text (concatenated).
    pub text: String,
}

impl Element {
    /// The first child named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child named `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The text of the first child named `name`.
    pub fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }

    /// This element or the first descendant named `name` (depth first).
    pub fn find(&self, name: &str) -> Option<&Element> {
        if self.name == name {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(name))
    }
}

/// Bounds of a parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest document.
    pub max_body: usize,
    /// Deepest nesting.
    pub max_depth: usize,
    /// Most elements.
    pub max_elements: usize,
}

/// The bounds of request bodies.
pub const REQUEST_LIMITS: Limits = Limits {
    max_body: MAX_BODY,
    max_depth: MAX_DEPTH,
    max_elements: MAX_ELEMENTS,
};

fn local(name: &[u8]) -> Result<String, String> {
    let local = match name.iter().rposition(|b| *b == b':') {
        Some(i) => &name[i + 1..],
        None => name,
    };
    String::from_utf8(local.to_vec()).map_err(|_| "an element name is not UTF-8".to_owned())
}

/// Parses a whole request body; returns its root element.
pub fn parse(body: &[u8]) -> Result<Element, String> {
    parse_with(body, REQUEST_LIMITS)
}

/// Parses a whole document within `limits` (no DTDs, no unknown entities).
pub fn parse_with(body: &[u8], limits: Limits) -> Result<Element, String> {
    let Limits {
        max_body,
        max_depth,
        max_elements,
    } = limits;
    if body.len() > max_body {
        return Err(format!("the body exceeds {max_body} bytes"));
    }
    let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8".to_owned())?;
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    loop {
        let event = reader.read_event().map_err(|e| e.to_string())?;
        match event {
            Event::Start(_) | Event::Empty(_) if root.is_some() => {
                return Err("content after the root element".into());
            }
            Event::Start(e) => {
                count += 1;
                if stack.len() >= max_depth || count > max_elements {
                    return Err("the document is too deep or too large".into());
                }
                stack.push(Element {
                    name: local(e.name().as_ref())?,
                    ..Element::default()
                });
            }
            Event::Empty(e) => {
                count += 1;
                if count > max_elements {
                    return Err("the document is too large".into());
                }
                let el = Element {
                    name: local(e.name().as_ref())?,
                    ..Element::default()
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::End(_) => {
                let el = stack.pop().ok_or("unbalanced end tag")?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                let s = t.decode().map_err(|e| e.to_string())?;
                match stack.last_mut() {
                    Some(el) => el.text.push_str(&s),
                    None if s.trim().is_empty() => {}
                    None => return Err("text outside the root element".into()),
                }
            }
            Event::CData(t) => {
                let s = t.decode().map_err(|e| e.to_string())?;
                match stack.last_mut() {
                    Some(el) => el.text.push_str(&s),
                    None => return Err("text outside the root element".into()),
                }
            }
            Event::GeneralRef(r) => {
                let c = if r.is_char_ref() {
                    r.resolve_char_ref()
                        .map_err(|e| e.to_string())?
                        .ok_or("an invalid character reference")?
                } else {
                    match r.decode().map_err(|e| e.to_string())?.as_ref() {
                        "lt" => '<',
                        "gt" => '>',
                        "amp" => '&',
                        "apos" => '\'',
                        "quot" => '"',
                        other => return Err(format!("unknown entity &{other};")),
                    }
                };
                match stack.last_mut() {
                    Some(el) => el.text.push(c),
                    None => return Err("text outside the root element".into()),
                }
            }
            Event::DocType(_) => return Err("document type declarations are not accepted".into()),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err("the document ends inside an element".into());
    }
    root.ok_or_else(|| "the body has no root element".into())
}

/// Builds a reply document.
#[derive(Debug, Default)]
pub struct Writer {
    out: String,
}

/// S3 Control's XML namespace.
pub const NAMESPACE: &str = "http://awss3control.amazonaws.com/doc/2018-08-20/";

impl Writer {
    /// A document whose root is `root` (in S3 Control's namespace).
    pub fn new(root: &str) -> Writer {
        let mut w = Writer {
            out: String::with_capacity(512),
        };
        w.out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        w.out.push_str(&format!("<{root} xmlns=\"{NAMESPACE}\">"));
        w
    }

    /// Opens an element.
    pub fn open(&mut self, name: &str) -> &mut Self {
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
        self
    }

    /// Closes an element.
    pub fn close(&mut self, name: &str) -> &mut Self {
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
        self
    }

    /// `<name>text</name>`.
    pub fn leaf(&mut self, name: &str, text: &str) -> &mut Self {
        self.open(name);
        self.out.push_str(&kd_wire::xml_escape(text));
        self.close(name)
    }

    /// A leaf when `text` is given.
    pub fn opt(&mut self, name: &str, text: Option<&str>) -> &mut Self {
        if let Some(t) = text {
            self.leaf(name, t);
        }
        self
    }

    /// Closes the root and returns the document.
    pub fn finish(mut self, root: &str) -> String {
        self.close(root);
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_namespaces_entities_and_cdata() {
        let doc =
            parse(br#"<?xml version="1.0"?><r xmlns="urn:x"><a>1 &amp; 2 &#x41;</a><b/><c><![CDATA[<raw>]]></c></r>"#)
                .expect("valid");
        assert_eq!(doc.name, "r");
        assert_eq!(doc.text_of("a"), Some("1 & 2 A"));
        assert_eq!(doc.text_of("b"), Some(""));
        assert_eq!(doc.text_of("c"), Some("<raw>"));
    }

    #[test]
    fn refuses_bad_documents() {
        assert!(parse(b"<a><b></a>").is_err());
        assert!(parse(b"<a>").is_err());
        assert!(parse(b"").is_err());
        assert!(parse(b"<a/><b/>").is_err());
        assert!(parse(b"<a>&ext;</a>").is_err());
        assert!(parse(b"<!DOCTYPE a [<!ENTITY x 'y'>]><a/>").is_err());
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert!(parse(deep.as_bytes()).is_err());
        assert!(parse(&vec![b' '; MAX_BODY + 1]).is_err());
    }
}
