//! healthscore: customer events in, customer health scores and churn alerts out.
pub mod event;
