//! Synthetic entities for tests: a running EC2 instance named by its `Name` tag.

use std::collections::BTreeMap;

use super::entity::{Described, Details, Entity, Labels, Placement, Server, ids};

/// A running instance `instance_id` of `account` in `region`, tagged `Name` = `name`.
pub fn instance(account: &str, region: &str, instance_id: &str, name: &str) -> Entity {
    let labels = Labels::default();
    let at = Placement {
        account,
        region,
        labels: &labels,
    };
    Entity::new(
        &at,
        Described {
            id: ids::ec2(region, account, "instance", instance_id),
            provider_type: "AWS::EC2::Instance",
            zone: Some(format!("{region}a")),
            tags: BTreeMap::from([("Name".to_owned(), name.to_owned())]),
            status: Some("running".into()),
            active: true,
            created_at: None,
            details: Details::Server(Server {
                instance_id: instance_id.into(),
                instance_type: Some("t3.micro".into()),
                image_id: None,
                vpc_id: None,
                subnet_id: None,
                private_ip: None,
                public_ip: None,
                key_name: None,
                platform: None,
                architecture: None,
            }),
            relations: vec![],
        },
    )
}
