//! An IAM Identity Center with one permission set, one group and one member account, and
//! assignment requests made on it the way the SSO sync makes them.

use maestro_domain::sso::assignment_monitor::AssignmentRequest;
use maestro_localcloud::LocalCloud;
use maestro_localcloud::identity_center::{AssignmentTarget, Operation, request_assignment};

pub struct SsoFixture {
    pub instance_arn: String,
    pub permission_set_arn: String,
    pub group_id: String,
    pub member_account: String,
    config: maestro_aws::SdkConfig,
}

/// An account id that is not a member of the organisation.
pub const STRANGER_ACCOUNT: &str = "999999999999";

/// The emulator's IAM Identity Center instance (moto makes one per account and region).
pub async fn identity_center_instance(
    sso_admin: &aws_sdk_ssoadmin::Client,
) -> aws_sdk_ssoadmin::types::InstanceMetadata {
    sso_admin
        .list_instances()
        .send()
        .await
        .expect("instances")
        .instances
        .unwrap_or_default()
        .into_iter()
        .next()
        .expect("an IAM Identity Center instance")
}

impl SsoFixture {
    pub async fn create(cloud: &LocalCloud) -> SsoFixture {
        let config = cloud.sdk_config();
        let organizations = aws_sdk_organizations::Client::new(config);
        let identity_store = aws_sdk_identitystore::Client::new(config);
        let sso_admin = aws_sdk_ssoadmin::Client::new(config);

        organizations
            .create_organization()
            .send()
            .await
            .expect("an organisation");
        let member_account = organizations
            .create_account()
            .account_name("payments-development")
            .email("payments-development@example.com")
            .send()
            .await
            .expect("a member account")
            .create_account_status
            .and_then(|s| s.account_id)
            .expect("an account id");
        let instance = identity_center_instance(&sso_admin).await;
        let instance_arn = instance.instance_arn.expect("an instance ARN");
        let permission_set_arn = sso_admin
            .create_permission_set()
            .instance_arn(&instance_arn)
            .name("Developer")
            .session_duration("PT8H")
            .send()
            .await
            .expect("a permission set")
            .permission_set
            .and_then(|p| p.permission_set_arn)
            .expect("a permission set ARN");
        let group_id = identity_store
            .create_group()
            .identity_store_id(instance.identity_store_id.expect("an identity store"))
            .display_name("developer_workload_payments")
            .send()
            .await
            .expect("a group")
            .group_id;
        SsoFixture {
            instance_arn,
            permission_set_arn,
            group_id,
            member_account,
            config: config.clone(),
        }
    }

    /// Asks IAM Identity Center to assign the group to `account` and returns the request to
    /// monitor.
    pub async fn create_assignment(&self, account: &str) -> AssignmentRequest {
        self.request(account, Operation::Create).await
    }

    pub async fn delete_assignment(&self, account: &str) -> AssignmentRequest {
        self.request(account, Operation::Delete).await
    }

    async fn request(&self, account: &str, operation: Operation) -> AssignmentRequest {
        let target = AssignmentTarget {
            instance_arn: self.instance_arn.clone(),
            account_id: account.to_owned(),
            permission_set_arn: self.permission_set_arn.clone(),
            principal_id: self.group_id.clone(),
            principal_type: aws_sdk_ssoadmin::types::PrincipalType::Group,
        };
        let request = request_assignment(&self.config, &target, operation)
            .await
            .unwrap_or_else(|e| panic!("IAM Identity Center accepts the request: {e}"));
        serde_json::from_value(request)
            .expect("the emulator's identifiers have IAM Identity Center's shapes")
    }
}
