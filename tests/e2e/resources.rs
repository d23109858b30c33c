//! Every kind of resource the local host builds from a template, as the AWS APIs then see it,
//! and the sample organisation `make up` seeds.

use std::time::Duration;

use aws_sdk_dynamodb::types::TimeToLiveStatus;
use aws_sdk_sqs::types::QueueAttributeName;
use maestro_localcloud::seed;
use maestro_tests::{fixture_template, on_local_cloud, receive_bodies};

use crate::sso_fixture::identity_center_instance;

#[test]
fn a_template_builds_tables_topics_subscriptions_and_queues_as_declared() {
    on_local_cloud(
        Some(&fixture_template("resources.yaml")),
        |cloud, stack| async move {
            let stack = stack.expect("the stack");
            assert_eq!(stack.output("TableName"), Some("maestro-inventory-local"));
            assert_eq!(
                stack.output("TableArn"),
                Some("arn:aws:dynamodb:us-east-1:123456789012:table/maestro-inventory-local")
            );
            assert_eq!(stack.output("Joined"), Some("us-east-1:local"));
            assert_eq!(
                stack.output("FifoQueueName"),
                Some("maestro-DeletionsQueue.fifo")
            );

            let dynamodb = aws_sdk_dynamodb::Client::new(cloud.sdk_config());
            let table = dynamodb
                .describe_table()
                .table_name("maestro-inventory-local")
                .send()
                .await
                .expect("the table exists")
                .table
                .expect("a description");
            assert_eq!(table.key_schema().len(), 2);
            assert_eq!(
                table.global_secondary_indexes()[0].index_name(),
                Some("by-account")
            );
            let ttl = dynamodb
                .describe_time_to_live()
                .table_name("maestro-inventory-local")
                .send()
                .await
                .expect("TTL is described")
                .time_to_live_description
                .expect("a TTL description");
            assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));
            assert_eq!(ttl.attribute_name(), Some("expiresAt"));

            let sqs = aws_sdk_sqs::Client::new(cloud.sdk_config());
            let fifo = sqs
                .get_queue_attributes()
                .queue_url(stack.reference("DeletionsQueue").expect("the FIFO queue"))
                .attribute_names(QueueAttributeName::FifoQueue)
                .send()
                .await
                .expect("the FIFO queue exists")
                .attributes
                .unwrap_or_default();
            assert_eq!(fifo[&QueueAttributeName::FifoQueue], "true");

            let sns = aws_sdk_sns::Client::new(cloud.sdk_config());
            let topic = stack.reference("ChangesTopic").expect("the topic");
            for change in ["created", "deleted"] {
                sns.publish()
                    .topic_arn(topic)
                    .message(change)
                    .message_attributes(
                        "change",
                        aws_sdk_sns::types::MessageAttributeValue::builder()
                            .data_type("String")
                            .string_value(change)
                            .build()
                            .expect("an attribute"),
                    )
                    .send()
                    .await
                    .expect("published");
            }
            let patience = Duration::from_secs(10);
            let all = stack
                .reference("AllChangesQueue")
                .expect("the inline subscriber");
            assert_eq!(receive_bodies(cloud, all, 2, patience).await.len(), 2);
            let deletions = stack
                .reference("PlainDeletionsQueue")
                .expect("the filtered subscriber");
            assert_eq!(
                receive_bodies(cloud, deletions, 2, Duration::from_secs(3)).await,
                vec!["deleted".to_owned()],
                "the filter policy and raw delivery hold"
            );
        },
    );
}

#[test]
fn the_sample_organisation_follows_the_sso_model() {
    on_local_cloud(None, |cloud, _| async move {
        let organisation = seed::sample_organisation(cloud.sdk_config())
            .await
            .expect("the sample organisation is created");
        let organizations = aws_sdk_organizations::Client::new(cloud.sdk_config());

        let sandbox = seed::find(&organisation.accounts, "account", "sandbox-alice").unwrap();
        let mut tags: Vec<(String, String)> = organizations
            .list_tags_for_resource()
            .resource_id(&sandbox.id)
            .send()
            .await
            .expect("account tags")
            .tags
            .unwrap_or_default()
            .into_iter()
            .map(|t| (t.key, t.value))
            .collect();
        tags.sort();
        assert_eq!(
            tags,
            vec![
                ("owner".to_owned(), "alice".to_owned()),
                ("workload".to_owned(), "sandbox".to_owned())
            ]
        );

        // The environment is the OU at the second level: Workloads / sandbox.
        let mut path = Vec::new();
        let mut child = sandbox.id.clone();
        loop {
            let parent = organizations
                .list_parents()
                .child_id(&child)
                .send()
                .await
                .expect("parents")
                .parents
                .unwrap_or_default()
                .remove(0);
            let id = parent.id.expect("a parent id");
            if parent.r#type == Some(aws_sdk_organizations::types::ParentType::Root) {
                break;
            }
            let name = organizations
                .describe_organizational_unit()
                .organizational_unit_id(&id)
                .send()
                .await
                .expect("the OU")
                .organizational_unit
                .and_then(|ou| ou.name)
                .expect("a name");
            path.insert(0, name);
            child = id;
        }
        assert_eq!(path, vec!["Workloads", "sandbox"]);

        let sso_admin = aws_sdk_ssoadmin::Client::new(cloud.sdk_config());
        let instance = identity_center_instance(&sso_admin).await;
        let developer =
            seed::find(&organisation.permission_sets, "permission set", "Developer").unwrap();
        let tags = sso_admin
            .list_tags_for_resource()
            .instance_arn(instance.instance_arn.expect("an instance"))
            .resource_arn(&developer.id)
            .send()
            .await
            .expect("permission set tags")
            .tags
            .unwrap_or_default();
        assert!(
            tags.iter()
                .any(|t| t.key == "job_function" && t.value == "developer")
        );
        assert!(seed::find(&organisation.groups, "group", "developer_workload_payments").is_ok());
    });
}
