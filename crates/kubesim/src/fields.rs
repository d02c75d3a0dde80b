//! Field sets for `metadata.managedFields` and server-side apply.
//!
//! A field set is the set of leaf paths of an object: map keys are followed, anything
//! else (scalars, lists, empty maps) is a leaf. Lists are therefore atomic: an apply
//! replaces a list wholesale, and its owner owns the whole list.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

pub type FieldPath = Vec<String>;
pub type FieldSet = BTreeSet<FieldPath>;

/// Which part of an object a write may touch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The main resource; `status` is excluded when the type has a status subresource.
    Main { exclude_status: bool },
    /// The `status` subresource: only `status`.
    Status,
}

impl Scope {
    pub fn subresource(self) -> Option<&'static str> {
        match self {
            Scope::Main { .. } => None,
            Scope::Status => Some("status"),
        }
    }

    /// Whether a top-level key is written through this scope.
    pub fn includes_top(self, key: &str) -> bool {
        match self {
            Scope::Status => key == "status",
            Scope::Main { exclude_status } => {
                !(key == "apiVersion" || key == "kind" || (exclude_status && key == "status"))
            }
        }
    }
}

/// Metadata fields a client owns (everything else in metadata is server-managed).
pub const CLIENT_METADATA: &[&str] = &["labels", "annotations", "finalizers", "ownerReferences"];

fn leaves(v: &Value, prefix: &mut FieldPath, out: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                prefix.push(k.clone());
                leaves(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {
            out.insert(prefix.clone());
        }
    }
}

/// The leaf paths of `obj` that a write through `scope` covers.
pub fn scoped_paths(obj: &Value, scope: Scope) -> FieldSet {
    let mut out = FieldSet::new();
    let Some(m) = obj.as_object() else {
        return out;
    };
    for (k, v) in m {
        if k == "metadata" {
            if scope == Scope::Status {
                continue;
            }
            if let Some(meta) = v.as_object() {
                for mk in CLIENT_METADATA {
                    if let Some(mv) = meta.get(*mk) {
                        let mut prefix = vec!["metadata".to_string(), mk.to_string()];
                        leaves(mv, &mut prefix, &mut out);
                    }
                }
            }
            continue;
        }
        if !scope.includes_top(k) {
            continue;
        }
        let mut prefix = vec![k.clone()];
        leaves(v, &mut prefix, &mut out);
    }
    out
}

/// The part of `obj` a write through `scope` covers, as an object.
pub fn scoped_view(obj: &Value, scope: Scope) -> Value {
    let mut out = Map::new();
    if let Some(m) = obj.as_object() {
        for (k, v) in m {
            if k == "metadata" {
                if scope == Scope::Status {
                    continue;
                }
                let mut meta = Map::new();
                if let Some(mm) = v.as_object() {
                    for mk in CLIENT_METADATA {
                        if let Some(mv) = mm.get(*mk) {
                            meta.insert(mk.to_string(), mv.clone());
                        }
                    }
                }
                out.insert(k.clone(), Value::Object(meta));
            } else if scope.includes_top(k) {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

pub fn value_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for seg in path {
        cur = cur.as_object()?.get(seg)?;
    }
    Some(cur)
}

/// Removes the field at `path`, then any map left empty by the removal (below the
/// top level).
pub fn remove_at(obj: &mut Value, path: &[String]) {
    fn rec(cur: &mut Value, path: &[String], depth: usize) -> bool {
        let Some(m) = cur.as_object_mut() else {
            return false;
        };
        if path.len() == 1 {
            m.remove(&path[0]);
        } else if let Some(child) = m.get_mut(&path[0]) {
            if rec(child, &path[1..], depth + 1) {
                m.remove(&path[0]);
            }
        }
        depth >= 1 && m.is_empty()
    }
    if !path.is_empty() {
        rec(obj, path, 0);
    }
}

/// True if one path is a prefix of the other (they designate overlapping fields).
pub fn overlaps(a: &[String], b: &[String]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

pub fn set_overlaps(set: &FieldSet, p: &[String]) -> bool {
    set.iter().any(|q| overlaps(q, p))
}

/// RFC 7386-style deep merge where `null` removes a key; maps merge, anything else
/// replaces.
pub fn deep_merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else if let Some(existing) = t.get_mut(k) {
                    if existing.is_object() && v.is_object() {
                        deep_merge(existing, v);
                    } else {
                        *existing = strip_nulls(v);
                    }
                } else {
                    t.insert(k.clone(), strip_nulls(v));
                }
            }
        }
        (t, p) => *t = strip_nulls(p),
    }
}

fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Encodes a field set as `fieldsV1`.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut cur = &mut root;
        for seg in path {
            let entry = cur
                .entry(format!("f:{seg}"))
                .or_insert_with(|| Value::Object(Map::new()));
            cur = entry.as_object_mut().expect("fieldsV1 nodes are objects");
        }
    }
    Value::Object(root)
}

/// Decodes `fieldsV1` (as written by [`to_fields_v1`]; other key kinds are leaves).
pub fn from_fields_v1(v: &Value) -> FieldSet {
    fn rec(v: &Value, prefix: &mut FieldPath, out: &mut FieldSet) {
        let children: Vec<(&String, &Value)> = v
            .as_object()
            .map(|m| m.iter().filter(|(k, _)| k.starts_with("f:")).collect())
            .unwrap_or_default();
        if children.is_empty() {
            if !prefix.is_empty() {
                out.insert(prefix.clone());
            }
            return;
        }
        for (k, child) in children {
            prefix.push(k[2..].to_string());
            rec(child, prefix, out);
            prefix.pop();
        }
    }
    let mut out = FieldSet::new();
    rec(v, &mut Vec::new(), &mut out);
    out
}

/// One `metadata.managedFields` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct ManagedEntry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: Option<String>,
    pub fields: FieldSet,
}

impl ManagedEntry {
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), self.manager.clone().into());
        m.insert("operation".into(), self.operation.clone().into());
        m.insert("apiVersion".into(), self.api_version.clone().into());
        m.insert("time".into(), self.time.clone().into());
        m.insert("fieldsType".into(), "FieldsV1".into());
        m.insert("fieldsV1".into(), to_fields_v1(&self.fields));
        if let Some(s) = &self.subresource {
            m.insert("subresource".into(), s.clone().into());
        }
        Value::Object(m)
    }

    pub fn from_json(v: &Value) -> Option<ManagedEntry> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        Some(ManagedEntry {
            manager: s("manager")?,
            operation: s("operation").unwrap_or_else(|| "Update".into()),
            api_version: s("apiVersion").unwrap_or_default(),
            time: s("time").unwrap_or_default(),
            subresource: s("subresource"),
            fields: v.get("fieldsV1").map(from_fields_v1).unwrap_or_default(),
        })
    }
}

pub fn read_managed(obj: &Value) -> Vec<ManagedEntry> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(ManagedEntry::from_json).collect())
        .unwrap_or_default()
}

pub fn write_managed(obj: &mut Value, entries: &[ManagedEntry]) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty() && !e.manager.is_empty())
        .map(ManagedEntry::to_json)
        .collect();
    if list.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(list));
    }
}

/// Renders a path as `.spec.listeners` for conflict messages.
pub fn path_string(p: &[String]) -> String {
    p.iter().map(|s| format!(".{s}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_and_fields_v1_round_trip() {
        let obj = json!({
            "apiVersion": "v1", "kind": "X",
            "metadata": {"name": "a", "labels": {"app": "web"}},
            "spec": {"a": 1, "b": {"c": [1, 2]}, "e": {}},
            "status": {"x": true}
        });
        let main = scoped_paths(
            &obj,
            Scope::Main {
                exclude_status: true,
            },
        );
        let want: FieldSet = [
            vec!["metadata", "labels", "app"],
            vec!["spec", "a"],
            vec!["spec", "b", "c"],
            vec!["spec", "e"],
        ]
        .into_iter()
        .map(|p| p.into_iter().map(String::from).collect())
        .collect();
        assert_eq!(main, want);
        assert_eq!(from_fields_v1(&to_fields_v1(&main)), main);
        let status = scoped_paths(&obj, Scope::Status);
        assert_eq!(status.len(), 1);
    }

    #[test]
    fn remove_prunes_empty_maps() {
        let mut obj = json!({"spec": {"a": {"b": 1}, "c": 2}});
        remove_at(&mut obj, &["spec".into(), "a".into(), "b".into()]);
        assert_eq!(obj, json!({"spec": {"c": 2}}));
        remove_at(&mut obj, &["spec".into(), "c".into()]);
        assert_eq!(obj, json!({}));
    }
}
