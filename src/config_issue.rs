//! One problem in a configuration (a scorecard, its `[rules]`, the service settings): the key at
//! fault and what is wrong with it, and how every configuration error of healthscore reads. Below
//! the modules whose settings it reports (`score`, `rules`, `pipeline::config`).

/// One problem in a configuration: the key at fault and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub key: String,
    pub reason: String,
}

impl ConfigIssue {
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigIssue { key: key.into(), reason: reason.into() }
    }
}

/// "invalid WHAT SOURCE (N problem(s)):" and a line per problem: how every configuration error
/// of healthscore reads.
pub fn write_issues(
    f: &mut std::fmt::Formatter<'_>,
    what: &str,
    source_name: &str,
    issues: &[ConfigIssue],
) -> std::fmt::Result {
    write!(f, "invalid {what} {source_name} ({} problem(s)):", issues.len())?;
    for issue in issues {
        write!(f, "\n  {}: {}", issue.key, issue.reason)?;
    }
    Ok(())
}
