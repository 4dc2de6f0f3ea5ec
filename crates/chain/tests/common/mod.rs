//! The devnet harness lives in `nelumbo-testkit`, shared with the hub's and markets' tests.

pub use nelumbo_testkit::chain::*;
