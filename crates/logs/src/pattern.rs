//! FilterLogEvents' `filterPattern`, the unstructured subset: terms (`ERROR`), quoted phrases
//! (`"Task timed out"`), exclusions (`-DEBUG`, `-"health check"`) and alternatives
//! (`?ERROR ?WARN`). An event matches when it contains every term and phrase, none of the
//! exclusions, and (if any alternative is given) at least one alternative. Matching is
//! case-sensitive, as on AWS. JSON (`{ $.x = 1 }`), space-delimited (`[ip, user, ...]`) and
//! regular-expression (`%…%`) patterns are refused with InvalidParameterException.

use crate::{Error, Result};

/// Longest pattern (the modeled limit).
pub const MAX_PATTERN: usize = 1024;

/// A parsed filter pattern.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pattern {
    all: Vec<String>,
    none: Vec<String>,
    any: Vec<String>,
}

fn unsupported(pattern: &str) -> Error {
    Error::InvalidParameter(format!(
        "Invalid filter pattern: {pattern}. kinesis-data supports terms, \"quoted phrases\", -exclusions and ?alternatives only (JSON, space-delimited and regular-expression patterns are not supported)."
    ))
}

impl Pattern {
    /// Parses `pattern` (empty or blank: every event matches).
    pub fn parse(pattern: &str) -> Result<Pattern> {
        if pattern.chars().count() > MAX_PATTERN {
            return Err(Error::InvalidParameter(format!(
                "1 validation error detected: Value at 'filterPattern' failed to satisfy constraint: Member must have length less than or equal to {MAX_PATTERN}"
            )));
        }
        let mut out = Pattern::default();
        let mut chars = pattern.chars().peekable();
        loop {
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            let Some(&first) = chars.peek() else { break };
            let mut kind = ' ';
            if first == '?' || first == '-' {
                kind = first;
                chars.next();
            }
            let text = match chars.peek() {
                Some('"') => {
                    chars.next();
                    let mut phrase = String::new();
                    let mut closed = false;
                    while let Some(c) = chars.next() {
                        match c {
                            '\\' => {
                                if let Some(escaped) = chars.next() {
                                    phrase.push(escaped);
                                }
                            }
                            '"' => {
                                closed = true;
                                break;
                            }
                            other => phrase.push(other),
                        }
                    }
                    if !closed {
                        return Err(unsupported(pattern));
                    }
                    phrase
                }
                Some('{' | '[' | '%' | '(') => return Err(unsupported(pattern)),
                Some(_) => {
                    let mut term = String::new();
                    while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                        if c == '"' {
                            return Err(unsupported(pattern));
                        }
                        term.push(c);
                    }
                    if matches!(term.as_str(), "&&" | "||") {
                        return Err(unsupported(pattern));
                    }
                    term
                }
                None => return Err(unsupported(pattern)),
            };
            if text.is_empty() {
                continue;
            }
            match kind {
                '?' => out.any.push(text),
                '-' => out.none.push(text),
                _ => out.all.push(text),
            }
        }
        Ok(out)
    }

    /// Whether every event matches.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty() && self.none.is_empty() && self.any.is_empty()
    }

    /// Whether `message` matches.
    pub fn matches(&self, message: &str) -> bool {
        self.all.iter().all(|t| message.contains(t.as_str()))
            && !self.none.iter().any(|t| message.contains(t.as_str()))
            && (self.any.is_empty() || self.any.iter().any(|t| message.contains(t.as_str())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        Pattern::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn terms_phrases_exclusions_and_alternatives() {
        assert!(p("").matches("anything"));
        assert!(p("   ").is_empty());
        assert!(p("ERROR").matches("an ERROR here"));
        assert!(!p("ERROR").matches("an error here"));
        assert!(p("ERROR timeout").matches("ERROR: timeout after 3s"));
        assert!(!p("ERROR timeout").matches("ERROR: refused"));
        assert!(p("\"Task timed out\"").matches("x Task timed out after 1.00 seconds"));
        assert!(!p("\"Task timed out\"").matches("Task out timed"));
        assert!(p("ERROR -Exiting").matches("ERROR once"));
        assert!(!p("ERROR -Exiting").matches("ERROR Exiting now"));
        assert!(p("?ERROR ?WARN").matches("WARN low disk"));
        assert!(!p("?ERROR ?WARN").matches("INFO ok"));
        assert!(p("\"say \\\"hi\\\"\"").matches("they say \"hi\" twice"));
        assert!(p("RequestId:").matches("START RequestId: 1"));
    }

    #[test]
    fn structured_patterns_are_refused() {
        for bad in [
            "{ $.level = \"ERROR\" }",
            "[ip, user]",
            "%ERR.*%",
            "\"open",
            "a && b",
            "(x)",
        ] {
            assert!(matches!(Pattern::parse(bad), Err(Error::InvalidParameter(_))), "{bad}");
        }
        assert!(Pattern::parse(&"x".repeat(MAX_PATTERN + 1)).is_err());
    }
}
