//! Discovery (BRIEF §1): what changed in a scope since its last crawl, at the cost of no
//! write for what did not, and gone only after repeated complete crawls.
//!
//! Groundwork: the change rules over entities as JSON documents. The typed entity model,
//! the crawlers and the store arrive with the rest of discovery.

pub mod changes;
