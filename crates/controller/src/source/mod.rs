//! Sources of objects: the manifests folder (this issue), the Kubernetes API ([`kube`]).
pub mod folder;
pub mod kube;
pub mod parse;
