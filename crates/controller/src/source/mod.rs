//! Sources of objects: the manifests folder (this issue), the Kubernetes API (later).
pub mod folder;
pub mod parse;
