//! RDS database instances: `DescribeDBInstances`, paged with `Marker`; tags come in the
//! answer's `TagList`.

use aws_sdk_rds::Client;
use aws_sdk_rds::types::DbInstance;
use maestro_domain::inventory::crawl::ProviderError;
use maestro_domain::inventory::entity::{self as domain, Described, Details, Entity};

use crate::errors::provider_error;
use crate::{Ctx, Listed, Lookup, each, present, tags, time};

pub(crate) async fn instances(
    ctx: &Ctx<'_>,
    marker: Option<String>,
) -> Result<Listed, ProviderError> {
    let out = Client::new(&ctx.config)
        .describe_db_instances()
        .max_records(ctx.page_size(20, 100))
        .set_marker(marker)
        .send()
        .await
        .map_err(|e| provider_error("rds:DescribeDBInstances", e))?;
    let entities = out
        .db_instances()
        .iter()
        .filter_map(|d| database(ctx, d))
        .collect();
    Ok(Listed::new(entities, out.marker()))
}

/// By identifier (or ARN), one per call: DescribeDBInstances takes one.
pub(crate) async fn describe(ctx: &Ctx<'_>, ids: &[String]) -> Result<Vec<Entity>, ProviderError> {
    let client = Client::new(&ctx.config);
    let found = each(ids, |id| {
        let call = client.describe_db_instances().db_instance_identifier(id);
        async move {
            let out = call
                .send()
                .await
                .map_err(|e| Lookup::from_sdk("rds:DescribeDBInstances", e))?;
            Ok(Some(
                out.db_instances()
                    .iter()
                    .filter_map(|d| database(ctx, d))
                    .collect::<Vec<_>>(),
            ))
        }
    })
    .await?;
    Ok(found.into_iter().flatten().collect())
}

fn database(ctx: &Ctx<'_>, db: &DbInstance) -> Option<Entity> {
    let arn = db.db_instance_arn()?;
    let identifier = db.db_instance_identifier()?;
    let group = db.db_subnet_group();
    let vpc_id = group.and_then(|g| present(g.vpc_id()));
    let subnet_ids: Vec<String> = group
        .map(|g| g.subnets())
        .unwrap_or_default()
        .iter()
        .filter_map(|s| present(s.subnet_identifier()))
        .collect();
    let security_group_ids: Vec<String> = db
        .vpc_security_groups()
        .iter()
        .filter_map(|g| present(g.vpc_security_group_id()))
        .collect();
    let relations = ctx.vpc_relations(&subnet_ids, &security_group_ids, vpc_id.as_deref());
    Some(ctx.entity(Described {
        id: arn.to_owned(),
        provider_type: "AWS::RDS::DBInstance",
        zone: present(db.availability_zone()),
        tags: tags(db.tag_list().iter().map(|t| (t.key(), t.value()))),
        status: present(db.db_instance_status()),
        active: true,
        created_at: time(db.instance_create_time()),
        details: Details::Database(domain::Database {
            identifier: identifier.to_owned(),
            engine: present(db.engine()),
            engine_version: present(db.engine_version()),
            instance_class: present(db.db_instance_class()),
            storage_gib: db.allocated_storage(),
            multi_az: db.multi_az().unwrap_or(false),
            encrypted: db.storage_encrypted().unwrap_or(false),
            endpoint: db.endpoint().and_then(|e| present(e.address())),
            vpc_id,
            subnet_ids,
            security_group_ids,
        }),
        relations,
    }))
}
