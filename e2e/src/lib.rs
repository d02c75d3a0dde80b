//! # sluice-e2e: end-to-end tests of the real `sluice` binary
//!
//! Tests in `tests/` write manifests into a temp folder, start `sluice run --manifests`
//! on it ([`harness::Sluice`]), start in-process echo backends on loopback
//! ([`echo::EchoServer`]) and send real HTTP requests over real sockets
//! ([`client::HttpClient`]).
//!
//! Conventions that keep tests independent and parallel:
//! - every test's Gateway binds its own loopback address (`127.77.<file>.<test>`), so
//!   tests never compete for a port;
//! - every wait is a condition polled with a deadline ([`harness::Sluice::wait_status`],
//!   [`harness::Sluice::wait_reply`], ...), never a fixed sleep;
//! - files are written with [`manifests::write_atomic`], as the conformance runner does.
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
