//! `DiscoveryCrawlerFunction`: one step of one scope's crawl, called by the discovery state
//! machine until the scope is done.
//!
//! Each call reads at most `PAGES_PER_CALL` pages, so no account is too large for a Lambda:
//! the state machine hands back the cursor and calls again. Throttling is reported as
//! `Transient` for the state machine's Retry; anything else as `Rejected`, which its Catch
//! turns into a failed scope that concludes nothing.

use chrono::Utc;
use lambda_runtime::{Diagnostic, LambdaEvent};
use maestro_aws::SdkConfig;
use maestro_aws::env::{EnvError, FunctionEnv};
use maestro_aws::inventory::DynamoInventory;
use maestro_aws::lambda::{ErrorKind, LambdaFunction};
use maestro_discovery_aws::AwsProvider;
use maestro_domain::inventory::crawl::{
    CrawlError, CrawlSettings, CrawlState, SCOPE_LEASE, crawl_step,
};
use maestro_domain::inventory::entity::Labels;
use maestro_domain::port::PortError;

pub struct Deps {
    pub inventory: DynamoInventory,
    pub provider: AwsProvider,
    pub settings: CrawlSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum CrawlFailure {
    #[error(transparent)]
    Crawl(#[from] CrawlError),
    #[error("connection {0} no longer exists")]
    NoConnection(String),
    #[error("the connection could not be read: {0}")]
    Store(#[from] PortError),
}

impl From<CrawlFailure> for Diagnostic {
    fn from(failure: CrawlFailure) -> Diagnostic {
        let kind = match &failure {
            CrawlFailure::Crawl(error) => ErrorKind::of_crawl_error(error),
            CrawlFailure::Store(error) => ErrorKind::of_port_error(error),
            CrawlFailure::NoConnection(_) => ErrorKind::NotFound,
        };
        kind.diagnostic(&failure)
    }
}

pub async fn handle(
    deps: &Deps,
    event: LambdaEvent<CrawlState>,
) -> Result<CrawlState, CrawlFailure> {
    let state = event.payload;
    let connection = deps
        .inventory
        .connection(&state.scope.connection_id)
        .await?
        .ok_or_else(|| CrawlFailure::NoConnection(state.scope.connection_id.clone()))?;
    let scope = state.scope.key();
    if !connection.crawls(&state.scope) {
        tracing::info!(
            scope,
            "the connection no longer crawls this scope; left alone"
        );
        let mut left = state;
        left.done = true;
        return Ok(left);
    }
    let target = connection.target(&state.scope.region);
    let next = crawl_step(
        &deps.provider,
        &deps.inventory,
        &deps.inventory,
        &target,
        state,
        &deps.settings,
        Utc::now(),
    )
    .await
    .inspect_err(|e| tracing::warn!(scope, error = %e, "the crawl stopped"))?;
    tracing::info!(
        scope,
        held_by = next.held_by,
        pages = next.pages,
        done = next.done,
        seen = next.counts.seen,
        created = next.counts.created,
        changed = next.counts.changed,
        gone = next.counts.gone,
        "crawled"
    );
    // The counts add up across the scope's calls: published once, when it is done.
    if next.done {
        maestro_aws::metrics::count(
            &[("ResourceType", next.scope.resource_type.as_str())],
            &[
                ("ResourcesCreated", next.counts.created),
                ("ResourcesChanged", next.counts.changed),
                ("ResourcesGone", next.counts.gone),
                ("ResourcesSeen", next.counts.seen),
            ],
        );
    }
    Ok(next)
}

impl LambdaFunction for Deps {
    type Event = CrawlState;
    type Response = CrawlState;
    type Error = CrawlFailure;

    fn from_parts(config: &SdkConfig, env: &FunctionEnv) -> Result<Self, EnvError> {
        let mut vars = env.reader();
        let table = vars.required("INVENTORY_TABLE");
        let pages_per_call = vars.parsed::<u32>("PAGES_PER_CALL").unwrap_or(20);
        let gone_after = vars.parsed::<u32>("GONE_AFTER_CRAWLS").unwrap_or(2);
        if gone_after == 0 {
            vars.problem(
                "GONE_AFTER_CRAWLS: at least one complete crawl must miss a resource".into(),
            );
        }
        let labels = Labels::from_lists(env.get("ENVIRONMENT_TAG_KEYS"), env.get("ROLE_TAG_KEYS"));
        vars.finish()?;
        Ok(Deps {
            inventory: DynamoInventory::new(config, table),
            provider: AwsProvider::new(config, labels),
            settings: CrawlSettings {
                pages_per_call,
                gone_after,
                lease: SCOPE_LEASE,
            },
        })
    }

    async fn handle(&self, event: LambdaEvent<CrawlState>) -> Result<CrawlState, CrawlFailure> {
        handle(self, event).await
    }
}
