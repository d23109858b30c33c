//! Which due scopes start crawling now: discovery runs within one cap on the crawlers of every
//! run at once.
//!
//! Each run is one execution of the discovery state machine, whose Map crawls `per_run` scopes
//! at a time; each crawl is one crawler Lambda. Nothing in Step Functions bounds the
//! executions together, so at 500 accounts the due scopes of one tick (19,000 scopes in
//! 95 runs of 200) would start some 950 crawlers at once: nearly all of the account's default
//! Lambda concurrency of 1,000, which the rest of Maestro and every other function of the
//! account share, and all of it for a larger organisation. The scheduler therefore
//! starts only as many runs as leave the crawlers of the runs still going, and of the new ones,
//! within `crawlers`. The scopes left wait for the next tick, the longest-waiting first.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::connection::Scope;
use super::lifecycle::Schedule;

/// Scopes per run. The execution's state holds each scope's input (about 310 bytes) and its
/// result (about 250, and up to 600 more for a failed scope's cause) at once, and Step
/// Functions takes at most 256 KB of state: 200 scopes stay under it even if all fail.
pub const SCOPES_PER_RUN: usize = 200;

/// How many crawlers may run at once: in all, and in one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CrawlerCap {
    /// Every run's crawlers together (the template's `DiscoveryMaxCrawlers`).
    pub crawlers: u32,
    /// One run's crawlers: its Map's concurrency (the template's `DiscoveryMaxConcurrency`).
    pub per_run: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InvalidCap {
    #[error("a cap of 0 crawlers would crawl nothing")]
    Zero,
    #[error("{per_run} crawlers per run is more than the cap of {crawlers} in all")]
    RunOverCap { crawlers: u32, per_run: u32 },
}

impl CrawlerCap {
    pub fn new(crawlers: u32, per_run: u32) -> Result<CrawlerCap, InvalidCap> {
        if crawlers == 0 || per_run == 0 {
            return Err(InvalidCap::Zero);
        }
        if per_run > crawlers {
            return Err(InvalidCap::RunOverCap { crawlers, per_run });
        }
        Ok(CrawlerCap { crawlers, per_run })
    }

    /// How many runs may go at once.
    pub fn runs(&self) -> usize {
        (self.crawlers / self.per_run) as usize
    }
}

/// A scope whose interval has passed, and when it last started (never, for `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueScope {
    pub scope: Scope,
    pub last_started: Option<DateTime<Utc>>,
}

impl Schedule {
    /// The connection's scopes that are due now.
    pub fn due(&self, now: DateTime<Utc>) -> Vec<DueScope> {
        let Some(connection) = &self.connection else {
            return Vec::new();
        };
        connection
            .due_scopes(&self.started, now)
            .into_iter()
            .map(|scope| DueScope {
                last_started: self.started.get(&scope.key()).copied(),
                scope,
            })
            .collect()
    }
}

/// The runs to start now, and how many due scopes wait for a later tick.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admitted {
    pub runs: Vec<Vec<Scope>>,
    pub deferred: usize,
}

/// Splits the due scopes into runs of at most [`SCOPES_PER_RUN`], as many as the cap leaves
/// beside the `running` runs. A scope never crawled goes first, then the one that has waited
/// longest, so a deferred scope is not deferred again behind newer ones.
pub fn admit(mut due: Vec<DueScope>, running: usize, cap: &CrawlerCap) -> Admitted {
    due.sort_by(|a, b| {
        a.last_started
            .cmp(&b.last_started)
            .then_with(|| a.scope.key().cmp(&b.scope.key()))
    });
    let free = cap.runs().saturating_sub(running);
    let admitted = due.len().min(free * SCOPES_PER_RUN);
    let deferred = due.len() - admitted;
    let scopes: Vec<Scope> = due.into_iter().take(admitted).map(|d| d.scope).collect();
    Admitted {
        runs: scopes
            .chunks(SCOPES_PER_RUN)
            .map(<[Scope]>::to_vec)
            .collect(),
        deferred,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::inventory::connection::ResourceType;

    fn scope(n: usize) -> Scope {
        Scope {
            connection_id: format!("c{n:05}"),
            account: format!("{n:012}"),
            region: "eu-west-1".into(),
            resource_type: ResourceType::Instances,
        }
    }

    fn due(n: usize, last: Option<i64>) -> DueScope {
        DueScope {
            scope: scope(n),
            last_started: last.map(|h| {
                Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap() + chrono::Duration::hours(h)
            }),
        }
    }

    #[test]
    fn no_more_runs_start_than_the_cap_leaves_beside_those_running() {
        // Issue 15, finding 8: every due scope started at once, in as many runs as it took.
        let cap = CrawlerCap::new(100, 10).unwrap();
        let scopes: Vec<DueScope> = (0..19_000).map(|n| due(n, None)).collect();
        let admitted = admit(scopes.clone(), 0, &cap);
        assert_eq!(admitted.runs.len(), 10);
        assert!(admitted.runs.iter().all(|run| run.len() == SCOPES_PER_RUN));
        assert_eq!(admitted.deferred, 19_000 - 10 * SCOPES_PER_RUN);

        let admitted = admit(scopes.clone(), 7, &cap);
        assert_eq!(admitted.runs.len(), 3);
        assert_eq!(
            admit(scopes, 12, &cap).runs.len(),
            0,
            "over the cap already"
        );

        let few: Vec<DueScope> = (0..30).map(|n| due(n, None)).collect();
        let admitted = admit(few, 9, &cap);
        assert_eq!(admitted.runs.iter().map(Vec::len).collect::<Vec<_>>(), [30]);
        assert_eq!(admitted.deferred, 0);
    }

    #[test]
    fn the_scopes_that_waited_longest_start_first() {
        let cap = CrawlerCap::new(10, 10).unwrap();
        let mut scopes: Vec<DueScope> = (0..SCOPES_PER_RUN).map(|n| due(n, Some(5))).collect();
        scopes.push(due(9_001, Some(1)));
        scopes.push(due(9_002, None));
        let admitted = admit(scopes, 0, &cap);
        assert_eq!(admitted.deferred, 2);
        let first = &admitted.runs[0];
        assert_eq!(first[0], scope(9_002), "never crawled first");
        assert_eq!(first[1], scope(9_001), "then the oldest");
    }

    #[test]
    fn a_cap_that_cannot_hold_one_run_is_refused() {
        assert_eq!(CrawlerCap::new(0, 10), Err(InvalidCap::Zero));
        assert_eq!(
            CrawlerCap::new(5, 10),
            Err(InvalidCap::RunOverCap {
                crawlers: 5,
                per_run: 10
            })
        );
        assert_eq!(CrawlerCap::new(25, 10).unwrap().runs(), 2);
    }
}
