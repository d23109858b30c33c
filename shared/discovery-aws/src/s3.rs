//! S3 buckets, listed once per account: `ListBuckets` paged with `ContinuationToken`, then
//! each bucket's region and tags. Tags must be read in the bucket's own region, so a bucket's
//! entity is placed there rather than in the global scope's `global`.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::Bucket;
use maestro_aws::SdkConfig;
use maestro_domain::inventory::crawl::ProviderError;
use maestro_domain::inventory::entity::{self as domain, Described, Details, Entity, ids};
use tokio::task::JoinSet;

use crate::errors::{code, provider_error};
use crate::{Ctx, Listed, present, tags, time, token};

/// Each bucket costs two more calls, made side by side, so a page stays short.
const MAX_PAGE: i32 = 100;

/// S3's answer for a bucket created in us-east-1 is no location at all; `EU` is what the
/// oldest Ireland buckets answer.
fn region_of(location: Option<&str>) -> String {
    match location {
        None | Some("") => "us-east-1".to_owned(),
        Some("EU") => "eu-west-1".to_owned(),
        Some(region) => region.to_owned(),
    }
}

/// An S3 client; against a custom endpoint (an emulator, a VPC endpoint) buckets are
/// addressed by path, since `bucket.host` names resolve nowhere there.
fn client(config: &SdkConfig) -> Client {
    let path_style = config.endpoint_url().is_some();
    Client::from_conf(
        aws_sdk_s3::config::Builder::from(config)
            .force_path_style(path_style)
            .build(),
    )
}

pub(crate) async fn buckets(
    ctx: &Ctx<'_>,
    continuation: Option<String>,
) -> Result<Listed, ProviderError> {
    let s3 = client(&ctx.config);
    let asked = ctx.page_size(1, MAX_PAGE);
    let first = continuation.is_none();
    let out = s3
        .list_buckets()
        .max_buckets(asked)
        .set_continuation_token(continuation)
        .send()
        .await
        .map_err(|e| provider_error("s3:ListBuckets", e))?;
    let next = token(out.continuation_token());
    let full = out.buckets().len() >= usize::try_from(asked).unwrap_or(usize::MAX);
    if !(first && full && next.is_none()) {
        let entities = described(ctx, out.buckets()).await?;
        return Ok(Listed::new(entities, next.as_deref()));
    }
    // S3 answers a ContinuationToken whenever more buckets follow, but an emulator may cut
    // the list at MaxBuckets without one (moto 5.2.5 does), which would lose the rest
    // silently. A full first page without a token is therefore listed again whole: on S3
    // the account has exactly a page of buckets, and it costs one call.
    let all = s3
        .list_buckets()
        .send()
        .await
        .map_err(|e| provider_error("s3:ListBuckets", e))?;
    let entities = described(ctx, all.buckets()).await?;
    Ok(Listed::new(entities, all.continuation_token()))
}

/// By name. ListBuckets with the name as prefix is the one call that answers a bucket's
/// creation date, so a bucket refreshed by an event keeps the one its crawl found.
pub(crate) async fn describe(
    ctx: &Ctx<'_>,
    names: &[String],
) -> Result<Vec<Entity>, ProviderError> {
    let s3 = client(&ctx.config);
    let mut found = Vec::new();
    for name in names {
        let mut continuation = None;
        loop {
            let out = s3
                .list_buckets()
                .prefix(name)
                .set_continuation_token(continuation)
                .send()
                .await
                .map_err(|e| provider_error("s3:ListBuckets", e))?;
            let bucket = out
                .buckets()
                .iter()
                .find(|b| b.name() == Some(name.as_str()));
            if let Some(bucket) = bucket {
                found.push(bucket.clone());
                break;
            }
            continuation = token(out.continuation_token());
            if continuation.is_none() {
                break;
            }
        }
    }
    described(ctx, &found).await
}

/// A listed bucket with its region and tags.
struct Found {
    name: String,
    region: String,
    tags: BTreeMap<String, String>,
    /// Why its tags could not be read (its policy may deny it to everyone but its owner).
    tags_unreadable: Option<String>,
}

async fn described(ctx: &Ctx<'_>, listed: &[Bucket]) -> Result<Vec<Entity>, ProviderError> {
    let s3 = client(&ctx.config);
    let names: Vec<(String, Option<String>)> = listed
        .iter()
        .filter_map(|b| Some((b.name()?.to_owned(), present(b.bucket_region()))))
        .collect();
    let located = side_by_side(names, |(name, region)| {
        let s3 = s3.clone();
        async move {
            if let Some(region) = region {
                return Ok(Some((name, region)));
            }
            match s3.get_bucket_location().bucket(&name).send().await {
                Ok(out) => {
                    let location = out.location_constraint().map(|l| l.as_str());
                    Ok(Some((name, region_of(location))))
                }
                Err(e) if code(&e) == Some("NoSuchBucket") => Ok(None),
                Err(e) => Err(provider_error("s3:GetBucketLocation", e)),
            }
        }
    })
    .await?;
    let mut regional: HashMap<String, Client> = HashMap::new();
    for (_, region) in located.iter().flatten() {
        if !regional.contains_key(region) {
            regional.insert(region.clone(), client(&ctx.config_in(region).await?));
        }
    }
    let found = side_by_side(located.into_iter().flatten().collect(), |(name, region)| {
        let s3 = regional.get(&region).cloned();
        async move {
            let Some(s3) = s3 else {
                return Ok(None);
            };
            match s3.get_bucket_tagging().bucket(&name).send().await {
                Ok(out) => Ok(Some(Found {
                    tags: tags(
                        out.tag_set()
                            .iter()
                            .map(|t| (Some(t.key()), Some(t.value()))),
                    ),
                    name,
                    region,
                    tags_unreadable: None,
                })),
                Err(e) if code(&e) == Some("NoSuchTagSet") => Ok(Some(Found {
                    tags: BTreeMap::new(),
                    name,
                    region,
                    tags_unreadable: None,
                })),
                Err(e) if code(&e) == Some("NoSuchBucket") => Ok(None),
                // One bucket's policy refusing its tags fails no other bucket: it is kept
                // with the tags it was last read with. A role without the permission, or
                // without credentials, fails the scope as before.
                Err(e) if code(&e) == Some("AccessDenied") => Ok(Some(Found {
                    tags: BTreeMap::new(),
                    name,
                    region,
                    tags_unreadable: Some(format!(
                        "s3:GetBucketTagging: AccessDenied: {}",
                        e.message().unwrap_or("no message")
                    )),
                })),
                Err(e) => Err(provider_error("s3:GetBucketTagging", e)),
            }
        }
    })
    .await?;
    let created: HashMap<&str, _> = listed
        .iter()
        .filter_map(|b| Some((b.name()?, time(b.creation_date()))))
        .collect();
    Ok(found
        .into_iter()
        .flatten()
        .map(|bucket| {
            let mut entity = ctx.entity_in(
                &bucket.region,
                Described {
                    id: ids::bucket(&bucket.name),
                    provider_type: "AWS::S3::Bucket",
                    zone: None,
                    tags: bucket.tags,
                    status: None,
                    active: true,
                    created_at: created.get(bucket.name.as_str()).copied().flatten(),
                    details: Details::Bucket(domain::Bucket {
                        bucket_name: bucket.name,
                    }),
                    relations: Vec::new(),
                },
            );
            entity.tags_unreadable = bucket.tags_unreadable;
            entity
        })
        .collect())
}

/// Runs one call per item at once, answers in the items' order, and fails with the first
/// error.
async fn side_by_side<T, R, F, Fut>(items: Vec<T>, call: F) -> Result<Vec<R>, ProviderError>
where
    F: Fn(T) -> Fut,
    Fut: Future<Output = Result<R, ProviderError>> + Send + 'static,
    R: Send + 'static,
{
    let mut calls = JoinSet::new();
    for (index, item) in items.into_iter().enumerate() {
        let call = call(item);
        calls.spawn(async move { (index, call.await) });
    }
    let mut answers = Vec::with_capacity(calls.len());
    while let Some(joined) = calls.join_next().await {
        let (index, answer) =
            joined.map_err(|e| ProviderError::Failed(format!("an S3 call did not finish: {e}")))?;
        answers.push((index, answer?));
    }
    answers.sort_by_key(|(index, _)| *index);
    Ok(answers.into_iter().map(|(_, answer)| answer).collect())
}
