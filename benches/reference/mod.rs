//! The yardstick both benchmarks measure in the same run: plain serde_json parsing of an input
//! event into a small typed borrowing struct (the issue's ~3.6 M/s reference on this machine).

use serde::Deserialize;

/// The fields most events carry, borrowed from the input; no validation.
#[derive(Deserialize)]
#[allow(dead_code)] // only parsed, never read
pub struct Reference<'a> {
    pub event_id: &'a str,
    pub customer_id: &'a str,
    pub timestamp: &'a str,
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub feature: Option<&'a str>,
    pub user_id: Option<&'a str>,
    pub duration_seconds: Option<f64>,
}

/// Whether `line` parses as a [`Reference`].
pub fn parses(line: &[u8]) -> bool {
    serde_json::from_slice::<Reference<'_>>(line).is_ok()
}
