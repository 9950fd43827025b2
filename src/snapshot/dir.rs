//! Snapshots in a local directory (in production, a Kubernetes volume): one folder per
//! partition, one file per snapshot, named by its id so listing orders them.
//!
//! A file appears under its final name only once complete and durable: written to a temporary
//! name, fsynced, renamed, and the folder fsynced, so a crash at any point leaves either the
//! previous snapshots or the new one, never a torn file under a snapshot's name (and a torn
//! file that somehow got there anyway fails its checksum and is skipped).

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{SnapshotStore, Stored};

const SUFFIX: &str = ".snap";

pub struct DirStore {
    root: PathBuf,
    keep: usize,
}

impl DirStore {
    /// A store under `root` (created if missing) that keeps the newest `keep` snapshots of each
    /// partition. Temporary files a crash left mid-write are removed: they hold customer data
    /// like the snapshots and would otherwise stay for good.
    pub fn new(root: impl Into<PathBuf>, keep: usize) -> anyhow::Result<DirStore> {
        let root = root.into();
        fs::create_dir_all(&root)
            .with_context(|| format!("cannot create the snapshot directory {}", root.display()))?;
        let store = DirStore { root, keep: keep.max(1) };
        let removed = store.remove_stale_temporaries();
        if removed > 0 {
            tracing::info!(removed, dir = %store.root.display(), "removed temporary snapshot files a crash left");
        }
        Ok(store)
    }

    /// Removes `partition-*/.*.tmp` (see [`DirStore::save`]); returns how many.
    fn remove_stale_temporaries(&self) -> usize {
        let mut removed = 0;
        let partitions = fs::read_dir(&self.root).into_iter().flatten().flatten();
        for dir in partitions.filter(|e| e.file_name().to_string_lossy().starts_with("partition-")) {
            for file in fs::read_dir(dir.path()).into_iter().flatten().flatten() {
                let name = file.file_name();
                let name = name.to_string_lossy();
                if name.starts_with('.') && name.ends_with(".tmp") && fs::remove_file(file.path()).is_ok() {
                    removed += 1;
                }
            }
        }
        removed
    }

    fn partition_dir(&self, partition: i32) -> PathBuf {
        self.root.join(format!("partition-{partition:05}"))
    }

    fn ids(&self, partition: i32) -> anyhow::Result<Vec<u64>> {
        let dir = self.partition_dir(partition);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let name = entry?.file_name();
            if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(SUFFIX)).and_then(|n| n.parse::<u64>().ok()) {
                ids.push(id);
            }
        }
        ids.sort_unstable_by(|a, b| b.cmp(a));
        Ok(ids)
    }
}

fn file_name(id: u64) -> String {
    format!("{id:020}{SUFFIX}")
}

impl SnapshotStore for DirStore {
    fn save(&self, partition: i32, id: u64, bytes: &[u8]) -> anyhow::Result<()> {
        let dir = self.partition_dir(partition);
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        {
            use std::os::unix::fs::PermissionsExt as _;
            let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o700));
        }
        let tmp = dir.join(format!(".{}.tmp", file_name(id)));
        let path = dir.join(file_name(id));
        let written = (|| -> std::io::Result<()> {
            // Owner-only (0600, directories 0700): a snapshot holds customer ids, MRR and NPS.
            let mut f = {
                use std::os::unix::fs::OpenOptionsExt as _;
                fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?
            };
            f.write_all(bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            File::open(&dir)?.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e).with_context(|| format!("cannot write {}", path.display()));
        }
        for old in self.ids(partition)?.into_iter().skip(self.keep) {
            let _ = fs::remove_file(dir.join(file_name(old)));
        }
        Ok(())
    }

    fn list(&self, partition: i32) -> anyhow::Result<Vec<Stored>> {
        let dir = self.partition_dir(partition);
        Ok(self
            .ids(partition)?
            .into_iter()
            .map(|id| Stored { name: dir.join(file_name(id)).display().to_string(), id })
            .collect())
    }

    fn read(&self, _partition: i32, stored: &Stored) -> anyhow::Result<Vec<u8>> {
        fs::read(Path::new(&stored.name)).with_context(|| format!("cannot read {}", stored.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_and_lists_them_newest_first() {
        let root = std::env::temp_dir().join(format!("hs-dirstore-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let store = DirStore::new(&root, 2).unwrap();
        assert!(store.list(0).unwrap().is_empty());
        for id in [5, 7, 6, 9] {
            store.save(0, id, &id.to_le_bytes()).unwrap();
        }
        store.save(1, 1, b"other partition").unwrap();
        // A torn write leaves only a temporary file, which is not listed.
        let torn = root.join("partition-00000/.00000000000000000010.snap.tmp");
        fs::write(&torn, b"torn").unwrap();
        let listed = store.list(0).unwrap();
        assert_eq!(listed.iter().map(|s| s.id).collect::<Vec<_>>(), vec![9, 7]);
        assert_eq!(store.read(0, &listed[0]).unwrap(), 9u64.to_le_bytes());
        assert_eq!(store.list(1).unwrap().len(), 1);
        // The next start removes it, and nothing else.
        let reopened = DirStore::new(&root, 2).unwrap();
        assert!(!torn.exists(), "a crash's temporary file is removed at start");
        assert_eq!(reopened.list(0).unwrap().iter().map(|s| s.id).collect::<Vec<_>>(), vec![9, 7]);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn snapshot_files_are_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let root = std::env::temp_dir().join(format!("hs-dirstore-mode-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let store = DirStore::new(&root, 2).unwrap();
        store.save(3, 1, b"customer data").unwrap();
        let listed = store.list(3).unwrap();
        let file = root.join("partition-00003").join(file_name(listed[0].id));
        assert_eq!(fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(root.join("partition-00003")).unwrap().permissions().mode() & 0o777, 0o700);
        fs::remove_dir_all(&root).unwrap();
    }
}
