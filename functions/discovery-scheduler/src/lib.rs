//! `DiscoverySchedulerFunction`: on its schedule, starts discovery runs over the scopes whose
//! interval has passed, as many as the cap on crawlers leaves room for
//! (`maestro_domain::inventory::runs`; the rest wait for the next tick), and retires the entities of scopes no connection crawls any
//! more (`maestro_domain::inventory::lifecycle`), [`RETIRED_PER_TICK`] at a time.
//!
//! In organisation mode it first keeps one connection per ACTIVE account of the organisation,
//! reached through the member role named in the template (the account Maestro runs in needs
//! no role). Connections of accounts that left the organisation or closed are disabled, never
//! deleted: their inventory stays readable, retired.

use chrono::{DateTime, Utc};
use lambda_runtime::{Diagnostic, LambdaEvent};
use maestro_aws::SdkConfig;
use maestro_aws::discovery::{DiscoveryRuns, StartedRun};
use maestro_aws::env::{EnvError, FunctionEnv};
use maestro_aws::inventory::DynamoInventory;
use maestro_aws::lambda::{ErrorKind, LambdaFunction};
use maestro_aws::organizations::OrganizationsReader;
use maestro_domain::inventory::connection::{
    ConnectionSource, OrganizationTemplate, is_region, organization_connection,
};
use maestro_domain::inventory::crawl::SCOPE_LEASE;
use maestro_domain::inventory::lifecycle::{Retirement, retire_unwatched};
use maestro_domain::inventory::runs::DueScope;
use maestro_domain::port::PortError;
use serde::{Deserialize, Serialize};

pub struct Deps {
    pub inventory: DynamoInventory,
    pub runs: DiscoveryRuns,
    pub organization: Option<(OrganizationsReader, OrganizationTemplate)>,
}

/// The scheduled event; only its time is read, so a tick can be replayed.
#[derive(Debug, Clone, Deserialize)]
pub struct Tick {
    pub time: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Scheduled {
    pub connections: usize,
    pub organization_accounts: Option<usize>,
    pub runs: Vec<StartedRun>,
    /// Due scopes left for a later tick: the cap on crawlers was reached.
    pub deferred: usize,
    /// Runs that were going when this tick looked.
    pub running: usize,
    pub retired: Retirement,
}

/// Entities retired on one tick: each is one transaction, so a tick stays well inside the
/// function's 120 s; a connection of 10,000 entities deleted is retired within 20 ticks.
pub const RETIRED_PER_TICK: usize = 500;

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct SchedulerFailure(#[from] PortError);

impl From<SchedulerFailure> for Diagnostic {
    fn from(failure: SchedulerFailure) -> Diagnostic {
        ErrorKind::of_port_error(&failure.0).diagnostic(&failure)
    }
}

/// Creates or updates the organisation's connections; answers how many accounts are ACTIVE.
async fn sync_organization(
    deps: &Deps,
    reader: &OrganizationsReader,
    template: &OrganizationTemplate,
    now: DateTime<Utc>,
) -> Result<usize, PortError> {
    let accounts = reader.active_accounts().await?;
    let existing = deps.inventory.connections().await?;
    for (account_id, name) in &accounts {
        let current = existing
            .iter()
            .find(|c| c.source == ConnectionSource::Organization && &c.account_id == account_id);
        let wanted = organization_connection(account_id, name, template, current, now);
        let unchanged = current.is_some_and(|c| {
            c.role == wanted.role && c.regions == wanted.regions && c.name == wanted.name
        });
        if !unchanged {
            deps.inventory
                .put_connection(&wanted, current.is_none())
                .await?;
        }
    }
    for gone in existing.iter().filter(|c| {
        c.source == ConnectionSource::Organization
            && c.enabled
            && !accounts.iter().any(|(id, _)| id == &c.account_id)
    }) {
        let mut disabled = gone.clone();
        disabled.enabled = false;
        disabled.updated_at = now;
        deps.inventory.put_connection(&disabled, false).await?;
    }
    Ok(accounts.len())
}

pub async fn handle(deps: &Deps, event: LambdaEvent<Tick>) -> Result<Scheduled, SchedulerFailure> {
    let now = event.payload.time.unwrap_or_else(Utc::now);
    let organization_accounts = match &deps.organization {
        Some((reader, template)) => Some(sync_organization(deps, reader, template, now).await?),
        None => None,
    };
    let schedules = deps.inventory.schedules().await?;
    let due: Vec<DueScope> = schedules.iter().flat_map(|s| s.due(now)).collect();
    let started = if due.is_empty() {
        Default::default()
    } else {
        deps.runs.start(&deps.inventory, due, false, now).await?
    };
    let unwatched: Vec<_> = schedules.iter().flat_map(|s| s.unwatched()).collect();
    let retired = if unwatched.is_empty() {
        Retirement::default()
    } else {
        retire_unwatched(
            &deps.inventory,
            &deps.inventory,
            &deps.inventory,
            unwatched,
            RETIRED_PER_TICK,
            SCOPE_LEASE,
            now,
        )
        .await?
    };
    for error in &retired.errors {
        tracing::warn!(error, "a scope could not be retired on this tick");
    }
    let connections = schedules.iter().filter(|s| s.connection.is_some()).count();
    tracing::info!(
        connections,
        runs = started.runs.len(),
        running = started.running,
        deferred_scopes = started.deferred,
        retired_entities = retired.entities,
        retired_scopes = retired.scopes,
        scopes_left_to_retire = retired.pending,
        "discovery scheduled"
    );
    Ok(Scheduled {
        connections,
        organization_accounts,
        runs: started.runs,
        deferred: started.deferred,
        running: started.running,
        retired,
    })
}

impl LambdaFunction for Deps {
    type Event = Tick;
    type Response = Scheduled;
    type Error = SchedulerFailure;

    fn from_parts(config: &SdkConfig, env: &FunctionEnv) -> Result<Self, EnvError> {
        let mut vars = env.reader();
        let table = vars.required("INVENTORY_TABLE");
        let runs = DiscoveryRuns::from_vars(config, &mut vars);
        let organization_mode = env.get("ORGANIZATION_MODE").unwrap_or("false") == "true";
        let organization = if organization_mode {
            let role_name = vars.required("MEMBER_ROLE_NAME");
            let external_id = vars.required("MEMBER_EXTERNAL_ID");
            let own_account = vars.required("OWN_ACCOUNT_ID");
            let regions: Vec<String> = vars
                .required("ORGANIZATION_REGIONS")
                .split(',')
                .map(|r| r.trim().to_owned())
                .filter(|r| !r.is_empty())
                .collect();
            if let Some(bad) = regions.iter().find(|r| !is_region(r)) {
                vars.problem(format!("ORGANIZATION_REGIONS: {bad:?} is not a region"));
            }
            Some((
                OrganizationsReader::new(config),
                OrganizationTemplate {
                    role_name,
                    external_id,
                    regions,
                    own_account,
                },
            ))
        } else {
            None
        };
        vars.finish()?;
        Ok(Deps {
            inventory: DynamoInventory::new(config, table),
            runs,
            organization,
        })
    }

    async fn handle(&self, event: LambdaEvent<Tick>) -> Result<Scheduled, SchedulerFailure> {
        handle(self, event).await
    }
}
