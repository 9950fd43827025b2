//! Customer state: one customer's windows and facts ([`Customer`]), and the per-partition
//! [`Store`] of customers with the [`Timers`] that wake them as event time passes.

mod customer;
mod lookback;
mod store;

pub use self::customer::{Customer, Fact, OpenTicket, ScoreState, SignalParams, UsageDay, DEDUP_IDS, HISTORY_DAYS};
pub use self::lookback::{BandHistory, ChurnLookback, ChurnStats, BAND_DAYS, LEAD_DAYS_BUCKETS};
pub use self::store::{advise_huge_pages, Store, Timers};
