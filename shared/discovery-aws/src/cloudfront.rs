//! CloudFront distributions, listed once per account: `ListDistributions` paged with
//! `Marker`/`NextMarker`, and each distribution's tags with `ListTagsForResource`.

use aws_sdk_cloudfront::Client;
use aws_sdk_cloudfront::types::{Aliases, Origins, PriceClass};
use maestro_domain::inventory::crawl::ProviderError;
use maestro_domain::inventory::entity::{self as domain, Described, Details, Entity, ids};

use crate::errors::{provider_error, unless_gone};
use crate::{Ctx, Listed, Lookup, each, present, tags};

/// What the list's summaries and GetDistribution's answer both say.
struct Fields<'a> {
    id: &'a str,
    arn: &'a str,
    status: &'a str,
    domain_name: &'a str,
    aliases: Option<&'a Aliases>,
    origins: Option<&'a Origins>,
    enabled: bool,
    price_class: Option<&'a PriceClass>,
}

pub(crate) async fn distributions(
    ctx: &Ctx<'_>,
    marker: Option<String>,
) -> Result<Listed, ProviderError> {
    let client = Client::new(&ctx.config);
    let out = client
        .list_distributions()
        .max_items(ctx.page_size(1, 100))
        .set_marker(marker)
        .send()
        .await
        .map_err(|e| provider_error("cloudfront:ListDistributions", e))?;
    let Some(list) = out.distribution_list() else {
        return Ok(Listed::new(Vec::new(), None));
    };
    let mut entities = Vec::new();
    for summary in list.items() {
        let fields = Fields {
            id: summary.id(),
            arn: summary.arn(),
            status: summary.status(),
            domain_name: summary.domain_name(),
            aliases: summary.aliases(),
            origins: summary.origins(),
            enabled: summary.enabled(),
            price_class: Some(summary.price_class()),
        };
        entities.extend(distribution(ctx, &client, fields).await?);
    }
    let next = if list.is_truncated() {
        list.next_marker()
    } else {
        None
    };
    Ok(Listed::new(entities, next))
}

/// By id (or ARN).
pub(crate) async fn describe(ctx: &Ctx<'_>, ids: &[String]) -> Result<Vec<Entity>, ProviderError> {
    let client = Client::new(&ctx.config);
    let client = &client;
    each(ids, |id| async move {
        let id = id.rsplit('/').next().unwrap_or_default().to_owned();
        let out = client
            .get_distribution()
            .id(id)
            .send()
            .await
            .map_err(|e| Lookup::from_sdk("cloudfront:GetDistribution", e))?;
        let Some(found) = out.distribution() else {
            return Ok(None);
        };
        let config = found.distribution_config();
        let fields = Fields {
            id: found.id(),
            arn: found.arn(),
            status: found.status(),
            domain_name: found.domain_name(),
            aliases: config.and_then(|c| c.aliases()),
            origins: config.and_then(|c| c.origins()),
            enabled: config.is_some_and(|c| c.enabled()),
            price_class: config.and_then(|c| c.price_class()),
        };
        distribution(ctx, client, fields)
            .await
            .map_err(Lookup::Failed)
    })
    .await
}

/// The distribution with its tags; none when it was deleted since it was listed.
async fn distribution(
    ctx: &Ctx<'_>,
    client: &Client,
    fields: Fields<'_>,
) -> Result<Option<Entity>, ProviderError> {
    let tagged = client
        .list_tags_for_resource()
        .resource(fields.arn)
        .send()
        .await;
    let Some(tagged) = unless_gone("cloudfront:ListTagsForResource", tagged)? else {
        return Ok(None);
    };
    Ok(Some(
        ctx.entity(Described {
            id: ids::distribution(ctx.account(), fields.id),
            provider_type: "AWS::CloudFront::Distribution",
            zone: None,
            tags: tags(
                tagged
                    .tags()
                    .map(|t| t.items())
                    .unwrap_or_default()
                    .iter()
                    .map(|t| (Some(t.key()), t.value())),
            ),
            status: present(Some(fields.status)),
            active: true,
            // CloudFront answers only when a distribution was last modified.
            created_at: None,
            details: Details::Distribution(domain::Distribution {
                distribution_id: fields.id.to_owned(),
                domain_name: present(Some(fields.domain_name)),
                aliases: fields
                    .aliases
                    .map(|a| a.items().to_vec())
                    .unwrap_or_default(),
                origins: fields
                    .origins
                    .map(|o| o.items())
                    .unwrap_or_default()
                    .iter()
                    .map(|o| o.domain_name().to_owned())
                    .collect(),
                enabled: fields.enabled,
                price_class: fields.price_class.map(|p| p.as_str().to_owned()),
            }),
            relations: Vec::new(),
        }),
    ))
}
