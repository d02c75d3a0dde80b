//! # sluice-e2e: end-to-end tests of the real `sluice` binary
//!
//! Tests in `tests/` write manifests into a temp folder, start `sluice run --manifests`
//! on it ([`harness::Sluice`]), start in-process echo backends on loopback
//! ([`echo::EchoServer`]) and send real HTTP requests over real sockets
//! ([`client::HttpClient`]).
//!
//! Cluster-mode tests (`tests/cluster_*.rs`) run the binary without `--manifests`, with
//! `KUBECONFIG` pointing at the Kubernetes API simulator (`sluice-kubesim`), through
//! [`harness::Sluice::start_cluster`]; `tests/manifests.rs` checks `manifests/`.
//!
//! Conventions that keep tests independent and parallel:
//! - every test's Gateway binds its own loopback address (`127.77.<file>.<test>`), so
//!   tests never compete for a port;
//! - every wait is a condition polled with a deadline ([`harness::Sluice::wait_status`],
//!   [`harness::Sluice::wait_reply`], ...), never a fixed sleep;
//! - files are written with [`manifests::write_atomic`], as the conformance runner does.
//!
//! Running: `cargo test -p sluice-e2e` builds `sluice` itself (once per test binary, in
//! the tests' profile and target dir); `SLUICE_BIN=path/to/sluice` uses a given binary
//! instead (a relative path is taken from the workspace root). Each run of the binary
//! logs to `<target>/e2e-logs/<test>-<pid>-<n>.log`; a failing test prints that path and
//! the log's tail. Tests run in parallel; they need the 127.77.0.0/16 loopback range
//! (any Linux host has all of 127.0.0.0/8 on `lo`).
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod client;
pub mod echo;
pub mod fixture;
pub mod harness;
pub mod manifests;

pub use client::{HttpClient, Reply};
pub use echo::{EchoBody, EchoServer};
pub use fixture::{test_addr, Fixture, GATEWAY};
pub use harness::Sluice;
