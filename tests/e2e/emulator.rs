//! What the launcher adds to moto, seen through the Rust SDK as Maestro's adapters see it.

use aws_sdk_ssoadmin::types::Tag;
use maestro_tests::{on_local_cloud, reads_may_be_stale};

use crate::sso_fixture::identity_center_instance;

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build().expect("a tag")
}

#[test]
fn permission_set_tags_can_be_added_replaced_listed_and_removed() {
    on_local_cloud(None, |cloud, _| async move {
        let sso_admin = aws_sdk_ssoadmin::Client::new(cloud.sdk_config());
        let instance_arn = identity_center_instance(&sso_admin)
            .await
            .instance_arn
            .expect("an instance ARN");
        let permission_set = sso_admin
            .create_permission_set()
            .instance_arn(&instance_arn)
            .name("Developer")
            .tags(tag("job_function", "developer"))
            .send()
            .await
            .expect("a permission set")
            .permission_set
            .expect("the permission set");
        let arn = permission_set.permission_set_arn.expect("an ARN");
        assert!(
            arn.starts_with("arn:aws:sso:::permissionSet/ssoins-") && arn.contains("/ps-"),
            "IAM Identity Center's ARN shape: {arn}"
        );
        assert_eq!(permission_set.session_duration.as_deref(), Some("PT1H"));

        sso_admin
            .tag_resource()
            .instance_arn(&instance_arn)
            .resource_arn(&arn)
            .tags(tag("workloads", "workload_match"))
            .tags(tag("job_function", "tester"))
            .send()
            .await
            .expect("tags are added");
        let listed = |sso_admin: aws_sdk_ssoadmin::Client, arn: String, instance: String| async move {
            let mut tags: Vec<(String, String)> = sso_admin
                .list_tags_for_resource()
                .instance_arn(instance)
                .resource_arn(arn)
                .send()
                .await
                .expect("tags are listed")
                .tags
                .unwrap_or_default()
                .into_iter()
                .map(|t| (t.key, t.value))
                .collect();
            tags.sort();
            tags
        };
        assert_eq!(
            listed(sso_admin.clone(), arn.clone(), instance_arn.clone()).await,
            vec![
                ("job_function".to_owned(), "tester".to_owned()),
                ("workloads".to_owned(), "workload_match".to_owned()),
            ]
        );

        sso_admin
            .untag_resource()
            .instance_arn(&instance_arn)
            .resource_arn(&arn)
            .tag_keys("workloads")
            .send()
            .await
            .expect("a tag is removed");
        assert_eq!(
            listed(sso_admin.clone(), arn.clone(), instance_arn.clone()).await,
            vec![("job_function".to_owned(), "tester".to_owned())]
        );

        let unknown = sso_admin
            .list_tags_for_resource()
            .instance_arn(&instance_arn)
            .resource_arn(format!("{instance_arn}/ps-0000000000000000"))
            .send()
            .await;
        assert!(unknown.is_err(), "an unknown resource has no tags to list");
    });
}

#[test]
fn sso_admin_answers_throttling_past_twenty_calls_a_second() {
    // Issue 14: moto took any number of calls, so nothing here could show the sync keeping
    // to IAM Identity Center's 20 calls a second.
    on_local_cloud(None, |cloud, _| async move {
        // A caller of its own, as a function is (the harness's own calls are not counted).
        let config = aws_sdk_ssoadmin::config::Builder::from(cloud.sdk_config())
            .credentials_provider(aws_sdk_ssoadmin::config::Credentials::new(
                "AKIAEMULATORTEST0001",
                "emulator-test",
                None,
                None,
                "test",
            ))
            .retry_config(aws_sdk_ssoadmin::config::retry::RetryConfig::disabled())
            .build();
        let sso_admin = aws_sdk_ssoadmin::Client::from_conf(config);
        let instance_arn = identity_center_instance(&sso_admin)
            .await
            .instance_arn
            .expect("an instance ARN");
        // Let the bucket fill again after the call above.
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let started = std::time::Instant::now();
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..40 {
            let call = sso_admin.list_permission_sets().instance_arn(&instance_arn);
            calls.spawn(call.send());
        }
        let answers = calls.join_all().await;
        let seconds = started.elapsed().as_secs_f64();
        let throttled = answers
            .iter()
            .filter(|answer| {
                answer
                    .as_ref()
                    .err()
                    .and_then(|e| e.as_service_error())
                    .is_some_and(|e| {
                        aws_sdk_ssoadmin::error::ProvideErrorMetadata::code(e)
                            == Some("ThrottlingException")
                    })
            })
            .count();
        let answered = answers.iter().filter(|answer| answer.is_ok()).count();
        assert_eq!(
            answered + throttled,
            40,
            "every call is answered or throttled"
        );
        // A full bucket of 20, and 20 more for every second the burst lasted.
        let allowed = 20.0 + 20.0 * seconds;
        assert!(
            throttled > 0 && answered as f64 <= allowed + 1.0,
            "{answered} passed and {throttled} were throttled in {seconds:.2} s"
        );
        // A second later the quota is there again.
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        sso_admin
            .list_permission_sets()
            .instance_arn(&instance_arn)
            .send()
            .await
            .expect("a call a second later passes");
    });
}

#[test]
fn eventually_consistent_reads_miss_writes_younger_than_the_window_when_asked() {
    // Issue 15: moto's reads were always consistent, so a conclusion that read its own fresh
    // writes without ConsistentRead passed here and missed them on DynamoDB.
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, AttributeValue, GlobalSecondaryIndex, KeySchemaElement, KeyType,
        KeysAndAttributes, Projection, ProjectionType, ScalarAttributeType,
    };
    use std::collections::HashMap;
    use std::time::Duration;

    on_local_cloud(None, |cloud, _| async move {
        let harness = aws_sdk_dynamodb::Client::new(cloud.sdk_config());
        let key = |name: &str, kind| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .expect("a key")
        };
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("an attribute")
        };
        harness
            .create_table()
            .table_name("lagging")
            .key_schema(key("PK", KeyType::Hash))
            .key_schema(key("SK", KeyType::Range))
            .attribute_definitions(attribute("PK"))
            .attribute_definitions(attribute("SK"))
            .attribute_definitions(attribute("scope"))
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name("byScope")
                    .key_schema(key("scope", KeyType::Hash))
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::All)
                            .build(),
                    )
                    .build()
                    .expect("an index"),
            )
            .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
            .send()
            .await
            .expect("the table is created");
        // A reader of its own, as a function is (the harness's reads stay consistent).
        let config = aws_sdk_dynamodb::config::Builder::from(cloud.sdk_config())
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "AKIAEMULATORTEST0002",
                "emulator-test",
                None,
                None,
                "test",
            ))
            .build();
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(config);
        let s = |v: &str| AttributeValue::S(v.to_owned());
        let item_key = HashMap::from([("PK".to_owned(), s("E#1")), ("SK".to_owned(), s("E"))]);
        let put = |state: &'static str| {
            harness
                .put_item()
                .table_name("lagging")
                .item("PK", s("E#1"))
                .item("SK", s("E"))
                .item("scope", s("prod"))
                .item("state", s(state))
                .send()
        };
        // What each kind of read answers of the item's `state`: GetItem, BatchGetItem, Query
        // and the index's query, each eventually consistent, then GetItem consistent.
        let reads = || async {
            let state = |item: Option<&HashMap<String, AttributeValue>>| {
                item.and_then(|i| i.get("state"))
                    .and_then(|v| v.as_s().ok())
                    .cloned()
            };
            let get = dynamodb
                .get_item()
                .table_name("lagging")
                .set_key(Some(item_key.clone()))
                .send()
                .await
                .expect("GetItem");
            let batch = dynamodb
                .batch_get_item()
                .request_items(
                    "lagging",
                    KeysAndAttributes::builder()
                        .keys(item_key.clone())
                        .build()
                        .expect("keys"),
                )
                .send()
                .await
                .expect("BatchGetItem");
            let query = dynamodb
                .query()
                .table_name("lagging")
                .key_condition_expression("PK = :pk")
                .expression_attribute_values(":pk", s("E#1"))
                .send()
                .await
                .expect("Query");
            let index = dynamodb
                .query()
                .table_name("lagging")
                .index_name("byScope")
                .key_condition_expression("#scope = :scope")
                .expression_attribute_names("#scope", "scope")
                .expression_attribute_values(":scope", s("prod"))
                .send()
                .await
                .expect("the index's Query");
            let consistent = dynamodb
                .get_item()
                .table_name("lagging")
                .set_key(Some(item_key.clone()))
                .consistent_read(true)
                .send()
                .await
                .expect("a consistent GetItem");
            [
                state(get.item()),
                state(
                    batch
                        .responses()
                        .and_then(|r| r.get("lagging"))
                        .and_then(|items| items.first()),
                ),
                state(query.items().first()),
                state(index.items().first()),
                state(consistent.item()),
            ]
        };

        reads_may_be_stale(cloud, Duration::from_secs(2)).await;
        put("first").await.expect("the item is written");
        let fresh = || Some("first".to_owned());
        assert_eq!(
            reads().await,
            [None, None, None, None, fresh()],
            "a created item is missing from eventually consistent reads for the window"
        );
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert_eq!(reads().await, [fresh(), fresh(), fresh(), fresh(), fresh()]);
        put("second").await.expect("the item is written again");
        let second = || Some("second".to_owned());
        assert_eq!(
            reads().await,
            [fresh(), fresh(), fresh(), fresh(), second()],
            "a changed item is answered as it was"
        );
        tokio::time::sleep(Duration::from_millis(2100)).await;
        harness
            .delete_item()
            .table_name("lagging")
            .set_key(Some(item_key.clone()))
            .send()
            .await
            .expect("the item is deleted");
        assert_eq!(
            reads().await,
            [second(), second(), second(), second(), None],
            "a deleted item is still there"
        );

        reads_may_be_stale(cloud, Duration::ZERO).await;
        put("third").await.expect("the item is written");
        let third = || Some("third".to_owned());
        assert_eq!(reads().await, [third(), third(), third(), third(), third()]);
    });
}
