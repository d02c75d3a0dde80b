//! Notices: bad input surfaced to the user (logs now, Events in cluster mode later).
use serde::Serialize;

/// Severity of a [`Notice`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Level {
    /// Something is ignored or degraded, the rest works.
    Warning,
    /// Something could not be used at all.
    Error,
}

/// The object a notice is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    /// Kind (`HTTPRoute`, ...), or `File` for a manifest file.
    pub kind: String,
    /// Namespace; empty for cluster-scoped objects and files.
    pub namespace: String,
    /// Name (the path for a file).
    pub name: String,
}

impl ObjectRef {
    /// A reference to an object.
    pub fn new(kind: &str, namespace: &str, name: &str) -> ObjectRef {
        ObjectRef {
            kind: kind.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

/// Bad input, named precisely.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notice {
    /// Severity.
    pub level: Level,
    /// The object at fault.
    pub object: ObjectRef,
    /// The field at fault (`spec.rules[0].backendRefs[1]`), if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What is wrong, capitalised, ending with a period.
    pub message: String,
}

impl Notice {
    /// A warning.
    pub fn warning(object: ObjectRef, field: Option<String>, message: impl Into<String>) -> Notice {
        Notice {
            level: Level::Warning,
            object,
            field,
            message: message.into(),
        }
    }

    /// An error.
    pub fn error(object: ObjectRef, field: Option<String>, message: impl Into<String>) -> Notice {
        Notice {
            level: Level::Error,
            object,
            field,
            message: message.into(),
        }
    }

    /// Logs the notice with `tracing`.
    pub fn log(&self) {
        let field = self.field.as_deref().unwrap_or("");
        let object = format!(
            "{} {}/{}",
            self.object.kind, self.object.namespace, self.object.name
        );
        match self.level {
            Level::Warning => tracing::warn!(%object, field, "{}", self.message),
            Level::Error => tracing::error!(%object, field, "{}", self.message),
        }
    }
}
