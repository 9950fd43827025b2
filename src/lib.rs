//! healthscore: customer events in, customer health scores and churn alerts out.
pub mod backtest;
pub mod calibrate;
pub mod engine;
pub mod event;
pub mod generate;
pub mod hash;
pub mod output;
pub mod parallel;
pub mod partition;
pub mod pipeline;
pub mod replay;
pub mod rules;
pub mod score;
pub mod signal;
pub mod snapshot;
pub mod state;
pub mod window;
