//! What the launcher adds to moto, seen through the Rust SDK as Maestro's adapters see it.

use aws_sdk_ssoadmin::types::Tag;
use maestro_tests::on_local_cloud;

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
