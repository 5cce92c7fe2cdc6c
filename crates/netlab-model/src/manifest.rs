//! YAML streams into Kubernetes objects, each remembering the file and line it came from.
//!
//! The YAML parser gives positions only for errors, so each object keeps its document's text and first line;
//! [`Object::line_of`] finds a key path in that text by indentation, which is exact for block-style YAML (what
//! people and kustomize write) and falls back to the document's first line for anything else.

use serde_json::Value;

/// One text of manifests and the name objects and errors use for it.
#[derive(Debug, Clone)]
pub struct Source {
    /// The path as given (or `<stdin>`, or `DIR (kubectl kustomize)`).
    pub name: String,
    /// The whole text.
    pub text: String,
    /// The apply unit it belongs to: the path given on the command line that led to it (a `kubectl apply -k` or
    /// `-f` of its own), or `<stdin>`.
    pub unit: String,
}

impl Source {
    /// A text that is an apply unit of its own, named `name`.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Source {
        let name = name.into();
        Source {
            unit: name.clone(),
            name,
            text: text.into(),
        }
    }
}

/// A document that is not a Kubernetes object: where and why. Lint reports it as rule `yaml-parse`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ParseError {
    /// The source's name.
    pub file: String,
    /// The line (1-based) in the source.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// One Kubernetes object from a manifest.
#[derive(Debug, Clone)]
pub struct Object {
    pub kind: String,
    pub api_version: String,
    /// `metadata.name` (empty where absent).
    pub name: String,
    /// `metadata.namespace`, if written.
    pub namespace: Option<String>,
    /// The whole object, as JSON.
    pub value: Value,
    /// The source's name.
    pub file: String,
    /// The apply unit its source belongs to ([`Source::unit`]).
    pub unit: String,
    /// The document's first line in the source (1-based).
    pub line: usize,
    /// The document's lines, for locating keys.
    lines: Vec<String>,
}

impl Object {
    /// `Kind namespace/name` (or `Kind name` for cluster-scoped objects), for messages.
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {}/{}", self.kind, ns, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }

    /// The namespace the object lands in when applied without `-n`.
    pub fn namespace_or_default(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }

    /// The 1-based line of the key at the end of `path` (mapping keys only, list levels skipped), or the
    /// deepest key of `path` found, or the document's first line.
    pub fn line_of(&self, path: &[&str]) -> usize {
        let mut best = self.line;
        let mut from = 0;
        let mut parent_indent: Option<usize> = None;
        for key in path {
            let mut found = None;
            for (i, raw) in self.lines.iter().enumerate().skip(from) {
                let (indent, rest) = split_indent(raw);
                if rest.is_empty() || rest.starts_with('#') {
                    continue;
                }
                if let Some(p) = parent_indent {
                    if indent <= p {
                        break;
                    }
                }
                if key_of(rest) == Some(*key) {
                    found = Some((i, indent));
                    break;
                }
            }
            match found {
                Some((i, indent)) => {
                    best = self.line + i;
                    from = i + 1;
                    parent_indent = Some(indent);
                }
                None => break,
            }
        }
        best
    }
}

impl Object {
    /// The line of line `inner` (1-based) of a block scalar at `path` (`config: |`); the key's line where the value
    /// is not a block scalar.
    pub fn line_in_block(&self, path: &[&str], inner: usize) -> usize {
        let key_line = self.line_of(path);
        let is_block = self
            .lines
            .get(key_line - self.line)
            .map(|l| {
                let v = l.trim_end();
                v.ends_with('|')
                    || v.ends_with("|-")
                    || v.ends_with("|+")
                    || v.ends_with('>')
                    || v.ends_with(">-")
            })
            .unwrap_or(false);
        if is_block {
            key_line + inner
        } else {
            key_line
        }
    }
}

/// Leading spaces, counting a list's `- ` as indentation.
fn split_indent(line: &str) -> (usize, &str) {
    let mut rest = line;
    let mut indent = 0;
    loop {
        let trimmed = rest.trim_start_matches(' ');
        indent += rest.len() - trimmed.len();
        if let Some(after) = trimmed.strip_prefix("- ") {
            indent += 2;
            rest = after;
        } else {
            return (indent, trimmed.trim_end());
        }
    }
}

fn key_of(rest: &str) -> Option<&str> {
    let (key, after) = if let Some(q) = rest.strip_prefix('"') {
        let end = q.find('"')?;
        (&q[..end], &q[end + 1..])
    } else if let Some(q) = rest.strip_prefix('\'') {
        let end = q.find('\'')?;
        (&q[..end], &q[end + 1..])
    } else {
        let end = rest.find(':')?;
        (&rest[..end], &rest[end..])
    };
    let after = after.trim_start();
    (after.starts_with(':') && (after.len() == 1 || after[1..].starts_with([' ', '\t'])))
        .then_some(key)
}

/// Every object in the sources, and an error for every document that is not one.
pub fn parse(sources: &[Source]) -> (Vec<Object>, Vec<ParseError>) {
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for source in sources {
        for (line, lines) in documents(&source.text) {
            let text = lines.join("\n");
            let yaml: serde_norway::Value = match serde_norway::from_str(&text) {
                Ok(v) => v,
                Err(e) => {
                    let at = e.location().map(|l| line + l.line() - 1).unwrap_or(line);
                    errors.push(ParseError {
                        file: source.name.clone(),
                        line: at,
                        message: format!("does not parse: {e}"),
                    });
                    continue;
                }
            };
            if yaml.is_null() {
                continue;
            }
            let value: Value = match serde_json::to_value(&yaml) {
                Ok(v) => v,
                Err(e) => {
                    errors.push(ParseError {
                        file: source.name.clone(),
                        line,
                        message: format!("not representable as JSON: {e}"),
                    });
                    continue;
                }
            };
            let base = Object {
                kind: String::new(),
                api_version: String::new(),
                name: String::new(),
                namespace: None,
                value: Value::Null,
                file: source.name.clone(),
                unit: source.unit.clone(),
                line,
                lines,
            };
            // `kubectl get -o yaml` and some tools write a List; its items are the objects.
            let items = match value.get("kind").and_then(Value::as_str) {
                Some(k) if k == "List" || k.ends_with("List") && value.get("items").is_some() => {
                    value
                        .get("items")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default()
                }
                _ => vec![value],
            };
            for item in items {
                match object(&base, item) {
                    Ok(o) => objects.push(o),
                    Err(msg) => errors.push(ParseError {
                        file: source.name.clone(),
                        line,
                        message: msg,
                    }),
                }
            }
        }
    }
    (objects, errors)
}

fn object(base: &Object, value: Value) -> Result<Object, String> {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let kind = text(value.get("kind")).ok_or("not a Kubernetes object: no `kind`")?;
    let api_version =
        text(value.get("apiVersion")).ok_or("not a Kubernetes object: no `apiVersion`")?;
    let meta = value.get("metadata");
    let name = text(meta.and_then(|m| m.get("name"))).unwrap_or_default();
    let namespace = text(meta.and_then(|m| m.get("namespace")));
    Ok(Object {
        kind,
        api_version,
        name,
        namespace,
        value,
        ..base.clone()
    })
}

/// Splits a YAML stream into documents: (first line, lines).
fn documents(text: &str) -> Vec<(usize, Vec<String>)> {
    let mut docs = Vec::new();
    let mut start = 1;
    let mut current: Vec<String> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let marker = line == "---" || line.starts_with("--- ") || line == "...";
        if marker {
            docs.push((start, std::mem::take(&mut current)));
            start = i + 2;
        } else {
            current.push(line.to_owned());
        }
    }
    docs.push((start, current));
    docs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Object {
        let (mut objects, findings) = parse(&[Source::new("t.yaml", text)]);
        assert!(findings.is_empty(), "{findings:?}");
        objects.remove(0)
    }

    #[test]
    fn locates_nested_keys_and_falls_back_to_the_deepest_found() {
        let o = one(include_str!("../tests/fixtures/manifest/pod.yaml"));
        assert_eq!(o.line, 3);
        assert_eq!(o.line_of(&["metadata", "annotations", "x"]), 8);
        assert_eq!(o.line_of(&["spec", "containers", "image"]), 12);
        assert_eq!(o.line_of(&["metadata", "labels"]), 5);
        assert_eq!(o.line_of(&["nothing"]), 3);
    }

    #[test]
    fn reports_the_line_of_a_parse_error_and_skips_empty_documents() {
        let (objects, findings) = parse(&[Source::new(
            "t.yaml",
            include_str!("../tests/fixtures/manifest/parse-error.yaml"),
        )]);
        assert_eq!(objects.len(), 1);
        assert_eq!(findings.len(), 1);
        assert!(findings[0].line >= 7, "{findings:?}");
    }

    #[test]
    fn expands_lists_and_refuses_documents_without_kind() {
        let (objects, findings) = parse(&[Source::new(
            "t",
            include_str!("../tests/fixtures/manifest/list-and-kindless.yaml"),
        )]);
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].name, "n1");
        assert_eq!(findings.len(), 1);
    }
}
