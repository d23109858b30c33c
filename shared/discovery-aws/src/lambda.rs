//! Lambda functions: `ListFunctions` paged with `Marker`/`NextMarker`, and each function's
//! tags with `ListTags` (the list does not carry them).

use std::collections::{BTreeMap, HashMap};

use aws_sdk_lambda::Client;
use aws_sdk_lambda::types::FunctionConfiguration;
use maestro_domain::inventory::crawl::ProviderError;
use maestro_domain::inventory::entity::{self as domain, Described, Details, Entity};

use crate::errors::{provider_error, unless_gone};
use crate::{Ctx, Listed, Lookup, each, present};

/// Each function costs one more call for its tags.
const MAX_PAGE: i32 = 50;

pub(crate) async fn functions(
    ctx: &Ctx<'_>,
    marker: Option<String>,
) -> Result<Listed, ProviderError> {
    let client = Client::new(&ctx.config);
    let out = client
        .list_functions()
        .max_items(ctx.page_size(1, MAX_PAGE))
        .set_marker(marker)
        .send()
        .await
        .map_err(|e| provider_error("lambda:ListFunctions", e))?;
    let mut entities = Vec::new();
    for configuration in out.functions() {
        let Some(arn) = configuration.function_arn() else {
            continue;
        };
        // Deleted since the listing: left out.
        let Some(tags) = list_tags(&client, arn).await? else {
            continue;
        };
        entities.extend(function(ctx, configuration, tags));
    }
    Ok(Listed::new(entities, out.next_marker()))
}

/// The function's tags; none when it no longer exists.
async fn list_tags(
    client: &Client,
    arn: &str,
) -> Result<Option<BTreeMap<String, String>>, ProviderError> {
    let out = client.list_tags().resource(unqualified(arn)).send().await;
    Ok(unless_gone("lambda:ListTags", out)?.map(|out| sorted(out.tags())))
}

fn sorted(tags: Option<&HashMap<String, String>>) -> BTreeMap<String, String> {
    tags.map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// By name or ARN; GetFunction answers the tags too.
pub(crate) async fn describe(
    ctx: &Ctx<'_>,
    names: &[String],
) -> Result<Vec<Entity>, ProviderError> {
    let client = Client::new(&ctx.config);
    let client = &client;
    each(names, |name| async move {
        let out = client
            .get_function()
            .function_name(unqualified(&name))
            .send()
            .await
            .map_err(|e| Lookup::from_sdk("lambda:GetFunction", e))?;
        let Some(configuration) = out.configuration() else {
            return Ok(None);
        };
        // GetFunction leaves tags it may not read out with an error beside them; ListTags
        // then says why.
        let tags = match (out.tags_error(), configuration.function_arn()) {
            (Some(_), Some(arn)) => match list_tags(client, arn).await.map_err(Lookup::Failed)? {
                Some(tags) => tags,
                None => return Ok(None),
            },
            _ => sorted(out.tags()),
        };
        Ok(function(ctx, configuration, tags))
    })
    .await
}

/// A function's ARN without a version or alias qualifier: the function itself.
fn unqualified(arn: &str) -> &str {
    // arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]
    match arn.match_indices(':').nth(6) {
        Some((end, _)) if arn.starts_with("arn:") => &arn[..end],
        _ => arn,
    }
}

fn function(
    ctx: &Ctx<'_>,
    configuration: &FunctionConfiguration,
    tags: BTreeMap<String, String>,
) -> Option<Entity> {
    let arn = unqualified(configuration.function_arn()?);
    let name = configuration.function_name()?;
    let vpc = configuration.vpc_config();
    let vpc_id = vpc.and_then(|v| present(v.vpc_id()));
    let subnet_ids = vpc.map(|v| v.subnet_ids().to_vec()).unwrap_or_default();
    let security_group_ids = vpc
        .map(|v| v.security_group_ids().to_vec())
        .unwrap_or_default();
    let relations = ctx.vpc_relations(&subnet_ids, &security_group_ids, vpc_id.as_deref());
    Some(
        ctx.entity(Described {
            id: arn.to_owned(),
            provider_type: "AWS::Lambda::Function",
            zone: None,
            tags,
            status: configuration.state().map(|s| s.as_str().to_owned()),
            active: true,
            // Lambda answers only when a function was last modified.
            created_at: None,
            details: Details::Function(domain::Function {
                function_name: name.to_owned(),
                runtime: configuration.runtime().map(|r| r.as_str().to_owned()),
                handler: present(configuration.handler()),
                memory_mb: configuration.memory_size(),
                timeout_seconds: configuration.timeout(),
                code_size: configuration.code_size(),
                execution_role: present(configuration.role()),
                architectures: configuration
                    .architectures()
                    .iter()
                    .map(|a| a.as_str().to_owned())
                    .collect(),
                vpc_id,
                subnet_ids,
                security_group_ids,
            }),
            relations,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::unqualified;

    #[test]
    fn a_qualified_arn_names_its_function() {
        let arn = "arn:aws:lambda:eu-west-1:111111111111:function:api";
        assert_eq!(unqualified(arn), arn);
        assert_eq!(unqualified(&format!("{arn}:$LATEST")), arn);
        assert_eq!(unqualified(&format!("{arn}:live")), arn);
        assert_eq!(unqualified("api"), "api");
    }
}
