//! Translation: `Store` → (`ir::Config`, statuses, notices). Pure: no I/O, no clock, no
//! globals; the same Store gives byte-identical output.
pub mod backend;
pub mod graph;
pub mod hostname;
pub mod lower;
pub mod precedence;

use crate::notice::Notice;
use crate::settings::Settings;
use crate::status::StatusReport;
use crate::store::Store;

/// What translation produces.
#[derive(Debug, Clone)]
pub struct Translation {
    /// The IR (generation 0: the pipeline sets it).
    pub config: sluice_ir::Config,
    /// Statuses of managed objects (`lastTransitionTime` zero: the pipeline stamps it).
    pub statuses: StatusReport,
    /// Bad input found, sorted.
    pub notices: Vec<Notice>,
}

/// Translates the Store: Graph, then IR and statuses from the Graph.
pub fn translate(store: &Store, settings: &Settings) -> Translation {
    let graph = graph::build(store, settings);
    let (config, lower_notices) = lower::lower(&graph);
    let statuses = crate::status::compute::compute(&graph, settings);
    let mut notices = graph.notices;
    notices.extend(lower_notices);
    notices.sort();
    notices.dedup();
    Translation {
        config,
        statuses,
        notices,
    }
}

/// `group/kind` as users write it (`Service` for the core group).
pub fn group_kind(group: &str, kind: &str) -> String {
    if group.is_empty() || group == "core" {
        kind.to_string()
    } else {
        format!("{group}/{kind}")
    }
}
