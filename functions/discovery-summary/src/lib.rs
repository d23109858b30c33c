//! `DiscoverySummaryFunction`: the last step of a discovery run. Publishes one summary of the
//! run (counts per scope: seen, created, changed, gone, missing; each failed scope with its
//! reason; each scope left to the run that was crawling it) to EventBridge and the discovery
//! topic.

use lambda_runtime::{Diagnostic, LambdaEvent};
use maestro_aws::SdkConfig;
use maestro_aws::discovery::ScopeResult;
use maestro_aws::env::{EnvError, FunctionEnv};
use maestro_aws::lambda::{ErrorKind, LambdaFunction};
use maestro_aws::notices::Notices;
use maestro_domain::inventory::crawl::Counts;
use maestro_domain::port::PortError;
use serde::{Deserialize, Serialize};

/// The `detail-type` of the summary event.
pub const RUN_COMPLETED: &str = "Discovery Run Completed";

pub struct Deps {
    pub notices: Notices,
}

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
        totals,
        results: results.results,
    }
}

pub async fn handle(
    deps: &Deps,
    event: LambdaEvent<RunResults>,
) -> Result<RunSummary, SummaryFailure> {
    let summary = summarize(event.payload);
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
        vars.finish()?;
        Ok(Deps {
            notices: Notices::new(config, bus, topic),
        })
    }

    async fn handle(&self, event: LambdaEvent<RunResults>) -> Result<RunSummary, SummaryFailure> {
        handle(self, event).await
    }
}
