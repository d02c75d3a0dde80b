//! # sluice-controller: sources, Store, translation, statuses
//!
//! ```text
//! kube watchers ─┐                      (one task per kind; a kind whose CRD is missing → warn + skip)
//! manifests dir ─┴─► Store (BTreeMap<ObjectKey, Arc<T>> per kind) ──debounce──► rebuild
//!   Store ──translate::graph::build──► Graph      verdicts: attachment, valid, conditions, Notices
//!   Graph ──translate::lower──────────► ir::Config  ──watch::Sender<Arc<ir::Config>>──► sluice-proxy
//!   Graph ──status::compute───────────► StatusReport ──watch──► admin `/status`
//!                                                           └──► dyn StatusSink: ApiServerSink (leader only, SSA)
//!   sluice-proxy ──watch<Applied{generation, errors}>──► controller  (Gateway/Listener `Programmed`)
//! ```
//!
//! - [`translate`] is pure: no I/O, no clock, no globals. Everything stateful (object
//!   generations, creation timestamps, Gateway address assignment, condition transition
//!   times) lives in [`pipeline::Pipeline`], which feeds the [`Store`] and stamps the
//!   statuses.
//! - [`source::folder`] is the manifests-folder source: it walks, parses (keeping the last
//!   good parse of each file), watches and debounces, and drives the pipeline.
//! - [`source::kube`] is the cluster source: one watcher per kind feeding the same
//!   pipeline; [`status::sink`] writes statuses to the API server; [`leader`] decides
//!   which replica writes.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod error;
pub mod k8s;
pub mod leader;
pub mod notice;
pub mod pipeline;
pub mod settings;
pub mod source;
pub mod status;
pub mod store;
pub mod translate;

pub use error::{Error, Result};
pub use notice::{Level, Notice, ObjectRef};
pub use settings::Settings;
pub use status::{apply_dataplane_feedback, ObjectStatus, StatusReport};
pub use store::{ObjectKey, Store};
pub use translate::{translate, Translation};
