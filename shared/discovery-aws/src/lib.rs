//! Discovery's AWS side (BRIEF §1): [`AwsProvider`] implements the domain's crawl
//! [`Provider`] with the describe and list calls of each resource type, one SDK call per page,
//! in the account and region of a [`Target`], reached through the role it names.
//!
//! - `ec2`: instances, volumes, snapshots, images, security groups.
//! - `network`: VPCs and what lives in them, eight calls in turn.
//! - `load_balancers`: classic ELB, then ELBv2 load balancers, then target groups.
//! - `rds`, `s3`, `cloudfront`, `lambda`: one call each (S3 and CloudFront global).
//! - `errors`: SDK errors as the crawl's `ProviderError`.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;

use async_trait::async_trait;
use aws_config::Region;
use aws_config::sts::AssumeRoleProvider;
use aws_sdk_ec2::config::ProvideCredentials;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_types::sdk_config::SharedCredentialsProvider;
use chrono::{DateTime, Utc};
use maestro_aws::SdkConfig;
use maestro_domain::inventory::connection::{AssumedRole, GLOBAL_REGION, ResourceType};
use maestro_domain::inventory::crawl::{Cursor, Named, Page, Provider, ProviderError, Target};
use maestro_domain::inventory::entity::{
    Described, Entity, Labels, Placement, Relation, RelationKind, ids,
};
use tokio::sync::Mutex;

mod cloudfront;
mod ec2;
mod errors;
mod lambda;
mod load_balancers;
mod network;
mod rds;
mod s3;

/// Where the API of a global scope is called: S3 lists every bucket and CloudFront lives
/// there.
const GLOBAL_API_REGION: &str = "us-east-1";

/// Items asked for per page unless [`AwsProvider::with_page_size`] says otherwise; each API
/// clamps it to what it accepts.
pub const DEFAULT_PAGE_SIZE: i32 = 100;

/// A role and region whose SDK configuration has been derived once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ConfigKey {
    /// The role's ARN and ExternalId.
    role: Option<(String, String)>,
    region: String,
}

/// The crawl's [`Provider`] over the AWS APIs. Built once per cold start and shared: it keeps
/// the SDK configuration of each role and region it has called.
pub struct AwsProvider {
    base: SdkConfig,
    labels: Labels,
    page_size: i32,
    /// One derived configuration per role and region, so the credentials of an assumed role
    /// are fetched once per warm container and refreshed by the SDK, not per page.
    configs: Mutex<HashMap<ConfigKey, SdkConfig>>,
}

impl AwsProvider {
    /// `base` supplies the credentials that assume each connection's role, and anything else
    /// every client keeps (the endpoint URL of an emulator, retry and timeout settings).
    pub fn new(base: &SdkConfig, labels: Labels) -> AwsProvider {
        AwsProvider {
            base: base.clone(),
            labels,
            page_size: DEFAULT_PAGE_SIZE,
            configs: Mutex::new(HashMap::new()),
        }
    }

    /// Items asked for per page; each API clamps it to its own bounds.
    pub fn with_page_size(mut self, page_size: i32) -> AwsProvider {
        self.page_size = page_size;
        self
    }

    /// The configuration for calls in `region` as the target's role, its credentials checked
    /// the first time so that a role that cannot be assumed is reported as denied.
    async fn config(
        &self,
        role: Option<&AssumedRole>,
        region: &str,
    ) -> Result<SdkConfig, ProviderError> {
        let key = ConfigKey {
            role: role.map(|r| (r.role_arn.clone(), r.external_id.clone())),
            region: region.to_owned(),
        };
        let mut configs = self.configs.lock().await;
        if let Some(config) = configs.get(&key) {
            return Ok(config.clone());
        }
        let regional = self
            .base
            .to_builder()
            .region(Region::new(region.to_owned()))
            .build();
        let config = match role {
            None => regional,
            Some(role) => {
                let credentials = AssumeRoleProvider::builder(&role.role_arn)
                    .external_id(&role.external_id)
                    .session_name("maestro-discovery")
                    .configure(&self.base)
                    .region(Region::new(region.to_owned()))
                    .build()
                    .await;
                if let Err(error) = credentials.provide_credentials().await {
                    return Err(errors::assume_role_error(&role.role_arn, &error));
                }
                regional
                    .into_builder()
                    .credentials_provider(SharedCredentialsProvider::new(credentials))
                    .build()
            }
        };
        tracing::debug!(
            region,
            role = role.map(|r| r.role_arn.as_str()),
            "derived an SDK configuration"
        );
        configs.insert(key, config.clone());
        Ok(config)
    }

    async fn context<'a>(&'a self, target: &'a Target) -> Result<Ctx<'a>, ProviderError> {
        let api_region = if target.region == GLOBAL_REGION {
            GLOBAL_API_REGION
        } else {
            target.region.as_str()
        };
        Ok(Ctx {
            provider: self,
            target,
            config: self.config(target.role.as_ref(), api_region).await?,
            page_size: self.page_size,
        })
    }
}

impl AwsProvider {
    /// A denial in a region may be the region itself: an opt-in region the account has not
    /// enabled answers every call there, STS's included, as if the credentials were invalid.
    /// EC2's list of the account's regions, asked in a region every account has, tells which.
    async fn why_denied(&self, target: &Target, denied: String) -> ProviderError {
        let Ok(config) = self.config(target.role.as_ref(), GLOBAL_API_REGION).await else {
            return ProviderError::Denied(denied);
        };
        let regions = aws_sdk_ec2::Client::new(&config)
            .describe_regions()
            .all_regions(true)
            .region_names(&target.region)
            .send()
            .await;
        let not_enabled = regions.is_ok_and(|out| {
            out.regions().iter().any(|r| {
                r.region_name() == Some(target.region.as_str())
                    && r.opt_in_status() == Some("not-opted-in")
            })
        });
        if not_enabled {
            ProviderError::RegionNotEnabled(format!(
                "{} has not opted in to {} (ec2:DescribeRegions); {denied}",
                target.account, target.region
            ))
        } else {
            ProviderError::Denied(denied)
        }
    }

    async fn listed_page(
        &self,
        target: &Target,
        resource_type: ResourceType,
        cursor: Option<&Cursor>,
    ) -> Result<Page, ProviderError> {
        let step = cursor.map_or(0, |c| c.step);
        let token = cursor.and_then(|c| c.token.clone());
        let steps = match resource_type {
            ResourceType::Network => network::STEPS,
            ResourceType::LoadBalancers => load_balancers::STEPS,
            ResourceType::Instances
            | ResourceType::Volumes
            | ResourceType::Snapshots
            | ResourceType::Images
            | ResourceType::SecurityGroups
            | ResourceType::Databases
            | ResourceType::Buckets
            | ResourceType::Distributions
            | ResourceType::Functions => 1,
        };
        if step >= steps {
            return Err(unknown_step(resource_type, step));
        }
        let ctx = self.context(target).await?;
        let listed = match resource_type {
            ResourceType::Instances => ec2::instances(&ctx, token).await,
            ResourceType::Volumes => ec2::volumes(&ctx, token).await,
            ResourceType::Snapshots => ec2::snapshots(&ctx, token).await,
            ResourceType::Images => ec2::images(&ctx, token).await,
            ResourceType::SecurityGroups => ec2::security_groups(&ctx, token).await,
            ResourceType::Network => network::page(&ctx, step, token).await,
            ResourceType::LoadBalancers => load_balancers::page(&ctx, step, token).await,
            ResourceType::Databases => rds::instances(&ctx, token).await,
            ResourceType::Buckets => s3::buckets(&ctx, token).await,
            ResourceType::Distributions => cloudfront::distributions(&ctx, token).await,
            ResourceType::Functions => lambda::functions(&ctx, token).await,
        }?;
        let next = match listed.next_token {
            Some(token) => Some(Cursor {
                step,
                token: Some(token),
            }),
            None if step + 1 < steps => Some(Cursor {
                step: step + 1,
                token: None,
            }),
            None => None,
        };
        Ok(Page {
            entities: listed.entities,
            next,
        })
    }
}

#[async_trait]
impl Provider for AwsProvider {
    async fn page(
        &self,
        target: &Target,
        resource_type: ResourceType,
        cursor: Option<&Cursor>,
    ) -> Result<Page, ProviderError> {
        match self.listed_page(target, resource_type, cursor).await {
            Err(ProviderError::Denied(denied)) if target.region != GLOBAL_REGION => {
                Err(self.why_denied(target, denied).await)
            }
            listed => listed,
        }
    }

    async fn describe(&self, target: &Target, named: &Named) -> Result<Vec<Entity>, ProviderError> {
        let mut ids = named.ids.clone();
        ids.sort();
        ids.dedup();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ctx = self.context(target).await?;
        match named.resource_type {
            ResourceType::Instances => ec2::describe_instances(&ctx, &ids).await,
            ResourceType::Volumes => ec2::describe_volumes(&ctx, &ids).await,
            ResourceType::Snapshots => ec2::describe_snapshots(&ctx, &ids).await,
            ResourceType::Images => ec2::describe_images(&ctx, &ids).await,
            ResourceType::SecurityGroups => ec2::describe_security_groups(&ctx, &ids).await,
            ResourceType::Network => network::describe(&ctx, &ids).await,
            ResourceType::LoadBalancers => load_balancers::describe(&ctx, &ids).await,
            ResourceType::Databases => rds::describe(&ctx, &ids).await,
            ResourceType::Buckets => s3::describe(&ctx, &ids).await,
            ResourceType::Distributions => cloudfront::describe(&ctx, &ids).await,
            ResourceType::Functions => lambda::describe(&ctx, &ids).await,
        }
    }
}

pub(crate) fn unknown_step(resource_type: ResourceType, step: u16) -> ProviderError {
    ProviderError::Failed(format!(
        "the cursor's step {step} is not one of the calls that list {}",
        resource_type.as_str()
    ))
}

/// One call's page: its entities, and the token of the call's next page.
pub(crate) struct Listed {
    pub entities: Vec<Entity>,
    pub next_token: Option<String>,
}

impl Listed {
    pub fn new(entities: Vec<Entity>, next_token: Option<&str>) -> Listed {
        Listed {
            entities,
            next_token: token(next_token),
        }
    }
}

/// One page's calls: the target, its configuration, and how entities are placed.
pub(crate) struct Ctx<'a> {
    provider: &'a AwsProvider,
    pub target: &'a Target,
    /// For the target's region; us-east-1 for a global scope.
    pub config: SdkConfig,
    page_size: i32,
}

impl Ctx<'_> {
    /// The region the scope's entities are placed in (`global` for a global scope).
    pub fn region(&self) -> &str {
        &self.target.region
    }

    pub fn account(&self) -> &str {
        &self.target.account
    }

    /// The page size within what an API accepts.
    pub fn page_size(&self, min: i32, max: i32) -> i32 {
        self.page_size.clamp(min, max)
    }

    pub fn entity(&self, described: Described) -> Entity {
        self.entity_in(self.region(), described)
    }

    pub fn entity_in(&self, region: &str, described: Described) -> Entity {
        Entity::new(
            &Placement {
                account: &self.target.account,
                region,
                labels: &self.provider.labels,
            },
            described,
        )
    }

    /// The id of an EC2 resource of this account and region.
    pub fn ec2_id(&self, kind: &str, id: &str) -> String {
        ids::ec2(self.region(), self.account(), kind, id)
    }

    /// A relation to an EC2 resource of this account and region.
    pub fn ec2_relation(&self, relation: RelationKind, kind: &str, id: &str) -> Relation {
        Relation {
            kind: relation,
            target: self.ec2_id(kind, id),
        }
    }

    /// Relations to where a resource sits in a VPC: its subnets, then its security groups,
    /// then the VPC.
    pub fn vpc_relations(
        &self,
        subnets: &[String],
        security_groups: &[String],
        vpc: Option<&str>,
    ) -> Vec<Relation> {
        let mut relations = Vec::new();
        for subnet in subnets {
            relations.push(self.ec2_relation(RelationKind::Subnet, "subnet", subnet));
        }
        for group in security_groups {
            relations.push(self.ec2_relation(RelationKind::SecurityGroup, "security-group", group));
        }
        relations.extend(vpc.map(|v| self.ec2_relation(RelationKind::Vpc, "vpc", v)));
        relations
    }

    /// The configuration for calls in another region, as the same role.
    pub async fn config_in(&self, region: &str) -> Result<SdkConfig, ProviderError> {
        self.provider
            .config(self.target.role.as_ref(), region)
            .await
    }
}

/// A page token, none when the API answers an empty one.
pub(crate) fn token(value: Option<&str>) -> Option<String> {
    value.filter(|t| !t.is_empty()).map(str::to_owned)
}

/// A string field AWS may answer empty for "none" (a volume's SnapshotId, a function's VpcId).
pub(crate) fn present(value: Option<&str>) -> Option<String> {
    value.filter(|v| !v.is_empty()).map(str::to_owned)
}

pub(crate) fn time(value: Option<&aws_smithy_types::DateTime>) -> Option<DateTime<Utc>> {
    value.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
}

/// Tags as key and value pairs; a tag without a key is no tag, one without a value is empty.
pub(crate) fn tags<'a>(
    pairs: impl IntoIterator<Item = (Option<&'a str>, Option<&'a str>)>,
) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .filter_map(|(key, value)| Some((key?.to_owned(), value.unwrap_or_default().to_owned())))
        .collect()
}

/// Why describing some named resources answered nothing for one of them.
pub(crate) enum Lookup {
    /// A named resource does not exist; the whole call was refused for it.
    Absent,
    Failed(ProviderError),
}

impl Lookup {
    pub fn from_sdk<E, R>(call: &'static str, error: SdkError<E, R>) -> Lookup
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        if errors::is_absent(&error) {
            Lookup::Absent
        } else {
            Lookup::Failed(errors::provider_error(call, error))
        }
    }
}

/// Describes `ids` with one `send` (named `call` in errors) and keeps what `found` takes from
/// its answer; when the API refuses the whole call because one of them is gone (EC2 does),
/// describes them one at a time and leaves the gone ones out.
pub(crate) async fn by_ids<T, Out, E, R, Fut>(
    ids: &[String],
    call: &'static str,
    send: impl Fn(Vec<String>) -> Fut,
    found: impl Fn(&Out) -> Vec<T>,
) -> Result<Vec<T>, ProviderError>
where
    Fut: Future<Output = Result<Out, SdkError<E, R>>>,
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    // Most describe calls list everything when given no ids.
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let describe = |ids| async {
        let out = send(ids).await.map_err(|e| Lookup::from_sdk(call, e))?;
        Ok(found(&out))
    };
    match describe(ids.to_vec()).await {
        Ok(found) => return Ok(found),
        Err(Lookup::Failed(error)) => return Err(error),
        Err(Lookup::Absent) if ids.len() <= 1 => return Ok(Vec::new()),
        Err(Lookup::Absent) => {}
    }
    let mut found = Vec::new();
    for id in ids {
        match describe(vec![id.clone()]).await {
            Ok(entities) => found.extend(entities),
            Err(Lookup::Absent) => {}
            Err(Lookup::Failed(error)) => return Err(error),
        }
    }
    Ok(found)
}

/// Describes each id on its own, for APIs that take one name per call.
pub(crate) async fn each<T, F, Fut>(ids: &[String], describe: F) -> Result<Vec<T>, ProviderError>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<Option<T>, Lookup>>,
{
    let mut found = Vec::new();
    for id in ids {
        match describe(id.clone()).await {
            Ok(item) => found.extend(item),
            Err(Lookup::Absent) => {}
            Err(Lookup::Failed(error)) => return Err(error),
        }
    }
    Ok(found)
}
