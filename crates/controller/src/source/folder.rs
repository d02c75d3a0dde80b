//! The manifests-folder source: walk, parse (keeping the last good parse of each file),
//! watch with `notify`, debounce, rebuild through the [`Pipeline`], publish.
use super::parse::{parse_manifest, ParseError, RawObject};
use crate::error::{Error, Result};
use crate::notice::{Notice, ObjectRef};
use crate::pipeline::Pipeline;
use crate::settings::Settings;
use crate::status::StatusReport;
use crate::store::{Kind, ObjectKey};
use sluice_ir::{Applied, Config};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// How long the folder must be quiet before a rebuild.
pub const DEBOUNCE: Duration = Duration::from_millis(75);
/// Rescan interval, in case a file system event was missed.
pub const RESCAN: Duration = Duration::from_secs(2);
const MAX_DEPTH: usize = 32;

/// One manifest file: its last content, its last good parse, its current error.
#[derive(Debug, Clone, Default)]
struct FileState {
    content: Option<String>,
    good: Vec<RawObject>,
    error: Option<ParseError>,
    /// Since when the file has been found blank while it had objects: probably an
    /// editor caught between a truncate and a write. Its objects stay in service for
    /// [`EMPTY_GRACE`] before the blank content is believed.
    empty_since: Option<std::time::Instant>,
}

/// The parsed state of a manifests folder.
#[derive(Debug, Clone)]
pub struct FolderState {
    dir: PathBuf,
    files: BTreeMap<PathBuf, FileState>,
    read_error: Option<String>,
}

/// How long a file that turned blank keeps its objects in service: long enough for an
/// editor that truncates and then writes, even on a loaded machine.
pub const EMPTY_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

fn is_blank(text: &str) -> bool {
    text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---"
    })
}

/// Loads every manifest below `dir` (synchronously).
pub fn load_dir(dir: &Path) -> FolderState {
    let mut state = FolderState {
        dir: dir.to_path_buf(),
        files: BTreeMap::new(),
        read_error: None,
    };
    state.refresh();
    state
}

/// Is this a file the folder source reads? `*.yaml|*.yml|*.json`, not hidden, not an
/// editor temporary file.
pub fn is_manifest(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    if name.starts_with('.') || name.starts_with('#') || name.ends_with('~') {
        return false;
    }
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_none_or(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if depth < MAX_DEPTH {
                // An unreadable subfolder is skipped, the rest still loads.
                if let Err(e) = walk(&path, depth + 1, out) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read manifests subfolder");
                }
            }
        } else if meta.is_file() && is_manifest(&path) {
            out.push(path);
        }
    }
    Ok(())
}

impl FolderState {
    /// Re-reads the folder. Files whose content changed are parsed again; a file that
    /// fails keeps its last good objects. Returns whether any file changed.
    pub fn refresh(&mut self) -> bool {
        let mut paths = Vec::new();
        match walk(&self.dir, 0, &mut paths) {
            Ok(()) => self.read_error = None,
            Err(e) => {
                // Keep everything: a folder that vanished for a moment must not take
                // routes down.
                let msg = e.to_string();
                let changed = self.read_error.as_ref() != Some(&msg);
                if changed {
                    tracing::warn!(dir = %self.dir.display(), error = %msg, "cannot read manifests folder");
                }
                self.read_error = Some(msg);
                return false;
            }
        }
        let mut changed = false;
        let mut files = BTreeMap::new();
        for path in paths {
            let text = match std::fs::read(&path) {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                // Vanished between listing and reading: treat as deleted.
                Err(_) => continue,
            };
            let mut file = self.files.remove(&path).unwrap_or_default();
            if is_blank(&text) && !file.good.is_empty() {
                let since = *file.empty_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() < EMPTY_GRACE {
                    // Keep the objects for now; `pending()` asks for re-checks.
                    files.insert(path, file);
                    continue;
                }
            }
            file.empty_since = None;
            if file.content.as_deref() != Some(text.as_str()) {
                changed = true;
                let json = path.extension().and_then(|e| e.to_str()) == Some("json");
                match parse_manifest(&text, json) {
                    Ok(objects) => {
                        file.good = objects;
                        file.error = None;
                    }
                    Err(e) => {
                        tracing::warn!(
                            file = %path.display(),
                            line = e.line,
                            reason = %e.reason,
                            "manifest does not parse; its last good objects stay in service"
                        );
                        file.error = Some(e);
                    }
                }
                file.content = Some(text);
            }
            files.insert(path, file);
        }
        if !self.files.is_empty() {
            changed = true; // files were deleted
        }
        self.files = files;
        changed
    }

    /// Whether a file needs a re-check soon (it was found empty while it had objects).
    pub fn pending(&self) -> bool {
        self.files.values().any(|f| f.empty_since.is_some())
    }

    /// Every object in service: each file's last good parse, in path order; when two
    /// files define the same object, the later path wins.
    pub fn objects(&self) -> Vec<&RawObject> {
        let mut by_key: BTreeMap<(Kind, ObjectKey), &RawObject> = BTreeMap::new();
        for file in self.files.values() {
            for o in &file.good {
                by_key.insert((o.kind, o.key.clone()), o);
            }
        }
        by_key.into_values().collect()
    }

    /// Files that failed to parse (with their error) and objects defined twice.
    pub fn notices(&self) -> Vec<Notice> {
        let mut out = Vec::new();
        let mut seen: BTreeMap<(Kind, ObjectKey), &Path> = BTreeMap::new();
        for (path, file) in &self.files {
            let file_ref = ObjectRef::new("File", "", &path.display().to_string());
            if let Some(e) = &file.error {
                out.push(Notice::error(
                    file_ref.clone(),
                    Some(format!("line {}", e.line)),
                    format!(
                        "File does not parse: {}; its last good objects stay in service.",
                        e.reason
                    ),
                ));
            }
            for o in &file.good {
                if let Some(first) = seen.insert((o.kind, o.key.clone()), path) {
                    out.push(Notice::warning(
                        file_ref.clone(),
                        Some(format!("line {}", o.line)),
                        format!(
                            "{} {} is also defined in {}; this definition wins.",
                            o.kind.name(),
                            o.key,
                            first.display()
                        ),
                    ));
                }
            }
        }
        out
    }

    /// The error of a file's last parse, if it failed.
    pub fn file_error(&self, path: &Path) -> Option<&ParseError> {
        self.files.get(path)?.error.as_ref()
    }
}

/// What [`run_folder`] gives the binary.
#[derive(Debug, Clone)]
pub struct FolderHandle {
    /// The latest config (generation +1 on every change).
    pub config: watch::Receiver<Arc<Config>>,
    /// The latest statuses.
    pub status: watch::Receiver<Arc<StatusReport>>,
    /// Rebuilds done after the initial load because files changed.
    pub reloads: Arc<AtomicU64>,
}

/// Loads `dir` (before returning, so the first config is published), then watches it in
/// a spawned task: file changes (debounced) rebuild; `applied` changes recompute
/// statuses. Must be called inside a tokio runtime.
pub async fn run_folder(
    dir: PathBuf,
    settings: Settings,
    applied: watch::Receiver<Applied>,
) -> Result<FolderHandle> {
    std::fs::read_dir(&dir).map_err(|source| Error::ReadDir {
        path: dir.clone(),
        source,
    })?;
    let mut state = load_dir(&dir);
    let mut pipeline = Pipeline::new(settings);
    pipeline.rebuild(state.objects(), chrono::Utc::now());
    pipeline.set_applied(applied.borrow().clone(), chrono::Utc::now());
    let (config_tx, config_rx) = watch::channel(pipeline.config());
    let (status_tx, status_rx) = watch::channel(pipeline.status());
    let reloads = Arc::new(AtomicU64::new(0));

    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<()>();
    let mut watcher =
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(_) => {
                let _ = ev_tx.send(());
            }
            Err(e) => tracing::warn!(error = %e, "manifests folder watch error"),
        })
        .map_err(|source| Error::Watch {
            path: dir.clone(),
            source,
        })?;
    use notify::Watcher;
    watcher
        .watch(&dir, notify::RecursiveMode::Recursive)
        .map_err(|source| Error::Watch {
            path: dir.clone(),
            source,
        })?;

    let task_reloads = reloads.clone();
    let mut applied = applied;
    tokio::spawn(async move {
        let _watcher = watcher; // kept alive as long as the task runs
        let mut applied_open = true;
        let mut rescan = tokio::time::interval(RESCAN);
        rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let files_changed = tokio::select! {
                ev = ev_rx.recv() => {
                    if ev.is_none() {
                        break;
                    }
                    // Debounce: wait until the folder is quiet.
                    while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, ev_rx.recv()).await {}
                    true
                }
                _ = rescan.tick() => true,
                r = applied.changed(), if applied_open => {
                    match r {
                        Ok(()) => {
                            let a = applied.borrow_and_update().clone();
                            if pipeline.set_applied(a, chrono::Utc::now()) {
                                status_tx.send_replace(pipeline.status());
                            }
                        }
                        Err(_) => applied_open = false,
                    }
                    false
                }
            };
            if !files_changed {
                continue;
            }
            let mut changed = state.refresh();
            if state.pending() {
                tokio::time::sleep(DEBOUNCE).await;
                changed |= state.refresh();
            }
            if !changed {
                continue;
            }
            for n in state.notices() {
                n.log();
            }
            let update = pipeline.rebuild(state.objects(), chrono::Utc::now());
            task_reloads.fetch_add(1, Ordering::Relaxed);
            if update.config_changed {
                tracing::info!(
                    generation = pipeline.config().generation,
                    "manifests changed: new configuration"
                );
                config_tx.send_replace(pipeline.config());
            }
            if update.status_changed {
                status_tx.send_replace(pipeline.status());
            }
        }
    });
    Ok(FolderHandle {
        config: config_rx,
        status: status_rx,
        reloads,
    })
}
