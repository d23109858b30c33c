//! Each scope's last crawl, and the scopes that keep failing.
//!
//! A scope that fails concludes nothing, which keeps the inventory true but stale: a region
//! that denies the role, a listing the provider cannot read. One failure is often passing
//! (a throttle that outlasted the retries); a scope that failed [`FAILING_AFTER`] crawls in a
//! row is reported failing, for an alarm, until one of its crawls concludes.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::connection::Scope;
use super::crawl::Skipped;
use crate::port::PortError;

/// Crawls in a row that failed before a scope is reported failing.
pub const FAILING_AFTER: u32 = 3;

/// How a crawl of a scope ended. A scope left to another run that was crawling it has no
/// outcome of its own: that run records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CrawlOutcome {
    /// Read to its last page and concluded.
    Concluded,
    /// Nothing to read, and no failure: an opt-in region the account has not enabled.
    Skipped {
        reason: Skipped,
    },
    Failed {
        error: String,
    },
}

/// A scope's last crawl, as the connection API answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastCrawl {
    pub run: String,
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub outcome: CrawlOutcome,
    /// Crawls in a row that failed, this one included; 0 after one that concluded.
    pub failures_in_a_row: u32,
}

impl LastCrawl {
    /// The record of a crawl that ended `outcome`, after the scope's `previous` one.
    pub fn after(
        previous: Option<&LastCrawl>,
        run: &str,
        at: DateTime<Utc>,
        outcome: CrawlOutcome,
    ) -> LastCrawl {
        // The run's summary, retried after its records were written: they stand.
        if let Some(previous) = previous.filter(|p| p.run == run) {
            return previous.clone();
        }
        let failures_in_a_row = match &outcome {
            CrawlOutcome::Concluded | CrawlOutcome::Skipped { .. } => 0,
            CrawlOutcome::Failed { .. } => previous
                .map_or(0, |p| p.failures_in_a_row)
                .saturating_add(1),
        };
        LastCrawl {
            run: run.to_owned(),
            at,
            outcome,
            failures_in_a_row,
        }
    }

    pub fn failing(&self) -> bool {
        self.failures_in_a_row >= FAILING_AFTER
    }
}

/// Where each connection's scopes' last crawls are kept, by scope key.
#[async_trait]
pub trait CrawlRecords: Send + Sync {
    async fn last_crawls(
        &self,
        connection_id: &str,
    ) -> Result<BTreeMap<String, LastCrawl>, PortError>;
    /// Sets these scopes' records, leaving the connection's others as they are; nothing when
    /// the connection no longer exists.
    async fn record_crawls(
        &self,
        connection_id: &str,
        crawls: &BTreeMap<String, LastCrawl>,
    ) -> Result<(), PortError>;
}

/// Records the outcome of each scope a run crawled (`None` for one it left to another run),
/// and answers the scopes now failing.
pub async fn record_run(
    records: &dyn CrawlRecords,
    run: &str,
    at: DateTime<Utc>,
    outcomes: Vec<(Scope, Option<CrawlOutcome>)>,
) -> Result<Vec<(Scope, LastCrawl)>, PortError> {
    let mut by_connection: BTreeMap<String, Vec<(Scope, CrawlOutcome)>> = BTreeMap::new();
    for (scope, outcome) in outcomes {
        if let Some(outcome) = outcome {
            by_connection
                .entry(scope.connection_id.clone())
                .or_default()
                .push((scope, outcome));
        }
    }
    let mut failing = Vec::new();
    for (connection_id, outcomes) in by_connection {
        let previous = records.last_crawls(&connection_id).await?;
        let mut crawls = BTreeMap::new();
        for (scope, outcome) in outcomes {
            let crawl = LastCrawl::after(previous.get(&scope.key()), run, at, outcome);
            if crawl.failing() {
                failing.push((scope.clone(), crawl.clone()));
            }
            crawls.insert(scope.key(), crawl);
        }
        records.record_crawls(&connection_id, &crawls).await?;
    }
    Ok(failing)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::inventory::connection::ResourceType;

    #[derive(Default)]
    struct Records(Mutex<BTreeMap<String, BTreeMap<String, LastCrawl>>>);

    #[async_trait]
    impl CrawlRecords for Records {
        async fn last_crawls(
            &self,
            connection_id: &str,
        ) -> Result<BTreeMap<String, LastCrawl>, PortError> {
            Ok(self
                .0
                .lock()
                .expect("lock")
                .get(connection_id)
                .cloned()
                .unwrap_or_default())
        }
        async fn record_crawls(
            &self,
            connection_id: &str,
            crawls: &BTreeMap<String, LastCrawl>,
        ) -> Result<(), PortError> {
            self.0
                .lock()
                .expect("lock")
                .entry(connection_id.to_owned())
                .or_default()
                .extend(crawls.clone());
            Ok(())
        }
    }

    fn scope(resource_type: ResourceType) -> Scope {
        Scope {
            connection_id: "prod".into(),
            account: "111111111111".into(),
            region: "eu-west-1".into(),
            resource_type,
        }
    }

    fn failed() -> Option<CrawlOutcome> {
        Some(CrawlOutcome::Failed {
            error: "AccessDenied".into(),
        })
    }

    #[tokio::test]
    async fn a_scope_failing_three_crawls_in_a_row_is_failing_until_one_concludes() {
        let records = Records::default();
        let at = Utc::now();
        let instances = scope(ResourceType::Instances);
        let volumes = scope(ResourceType::Volumes);
        for (run, expect_failing) in [("r1", 0), ("r2", 0), ("r3", 1), ("r4", 1)] {
            let failing = record_run(
                &records,
                run,
                at,
                vec![
                    (instances.clone(), failed()),
                    (volumes.clone(), Some(CrawlOutcome::Concluded)),
                ],
            )
            .await
            .expect("records");
            assert_eq!(failing.len(), expect_failing, "{run}");
        }
        // Left to another run: the record stays as the last crawl left it.
        let failing = record_run(&records, "r5", at, vec![(instances.clone(), None)])
            .await
            .expect("records");
        assert!(failing.is_empty());
        let kept = records.last_crawls("prod").await.expect("reads");
        assert_eq!(kept[&instances.key()].run, "r4");
        assert_eq!(kept[&instances.key()].failures_in_a_row, 4);
        assert_eq!(kept[&volumes.key()].failures_in_a_row, 0);

        let failing = record_run(
            &records,
            "r6",
            at,
            vec![(instances.clone(), Some(CrawlOutcome::Concluded))],
        )
        .await
        .expect("records");
        assert!(failing.is_empty());
        let kept = records.last_crawls("prod").await.expect("reads");
        assert_eq!(
            kept[&instances.key()],
            LastCrawl {
                run: "r6".into(),
                at,
                outcome: CrawlOutcome::Concluded,
                failures_in_a_row: 0,
            }
        );
    }

    #[tokio::test]
    async fn a_run_recorded_again_counts_its_failure_once() {
        let records = Records::default();
        let instances = scope(ResourceType::Instances);
        for _ in 0..3 {
            record_run(
                &records,
                "r1",
                Utc::now(),
                vec![(instances.clone(), failed())],
            )
            .await
            .expect("records");
        }
        let kept = records.last_crawls("prod").await.expect("reads");
        assert_eq!(kept[&instances.key()].failures_in_a_row, 1);
    }

    #[test]
    fn a_last_crawl_reads_as_the_api_answers_it() {
        let at = DateTime::parse_from_rfc3339("2026-12-03T10:00:00Z")
            .expect("a time")
            .with_timezone(&Utc);
        let crawl = LastCrawl::after(None, "r1", at, failed().expect("an outcome"));
        assert_eq!(
            serde_json::to_value(&crawl).expect("JSON"),
            serde_json::json!({
                "run": "r1",
                "at": "2026-12-03T10:00:00Z",
                "outcome": "FAILED",
                "error": "AccessDenied",
                "failuresInARow": 1
            })
        );
    }
}
