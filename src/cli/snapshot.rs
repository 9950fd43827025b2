//! `snapshot inspect` and `snapshot verify`: read the `dir` store's `.snap` files (see
//! [`crate::snapshot`]).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Subcommand;

use super::print_out;

/// What `snapshot` does.
#[derive(Subcommand)]
pub enum SnapshotAction {
    /// Print a snapshot's partition, offsets, stream time, customer count and size (checks
    /// its checksum). A directory: every snapshot under it.
    Inspect {
        /// A `.snap` file, or a directory to search for them.
        path: PathBuf,
    },
    /// Check that a snapshot restores: checksum, header and every customer's state. Exits
    /// non-zero with the reason when it would not. A directory: every snapshot under it.
    Verify {
        /// A `.snap` file, or a directory to search for them.
        path: PathBuf,
    },
}

/// `snapshot inspect|verify`: describes each snapshot; an error when any is not usable.
pub fn run(action: SnapshotAction) -> Result<()> {
    let (path, verify) = match &action {
        SnapshotAction::Inspect { path } => (path, false),
        SnapshotAction::Verify { path } => (path, true),
    };
    let files = snapshot_files(path)?;
    if files.is_empty() {
        bail!("no snapshot files (*.snap) under {}", path.display());
    }
    let mut bad = 0;
    for file in &files {
        let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        match crate::snapshot::describe(&bytes, verify) {
            Ok(text) => print_out(&format!("{}\n{text}\n", file.display()))?,
            Err(e) => {
                bad += 1;
                eprintln!("{}: NOT USABLE: {e:#}\n", file.display());
            }
        }
    }
    if bad > 0 {
        bail!("{bad} of {} snapshots are not usable", files.len());
    }
    Ok(())
}

/// `path` itself, or the `.snap` files under it (sorted).
fn snapshot_files(path: &std::path::Path) -> Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))? {
            let p = entry?.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|e| e == "snap") {
                files.push(p);
            }
        }
    }
    files.sort();
    Ok(files)
}
