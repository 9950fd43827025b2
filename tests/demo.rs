//! The demo path: the real processor on librdkafka's in-process mock cluster (no broker needed).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use healthscore::pipeline::demo::{run_demo, DemoOptions};
use healthscore::score::Scorecard;

#[test]
fn the_demo_scores_a_generated_population_end_to_end_on_the_mock_cluster() {
    let options = DemoOptions {
        customers: 60,
        days: 30,
        seed: 5,
        partitions: 3,
        rate: 200_000.0,
        duration: Some(Duration::from_secs(8)),
        every: Duration::from_secs(1),
        http: None,
        http_tokens: Vec::new(),
    };
    let mut lines = Vec::new();
    let summary = run_demo(&options, Arc::new(Scorecard::default_scorecard()), Arc::new(AtomicBool::new(false)), |l| {
        lines.push(l.to_string())
    })
    .expect("demo runs");
    assert!(lines[0].contains("mock Kafka cluster at"), "prints the bootstrap address: {}", lines[0]);
    assert!(summary.sent > 10_000, "the generator sent the population: {summary:?}");
    assert!(summary.consumed * 10 >= summary.sent * 9, "the processor kept up: {summary:?}");
    assert!(summary.customers >= 50, "customers are tracked: {summary:?}");
    assert!(summary.score_changes >= summary.customers as u64, "every customer got a score: {summary:?}");
    assert!(summary.alerts > 0, "alerts fire: {summary:?}");
    assert!(summary.dead_letters > 0, "the generator's bad lines reach the dead-letter topic: {summary:?}");
    assert!(lines.iter().any(|l| l.contains("green")), "prints band counts");
}
