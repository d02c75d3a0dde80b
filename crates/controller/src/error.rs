//! The crate's error type.
use std::path::PathBuf;

/// Errors of the controller's sources and pipeline (translation itself never fails: bad
/// input becomes conditions and [`crate::Notice`]s).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The manifests folder could not be read.
    #[error("cannot read manifests folder {path}: {source}")]
    ReadDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file watcher could not be started.
    #[error("cannot watch manifests folder {path}: {source}")]
    Watch {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: notify::Error,
    },
    /// A Kubernetes API call or client setup failed.
    #[error("{context}: {source}")]
    Kube {
        /// What was being done.
        context: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// A short, stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::ReadDir { .. } => "read_dir",
            Error::Watch { .. } => "watch",
            Error::Kube { .. } => "kube",
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
