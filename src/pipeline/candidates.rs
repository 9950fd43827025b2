//! Learned candidates leave the service here. The engine learns (see [`crate::learn`]); after
//! each round of processing this adapter looks at what each partition's learner last produced
//! and, once per new candidate, writes it as a scorecard file and logs the judgement, so an
//! operator can read it, `check-scorecard` it and deploy it (`promotion = "manual"`), or see
//! what `auto` promoted. It reads the engine and never changes it.
//!
//! Files: `engine.learn.candidate_dir/partition-N.toml`, the latest candidate of partition N,
//! replaced atomically (written beside, then renamed); its first lines are comments with the
//! judgement. Empty `candidate_dir`: nothing is written, the log lines remain.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use crate::engine::Engine;
use crate::event::{format_rfc3339, Millis};
use crate::learn::Candidate;

/// Remembers the candidate each partition last reported, so each is written and logged once.
#[derive(Debug, Default)]
pub struct CandidateWriter {
    dir: Option<PathBuf>,
    /// Partition → (version, refit time) of the candidate last reported.
    seen: HashMap<i32, (String, Millis)>,
}

impl CandidateWriter {
    /// `dir`: `engine.learn.candidate_dir` (empty: log only).
    pub fn new(dir: &Path) -> CandidateWriter {
        let dir = (!dir.as_os_str().is_empty()).then(|| dir.to_path_buf());
        CandidateWriter { dir, seen: HashMap::new() }
    }

    /// Reports partition `p`'s latest candidate if it has not been reported yet (after a
    /// restart or a handover a restored candidate is reported once more: same file, same text).
    /// Returns the file written, if any.
    pub fn check(&mut self, p: i32, engine: &Engine) -> Option<PathBuf> {
        let c = engine.learner()?.candidate()?;
        let key = (c.version.clone(), c.at);
        if self.seen.get(&p) == Some(&key) {
            return None;
        }
        self.seen.insert(p, key);
        let promoted = *engine.scorecard().version == *c.version;
        info!(
            partition = p,
            candidate = %c.version,
            against = %c.against,
            candidate_auc = %auc_text(c.auc),
            active_auc = %auc_text(c.active_auc),
            eval_churns = c.eval_churns,
            promoted,
            held_back = c.held_back.as_deref().unwrap_or(""),
            "learned a candidate scorecard"
        );
        let dir = self.dir.as_ref()?;
        let path = dir.join(format!("partition-{p}.toml"));
        match write_atomically(dir, &path, &file_text(p, c, promoted)) {
            Ok(()) => Some(path),
            Err(e) => {
                warn!(partition = p, path = %path.display(), error = %e, "cannot write the candidate scorecard");
                None
            }
        }
    }
}

/// The candidate's TOML under a comment header that says where it came from and how it was judged.
pub fn file_text(p: i32, c: &Candidate, promoted: bool) -> String {
    let status = if promoted {
        "promoted: it scores this partition now".to_string()
    } else {
        match &c.held_back {
            Some(why) => format!("not promoted: {why}"),
            None => "not promoted (promotion = manual): review it, then deploy it as the scorecard".to_string(),
        }
    };
    format!(
        "# Candidate scorecard learned online by partition {p} at stream time {}.\n\
         # Judged on the last labelled period ({} observations, {} churns): AUC {} against {} for `{}`.\n\
         # Fitted on {} observations ({} churns). {status}.\n\n{}",
        format_rfc3339(c.at),
        c.eval_observations,
        c.eval_churns,
        auc_text(c.auc),
        auc_text(c.active_auc),
        c.against,
        c.fit_observations,
        c.fit_churns,
        c.toml
    )
}

/// An AUC as the log line and the file header show it: three decimals, `-` when undefined.
fn auc_text(a: Option<f64>) -> String {
    a.map_or("-".to_string(), |v| format!("{v:.3}"))
}

fn write_atomically(dir: &Path, path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
