//! Discovery (BRIEF §1): a normalised inventory of every connected account's resources, what
//! changed in each since its last crawl at the cost of no write for what did not, and gone
//! only after repeated complete crawls.
//!
//! - [`connection`]: accounts, regions, resource types and intervals; scopes.
//! - [`entity`]: the normalised entity, its typed details and relations.
//! - [`changes`]: the change rules over entities as JSON documents.
//! - [`crawl`]: one scope's crawl across calls, behind the provider and store ports.
//! - [`events`]: the resources a CloudTrail event names, to describe again.
//! - [`health`]: each scope's last crawl, and the scopes that keep failing.
//! - [`lifecycle`]: the entities of scopes no connection crawls any more, retired.
//! - [`runs`]: which due scopes start crawling now, within one cap on the crawlers.
//! - [`synthetic`]: entities for tests.

pub mod changes;
pub mod connection;
pub mod crawl;
pub mod entity;
pub mod events;
pub mod health;
pub mod lifecycle;
pub mod memory;
pub mod runs;
pub mod synthetic;
