//! Just enough of the Kubernetes protobuf encoding to read the request bodies kubectl's
//! typed commands send (`kubectl create namespace|configmap|secret`): the `k8s\0`
//! envelope and the Namespace, ConfigMap and Secret messages. Everything else is
//! answered with 415.

use base64::Engine;
use serde_json::{json, Map, Value};

enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        out |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(out);
        }
    }
    None
}

fn fields(buf: &[u8]) -> Option<Vec<(u64, Wire<'_>)>> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let (field, wire) = (key >> 3, key & 7);
        let w = match wire {
            0 => Wire::Varint(varint(buf, &mut pos)?),
            1 => {
                pos += 8;
                Wire::Fixed
            }
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).ok()?;
                let end = pos.checked_add(len)?;
                let b = buf.get(pos..end)?;
                pos = end;
                Wire::Bytes(b)
            }
            5 => {
                pos += 4;
                Wire::Fixed
            }
            _ => return None,
        };
        out.push((field, w));
    }
    (pos == buf.len()).then_some(out)
}

fn string(b: &[u8]) -> Option<String> {
    String::from_utf8(b.to_vec()).ok()
}

/// Inserts a string field unless empty (proto2 sends unset strings as "").
fn insert_str(m: &mut Map<String, Value>, key: &str, b: &[u8]) -> Option<()> {
    let s = string(b)?;
    if !s.is_empty() {
        m.insert(key.into(), s.into());
    }
    Some(())
}

/// A map entry (key = 1, value = 2); values as strings or base64 of bytes.
fn map_entry(b: &[u8], as_base64: bool) -> Option<(String, Value)> {
    let mut k = String::new();
    let mut v = Value::String(String::new());
    for (f, w) in fields(b)? {
        if let Wire::Bytes(x) = w {
            match f {
                1 => k = string(x)?,
                2 if as_base64 => {
                    v = Value::String(base64::engine::general_purpose::STANDARD.encode(x))
                }
                2 => v = Value::String(string(x)?),
                _ => {}
            }
        }
    }
    Some((k, v))
}

fn insert_map(obj: &mut Map<String, Value>, key: &str, entry: (String, Value)) {
    let m = obj.entry(key).or_insert_with(|| json!({}));
    if let Some(m) = m.as_object_mut() {
        m.insert(entry.0, entry.1);
    }
}

fn push(obj: &mut Map<String, Value>, key: &str, v: Value) {
    let a = obj.entry(key).or_insert_with(|| json!([]));
    if let Some(a) = a.as_array_mut() {
        a.push(v);
    }
}

fn owner_reference(b: &[u8]) -> Option<Value> {
    let mut o = Map::new();
    for (f, w) in fields(b)? {
        match (f, w) {
            (1, Wire::Bytes(x)) => {
                o.insert("kind".into(), string(x)?.into());
            }
            (3, Wire::Bytes(x)) => {
                o.insert("name".into(), string(x)?.into());
            }
            (4, Wire::Bytes(x)) => {
                o.insert("uid".into(), string(x)?.into());
            }
            (5, Wire::Bytes(x)) => {
                o.insert("apiVersion".into(), string(x)?.into());
            }
            (6, Wire::Varint(x)) => {
                o.insert("controller".into(), (x != 0).into());
            }
            (7, Wire::Varint(x)) => {
                o.insert("blockOwnerDeletion".into(), (x != 0).into());
            }
            _ => {}
        }
    }
    Some(Value::Object(o))
}

fn object_meta(b: &[u8]) -> Option<Value> {
    let mut m = Map::new();
    for (f, w) in fields(b)? {
        let Wire::Bytes(x) = w else { continue };
        match f {
            1 => insert_str(&mut m, "name", x)?,
            2 => insert_str(&mut m, "generateName", x)?,
            3 => insert_str(&mut m, "namespace", x)?,
            11 => insert_map(&mut m, "labels", map_entry(x, false)?),
            12 => insert_map(&mut m, "annotations", map_entry(x, false)?),
            13 => push(&mut m, "ownerReferences", owner_reference(x)?),
            14 => push(&mut m, "finalizers", string(x)?.into()),
            _ => {}
        }
    }
    Some(Value::Object(m))
}

fn decode_object(kind: &str, api_version: &str, raw: &[u8]) -> Option<Value> {
    let mut o = Map::new();
    o.insert("apiVersion".into(), api_version.into());
    o.insert("kind".into(), kind.into());
    for (f, w) in fields(raw)? {
        match (kind, f, w) {
            (_, 1, Wire::Bytes(x)) => {
                o.insert("metadata".into(), object_meta(x)?);
            }
            ("Namespace", 2, Wire::Bytes(x)) => {
                let mut spec = Map::new();
                for (sf, sw) in fields(x)? {
                    if let (1, Wire::Bytes(s)) = (sf, sw) {
                        push(&mut spec, "finalizers", string(s)?.into());
                    }
                }
                o.insert("spec".into(), Value::Object(spec));
            }
            ("ConfigMap", 2, Wire::Bytes(x)) => insert_map(&mut o, "data", map_entry(x, false)?),
            ("ConfigMap", 3, Wire::Bytes(x)) => {
                insert_map(&mut o, "binaryData", map_entry(x, true)?)
            }
            ("ConfigMap", 4, Wire::Varint(x)) | ("Secret", 5, Wire::Varint(x)) => {
                o.insert("immutable".into(), (x != 0).into());
            }
            ("Secret", 2, Wire::Bytes(x)) => insert_map(&mut o, "data", map_entry(x, true)?),
            ("Secret", 3, Wire::Bytes(x)) => insert_str(&mut o, "type", x)?,
            ("Secret", 4, Wire::Bytes(x)) => {
                // stringData is write-only: the API server folds it into data.
                let (k, v) = map_entry(x, false)?;
                let enc = base64::engine::general_purpose::STANDARD
                    .encode(v.as_str().unwrap_or("").as_bytes());
                insert_map(&mut o, "data", (k, enc.into()));
            }
            _ => {}
        }
    }
    Some(Value::Object(o))
}

/// Decodes a `application/vnd.kubernetes.protobuf` body of a supported kind.
pub fn decode(body: &[u8]) -> Option<Value> {
    let rest = body.strip_prefix(b"k8s\0")?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    for (f, w) in fields(rest)? {
        match (f, w) {
            (1, Wire::Bytes(tm)) => {
                for (tf, tw) in fields(tm)? {
                    match (tf, tw) {
                        (1, Wire::Bytes(x)) => api_version = string(x)?,
                        (2, Wire::Bytes(x)) => kind = string(x)?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(x)) => raw = x,
            _ => {}
        }
    }
    if !matches!(kind.as_str(), "Namespace" | "ConfigMap" | "Secret") || api_version != "v1" {
        return None;
    }
    decode_object(&kind, &api_version, raw)
}
