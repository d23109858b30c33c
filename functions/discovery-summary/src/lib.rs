//! `DiscoverySummaryFunction`: the last step of a discovery run. Records each scope's last
//! crawl (the connection API shows it), frees the leases of the scopes that failed, counts the scopes that keep failing (the
//! `FailingScopes` metric, which `DiscoveryScopesFailingAlarm` watches), and publishes one
//! summary of the run (counts per scope: seen, created, changed, gone, missing; each failed
//! scope with its reason; each scope left to the run that was crawling it) to EventBridge and
//! the discovery topic.

use chrono::Utc;
use lambda_runtime::{Diagnostic, LambdaEvent};
use maestro_aws::SdkConfig;
use maestro_aws::discovery::ScopeResult;
use maestro_aws::env::{EnvError, FunctionEnv};
use maestro_aws::inventory::DynamoInventory;
use maestro_aws::lambda::{ErrorKind, LambdaFunction};
use maestro_aws::notices::Notices;
use maestro_domain::inventory::crawl::{Counts, free_failed_scopes};
use maestro_domain::inventory::health::{CrawlOutcome, record_run};
use maestro_domain::port::PortError;
use serde::{Deserialize, Serialize};

/// The `detail-type` of the summary event.
pub const RUN_COMPLETED: &str = "Discovery Run Completed";

pub struct Deps {
    pub notices: Notices,
    pub inventory: DynamoInventory,
}

/// A failed scope's error as its record keeps it: enough to say why, small enough that a
/// connection's records stay well inside an item.
const ERROR_CHARS: usize = 300;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunResults {
    pub run: String,
    #[serde(default)]
    pub asked: bool,
    pub results: Vec<ScopeResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    pub run: String,
    pub asked: bool,
    pub scopes: usize,
    pub failed_scopes: usize,
    /// Scopes another run was crawling, left to it.
    pub held_scopes: usize,
    /// Scopes with nothing to crawl: opt-in regions their account has not enabled.
    #[serde(default)]
    pub skipped_scopes: usize,
    /// Scopes whose last crawls all failed, this run's included (`health::FAILING_AFTER`).
    #[serde(default)]
    pub failing_scopes: usize,
    pub totals: Counts,
    pub results: Vec<ScopeResult>,
}

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct SummaryFailure(#[from] PortError);

impl From<SummaryFailure> for Diagnostic {
    fn from(failure: SummaryFailure) -> Diagnostic {
        ErrorKind::of_port_error(&failure.0).diagnostic(&failure)
    }
}

pub fn summarize(results: RunResults) -> RunSummary {
    let mut totals = Counts::default();
    for result in &results.results {
        totals.add(&result.counts);
    }
    RunSummary {
        run: results.run,
        asked: results.asked,
        scopes: results.results.len(),
        failed_scopes: results.results.iter().filter(|r| r.failed).count(),
        held_scopes: results
            .results
            .iter()
            .filter(|r| r.held_by.is_some())
            .count(),
        skipped_scopes: results
            .results
            .iter()
            .filter(|r| r.skipped.is_some())
            .count(),
        failing_scopes: 0,
        totals,
        results: results.results,
    }
}

/// How a scope's crawl ended, as its record keeps it; none for a scope left to another run.
fn outcome(result: &ScopeResult) -> Option<CrawlOutcome> {
    if result.held_by.is_some() {
        return None;
    }
    if let Some(reason) = result.skipped {
        return Some(CrawlOutcome::Skipped { reason });
    }
    if !result.failed {
        return Some(CrawlOutcome::Concluded);
    }
    // The cause is the crawler's error as Lambda reported it: its message is what says why.
    let message = result.cause.as_deref().map(|cause| {
        serde_json::from_str::<serde_json::Value>(cause)
            .ok()
            .and_then(|v| v["errorMessage"].as_str().map(str::to_owned))
            .unwrap_or_else(|| cause.to_owned())
    });
    let error = match (result.error.as_deref(), message) {
        (Some(kind), Some(message)) => format!("{kind}: {message}"),
        (Some(kind), None) => kind.to_owned(),
        (None, Some(message)) => message,
        (None, None) => "failed without a reason".to_owned(),
    };
    Some(CrawlOutcome::Failed {
        error: error.chars().take(ERROR_CHARS).collect(),
    })
}

pub async fn handle(
    deps: &Deps,
    event: LambdaEvent<RunResults>,
) -> Result<RunSummary, SummaryFailure> {
    let mut summary = summarize(event.payload);
    let outcomes = summary
        .results
        .iter()
        .map(|r| (r.scope.clone(), outcome(r)))
        .collect();
    // A passing failure is retried with the summary (recording a run twice counts it once);
    // any other does not keep the summary from being published.
    let failing = match record_run(&deps.inventory, &summary.run, Utc::now(), outcomes).await {
        Ok(failing) => failing,
        Err(error @ PortError::Transient { .. }) => return Err(error.into()),
        Err(error) => {
            tracing::error!(run = summary.run, %error, "the scopes' crawls were not recorded");
            Vec::new()
        }
    };
    for (scope, crawl) in &failing {
        tracing::warn!(
            scope = scope.key(),
            failures_in_a_row = crawl.failures_in_a_row,
            "a scope keeps failing"
        );
    }
    summary.failing_scopes = failing.len();
    let failed: Vec<_> = summary
        .results
        .iter()
        .filter(|r| r.failed)
        .map(|r| r.scope.clone())
        .collect();
    if let Err(error) = free_failed_scopes(&deps.inventory, &summary.run, &failed).await {
        tracing::warn!(run = summary.run, %error, "failed scopes stay held until their leases expire");
    }
    maestro_aws::metrics::count(&[], &[("FailingScopes", failing.len() as u64)]);
    deps.notices.publish(RUN_COMPLETED, &summary).await?;
    tracing::info!(
        run = summary.run,
        scopes = summary.scopes,
        failed = summary.failed_scopes,
        held = summary.held_scopes,
        created = summary.totals.created,
        changed = summary.totals.changed,
        gone = summary.totals.gone,
        "discovery run summarised"
    );
    Ok(summary)
}

impl LambdaFunction for Deps {
    type Event = RunResults;
    type Response = RunSummary;
    type Error = SummaryFailure;

    fn from_parts(config: &SdkConfig, env: &FunctionEnv) -> Result<Self, EnvError> {
        let mut vars = env.reader();
        let bus = vars.required("EVENT_BUS_NAME");
        let topic = vars.required("DISCOVERY_TOPIC_ARN");
        let table = vars.required("INVENTORY_TABLE");
        vars.finish()?;
        Ok(Deps {
            notices: Notices::new(config, bus, topic),
            inventory: DynamoInventory::new(config, table),
        })
    }

    async fn handle(&self, event: LambdaEvent<RunResults>) -> Result<RunSummary, SummaryFailure> {
        handle(self, event).await
    }
}
