//! `DiscoveryEventsFunction`: refreshes single resources when an event says they changed: a
//! CloudTrail record of a call that changes them, or an EC2 instance's change of state
//! (`maestro_domain::inventory::events`).
//!
//! The event names the account, the region and the resources; each connection of that account
//! that crawls the region and type has them described again and written through the same
//! diff as a crawl, with the event as the change's source. The scheduled crawls stay the
//! safety net: an event never makes a resource gone.

use chrono::Utc;
use lambda_runtime::{Diagnostic, LambdaEvent};
use maestro_aws::SdkConfig;
use maestro_aws::env::{EnvError, FunctionEnv};
use maestro_aws::inventory::DynamoInventory;
use maestro_aws::lambda::{ErrorKind, LambdaFunction};
use maestro_discovery_aws::AwsProvider;
use maestro_domain::inventory::connection::{GLOBAL_REGION, Scope};
use maestro_domain::inventory::crawl::{Counts, CrawlError, Provider, Source, refresh};
use maestro_domain::inventory::entity::Labels;
use maestro_domain::inventory::events::{actor_of, event_name, named_resources};
use maestro_domain::port::PortError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub struct Deps {
    pub inventory: DynamoInventory,
    pub provider: AwsProvider,
}

/// An EventBridge event: a CloudTrail record, or an EC2 instance's change of state.
#[derive(Debug, Clone, Deserialize)]
pub struct TrailEvent {
    pub id: String,
    pub source: String,
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    pub account: String,
    pub region: String,
    pub detail: Value,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Refreshed {
    pub event_name: String,
    pub named: usize,
    pub connections: usize,
    pub counts: Counts,
}

#[derive(Debug, thiserror::Error)]
pub enum RefreshFailure {
    #[error(transparent)]
    Crawl(#[from] CrawlError),
    #[error("the connections could not be read: {0}")]
    Store(#[from] PortError),
}

impl From<RefreshFailure> for Diagnostic {
    fn from(failure: RefreshFailure) -> Diagnostic {
        let kind = match &failure {
            RefreshFailure::Crawl(error) => ErrorKind::of_crawl_error(error),
            RefreshFailure::Store(error) => ErrorKind::of_port_error(error),
        };
        kind.diagnostic(&failure)
    }
}

pub async fn handle(
    deps: &Deps,
    event: LambdaEvent<TrailEvent>,
) -> Result<Refreshed, RefreshFailure> {
    let event = event.payload;
    let event_name = event_name(&event.detail_type, &event.detail);
    let named = named_resources(&event.source, &event.detail_type, &event.detail);
    let mut refreshed = Refreshed {
        event_name: event_name.clone(),
        named: named.iter().map(|n| n.ids.len()).sum(),
        ..Refreshed::default()
    };
    if named.is_empty() {
        return Ok(refreshed);
    }
    let source = Source::EventRefresh {
        event_id: event.id.clone(),
        event_name: event_name.clone(),
        actor: actor_of(&event.detail),
    };
    // When Maestro saw the change: the event's own time has only seconds, and would sort its
    // record before a crawl's of the same second that it follows.
    let now = Utc::now();
    let connections = deps.inventory.connections().await?;
    for connection in connections
        .iter()
        .filter(|c| c.enabled && c.account_id == event.account)
    {
        for resources in &named {
            let resource_type = resources.resource_type;
            let region = if resource_type.is_global() {
                GLOBAL_REGION.to_owned()
            } else {
                event.region.clone()
            };
            let crawled = connection.resource_types.contains_key(&resource_type)
                && (resource_type.is_global() || connection.regions.contains(&region));
            if !crawled {
                continue;
            }
            let scope = Scope {
                connection_id: connection.id.clone(),
                account: connection.account_id.clone(),
                region: region.clone(),
                resource_type,
            };
            let target = connection.target(&region);
            let entities = deps
                .provider
                .describe(&target, resources)
                .await
                .map_err(|error| CrawlError::Provider {
                    scope: scope.key(),
                    error,
                })?;
            let counts = refresh(&deps.inventory, &entities, &scope, &source, now).await?;
            refreshed.counts.add(&counts);
        }
        refreshed.connections += 1;
    }
    tracing::info!(
        event_name,
        named = refreshed.named,
        created = refreshed.counts.created,
        changed = refreshed.counts.changed,
        "refreshed from an event"
    );
    Ok(refreshed)
}

impl LambdaFunction for Deps {
    type Event = TrailEvent;
    type Response = Refreshed;
    type Error = RefreshFailure;

    fn from_parts(config: &SdkConfig, env: &FunctionEnv) -> Result<Self, EnvError> {
        let mut vars = env.reader();
        let table = vars.required("INVENTORY_TABLE");
        let labels = Labels::from_lists(env.get("ENVIRONMENT_TAG_KEYS"), env.get("ROLE_TAG_KEYS"));
        vars.finish()?;
        Ok(Deps {
            inventory: DynamoInventory::new(config, table),
            provider: AwsProvider::new(config, labels),
        })
    }

    async fn handle(&self, event: LambdaEvent<TrailEvent>) -> Result<Refreshed, RefreshFailure> {
        handle(self, event).await
    }
}
