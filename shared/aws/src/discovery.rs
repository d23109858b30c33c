//! Starting discovery runs: the scopes that are due (or asked for), recorded as started, then
//! handed to the discovery state machine in executions small enough for its input limit.

use chrono::{DateTime, Utc};
use maestro_domain::inventory::connection::{Connection, ResourceType, Scope};
use maestro_domain::inventory::crawl::{Counts, CrawlState};
use maestro_domain::port::PortError;
use serde::{Deserialize, Serialize};

use crate::SdkConfig;
use crate::env::EnvReader;
use crate::inventory::DynamoInventory;
use crate::sdk_error::port_error;

/// Scopes per execution: each is about 200 bytes of input and of result, well inside Step
/// Functions' 256 KB.
const SCOPES_PER_EXECUTION: usize = 400;

/// The input of `statemachines/discovery.asl.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunInput {
    pub run: String,
    pub asked: bool,
    /// Scopes crawled at once: the Map's MaxConcurrencyPath.
    pub max_concurrency: u32,
    pub scopes: Vec<CrawlState>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartedRun {
    pub run: String,
    pub scopes: usize,
    pub execution_arn: String,
}

/// One scope's outcome, as the state machine's Map hands it to the summary.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScopeResult {
    pub scope: Scope,
    pub counts: Counts,
    #[serde(default)]
    pub pages: u32,
    pub failed: bool,
    /// The run that was crawling the scope: this one left it, and concluded nothing of it.
    #[serde(default)]
    pub held_by: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub cause: Option<String>,
}

pub struct DiscoveryRuns {
    sfn: aws_sdk_sfn::Client,
    state_machine_arn: String,
    max_concurrency: u32,
}

/// Which scopes of a connection a sync-now covers: all its types, or the ones asked.
pub fn asked_scopes(connection: &Connection, only: Option<&[ResourceType]>) -> Vec<Scope> {
    connection
        .scopes()
        .into_iter()
        .filter(|s| only.is_none_or(|types| types.contains(&s.resource_type)))
        .collect()
}

impl DiscoveryRuns {
    /// From `DISCOVERY_STATE_MACHINE_ARN` and `DISCOVERY_MAX_CONCURRENCY`.
    pub fn from_vars(config: &SdkConfig, vars: &mut EnvReader<'_>) -> Self {
        let state_machine_arn = vars.required("DISCOVERY_STATE_MACHINE_ARN");
        let max_concurrency = vars.parsed::<u32>("DISCOVERY_MAX_CONCURRENCY").unwrap_or(1);
        if max_concurrency == 0 {
            vars.problem("DISCOVERY_MAX_CONCURRENCY: 0 would crawl every scope at once".into());
        }
        DiscoveryRuns {
            sfn: aws_sdk_sfn::Client::new(config),
            state_machine_arn,
            max_concurrency,
        }
    }

    /// Records the scopes as started and starts executions over them. A scope is recorded
    /// before its execution starts: were the start to fail, the next tick would skip it for
    /// one interval rather than crawl it twice at once.
    pub async fn start(
        &self,
        inventory: &DynamoInventory,
        scopes: Vec<Scope>,
        asked: bool,
        now: DateTime<Utc>,
    ) -> Result<Vec<StartedRun>, PortError> {
        let mut by_connection: std::collections::BTreeMap<String, Vec<Scope>> = Default::default();
        for scope in &scopes {
            by_connection
                .entry(scope.connection_id.clone())
                .or_default()
                .push(scope.clone());
        }
        for (connection, scopes) in &by_connection {
            inventory.mark_started(connection, scopes, now).await?;
        }
        let mut started = Vec::new();
        for chunk in scopes.chunks(SCOPES_PER_EXECUTION) {
            let run = format!(
                "{}-{}",
                now.format("%Y%m%dT%H%M%SZ"),
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            );
            let input = RunInput {
                run: run.clone(),
                asked,
                max_concurrency: self.max_concurrency,
                scopes: chunk
                    .iter()
                    .map(|scope| CrawlState::start(&run, scope.clone(), asked))
                    .collect(),
            };
            let json = serde_json::to_string(&input).map_err(|e| PortError::Rejected {
                service: "states",
                detail: e.to_string(),
            })?;
            let execution = self
                .sfn
                .start_execution()
                .state_machine_arn(&self.state_machine_arn)
                .name(&run)
                .input(json)
                .send()
                .await
                .map_err(|e| port_error("states", &run, e))?;
            started.push(StartedRun {
                run,
                scopes: chunk.len(),
                execution_arn: execution.execution_arn,
            });
        }
        Ok(started)
    }
}
