//! Manifest parsing: YAML (multi-document) or JSON text → objects of the kinds the
//! Store holds, each validated against its typed struct, with file lines in errors.
use crate::store::{Kind, Object, ObjectKey};
use serde_json::Value;

/// An object read from a manifest, validated, with the API server's namespace default
/// applied (`metadata.namespace` is set for namespaced kinds).
#[derive(Debug, Clone, PartialEq)]
pub struct RawObject {
    /// Kind.
    pub kind: Kind,
    /// Namespace (empty for cluster-scoped) and name.
    pub key: ObjectKey,
    /// The object as written (plus the namespace default).
    pub value: Value,
    /// 1-based line of the document the object comes from.
    pub line: usize,
}

/// Why a file did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// Parses one manifest file's text. `json` selects the JSON parser (else YAML, multi
/// document). Unknown kinds are skipped with a debug log. Any error fails the whole
/// file (the caller keeps the file's previous objects).
pub fn parse_manifest(text: &str, json: bool) -> Result<Vec<RawObject>, ParseError> {
    let mut out = Vec::new();
    if json {
        let value: Value = serde_json::from_str(text).map_err(|e| ParseError {
            line: e.line().max(1),
            reason: e.to_string(),
        })?;
        collect(value, 1, &mut out)?;
        return Ok(out);
    }
    for (start, doc) in split_documents(text) {
        if doc.lines().all(|l| {
            let t = l.trim();
            t.is_empty() || t.starts_with('#')
        }) {
            continue;
        }
        let value: Value = serde_yaml::from_str(&doc).map_err(|e| {
            let line = e.location().map(|l| l.line()).unwrap_or(1);
            ParseError {
                line: start + line.saturating_sub(1),
                reason: strip_location(&e.to_string()),
            }
        })?;
        if value.is_null() {
            continue;
        }
        collect(value, start, &mut out)?;
    }
    Ok(out)
}

/// serde_yaml appends " at line X column Y" relative to the document; the caller
/// reports the absolute line instead.
fn strip_location(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// Splits YAML text at `---` document markers: (1-based first line, text) per document.
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    for (i, line) in text.lines().enumerate() {
        let is_marker = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if is_marker {
            docs.push((start, std::mem::take(&mut current)));
            start = i + 2;
            // Content after the marker on the same line belongs to the new document.
            let rest = line[3..].trim();
            if !rest.is_empty() && !rest.starts_with('#') {
                current.push_str(rest);
                current.push('\n');
                start = i + 1;
            }
            continue;
        }
        if line == "..." {
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    docs.push((start, current));
    docs
}

fn collect(value: Value, line: usize, out: &mut Vec<RawObject>) -> Result<(), ParseError> {
    let err = |reason: String| ParseError { line, reason };
    let Value::Object(map) = &value else {
        return Err(err("document is not a mapping".to_string()));
    };
    let api_version = map
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let kind = map
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let (api_version, kind) = (api_version.as_str(), kind.as_str());
    if api_version.is_empty() || kind.is_empty() {
        return Err(err("document has no apiVersion or kind".to_string()));
    }
    if kind == "List" || (kind.ends_with("List") && map.contains_key("items")) {
        let Some(items) = map.get("items").and_then(Value::as_array) else {
            return Err(err(format!("{kind} has no items array")));
        };
        for item in items.clone() {
            collect(item, line, out)?;
        }
        return Ok(());
    }
    let Some(k) = Kind::identify(api_version, kind) else {
        tracing::debug!(api_version, kind, "ignoring object of unknown kind");
        return Ok(());
    };
    let mut value = value;
    let meta = value
        .as_object_mut()
        .and_then(|m| {
            let e = m
                .entry("metadata")
                .or_insert_with(|| Value::Object(Default::default()));
            e.as_object_mut()
        })
        .ok_or_else(|| err(format!("{kind}: metadata is not a mapping")))?;
    let name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if name.is_empty() {
        return Err(err(format!("{kind}: metadata.name is required")));
    }
    let namespace = if k.namespaced() {
        let ns = meta
            .get("namespace")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("default");
        let ns = ns.to_string();
        meta.insert("namespace".to_string(), Value::String(ns.clone()));
        ns
    } else {
        meta.remove("namespace");
        String::new()
    };
    if let Err(e) = Object::from_value(k, value.clone()) {
        return Err(err(format!(
            "{kind} {}: {e}",
            ObjectKey::new(&namespace, &name)
        )));
    }
    out.push(RawObject {
        kind: k,
        key: ObjectKey { namespace, name },
        value,
        line,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Multi-document YAML: documents are found, lines are absolute.
    #[test]
    fn multi_doc_lines() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n---\n# c\napiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ports: [{port: 80}]\n";
        let objs = parse_manifest(text, false).unwrap();
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[1].line, 6);
        assert_eq!(objs[1].key, ObjectKey::new("default", "s"));
        let bad = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: s\n   bad: [\n";
        let e = parse_manifest(bad, false).unwrap_err();
        assert!(e.line >= 9, "{e}");
    }

    /// A typed validation failure names the object.
    #[test]
    fn typed_error() {
        let text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ports: [{port: eighty}]\n";
        let e = parse_manifest(text, false).unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.reason.contains("Service default/s"), "{e}");
    }
}
