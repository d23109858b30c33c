//! Starting discovery runs: the scopes that are due (or asked for), admitted under the cap on
//! crawlers (`maestro_domain::inventory::runs`), recorded as started, then handed to the
//! discovery state machine, one execution per run.

use chrono::{DateTime, Utc};
use maestro_domain::inventory::connection::{Connection, ResourceType, Scope};
use maestro_domain::inventory::crawl::{Counts, CrawlState, Skipped};
use maestro_domain::inventory::runs::{Admitted, CrawlerCap, DueScope, admit};
use maestro_domain::port::PortError;
use serde::{Deserialize, Serialize};

use crate::SdkConfig;
use crate::env::EnvReader;
use crate::inventory::DynamoInventory;
use crate::sdk_error::port_error;

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
    /// Why the crawl read nothing without failing: an opt-in region not enabled.
    #[serde(default)]
    pub skipped: Option<Skipped>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub cause: Option<String>,
}

pub struct DiscoveryRuns {
    sfn: aws_sdk_sfn::Client,
    state_machine_arn: String,
    cap: CrawlerCap,
}

/// The runs a call started, and what it left for later.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Started {
    pub runs: Vec<StartedRun>,
    /// Due scopes left for a later tick: the cap was reached.
    pub deferred: usize,
    /// Runs that were going when this call looked.
    pub running: usize,
}

/// Which scopes of a connection a sync-now covers: all its types, or the ones asked.
pub fn asked_scopes(connection: &Connection, only: Option<&[ResourceType]>) -> Vec<DueScope> {
    connection
        .scopes()
        .into_iter()
        .filter(|s| only.is_none_or(|types| types.contains(&s.resource_type)))
        .map(|scope| DueScope {
            scope,
            last_started: None,
        })
        .collect()
}

impl DiscoveryRuns {
    /// From `DISCOVERY_STATE_MACHINE_ARN`, `DISCOVERY_MAX_CONCURRENCY` (one run's crawlers)
    /// and `DISCOVERY_MAX_CRAWLERS` (every run's).
    pub fn from_vars(config: &SdkConfig, vars: &mut EnvReader<'_>) -> Self {
        let state_machine_arn = vars.required("DISCOVERY_STATE_MACHINE_ARN");
        let per_run = vars.parsed::<u32>("DISCOVERY_MAX_CONCURRENCY").unwrap_or(1);
        let crawlers = vars
            .parsed::<u32>("DISCOVERY_MAX_CRAWLERS")
            .unwrap_or(per_run);
        let cap = CrawlerCap::new(crawlers, per_run).unwrap_or_else(|invalid| {
            vars.problem(format!(
                "DISCOVERY_MAX_CRAWLERS and DISCOVERY_MAX_CONCURRENCY: {invalid}"
            ));
            CrawlerCap {
                crawlers: 1,
                per_run: 1,
            }
        });
        DiscoveryRuns {
            sfn: aws_sdk_sfn::Client::new(config),
            state_machine_arn,
            cap,
        }
    }

    pub fn cap(&self) -> CrawlerCap {
        self.cap
    }

    /// The runs going now. `ListExecutions` is eventually consistent: a run started in the
    /// last second may be missing, so two starts that close together may overshoot the cap
    /// by a run; the ticks are minutes apart.
    async fn running(&self) -> Result<usize, PortError> {
        let mut running = 0;
        let mut pages = self
            .sfn
            .list_executions()
            .state_machine_arn(&self.state_machine_arn)
            .status_filter(aws_sdk_sfn::types::ExecutionStatus::Running)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| port_error("states", &self.state_machine_arn, e))?;
            running += page.executions().len();
        }
        Ok(running)
    }

    /// Admits the due scopes under the cap, records those admitted as started, and starts a
    /// run for each batch. A scope is recorded before its run starts: were the start to fail,
    /// the next tick would skip it for one interval rather than crawl it twice at once.
    pub async fn start(
        &self,
        inventory: &DynamoInventory,
        due: Vec<DueScope>,
        asked: bool,
        now: DateTime<Utc>,
    ) -> Result<Started, PortError> {
        let running = self.running().await?;
        let Admitted { runs, deferred } = admit(due, running, &self.cap);
        let mut by_connection: std::collections::BTreeMap<String, Vec<Scope>> = Default::default();
        for scope in runs.iter().flatten() {
            by_connection
                .entry(scope.connection_id.clone())
                .or_default()
                .push(scope.clone());
        }
        for (connection, scopes) in &by_connection {
            inventory.mark_started(connection, scopes, now).await?;
        }
        let mut started = Vec::new();
        for scopes in runs {
            let run = format!(
                "{}-{}",
                now.format("%Y%m%dT%H%M%SZ"),
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            );
            let input = RunInput {
                run: run.clone(),
                asked,
                max_concurrency: self.cap.per_run,
                scopes: scopes
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
                scopes: scopes.len(),
                execution_arn: execution.execution_arn,
            });
        }
        Ok(Started {
            runs: started,
            deferred,
            running,
        })
    }
}
