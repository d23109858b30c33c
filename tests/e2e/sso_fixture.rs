//! An IAM Identity Center with one permission set, one group and one member account, and
//! assignment requests made on it the way the SSO sync makes them.

use maestro_domain::sso::provisioning::AssignmentRequest;
use maestro_localcloud::LocalCloud;
use serde_json::json;

pub struct SsoFixture {
    pub instance_arn: String,
    pub permission_set_arn: String,
    pub group_id: String,
    pub member_account: String,
    sso_admin: aws_sdk_ssoadmin::Client,
}

/// An account id that is not a member of the organisation.
pub const STRANGER_ACCOUNT: &str = "999999999999";

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
        let instance = sso_admin
            .list_instances()
            .send()
            .await
            .expect("instances")
            .instances
            .unwrap_or_default()
            .remove(0);
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
            sso_admin,
        }
    }

    /// Asks IAM Identity Center to assign the group to `account` and returns the request to
    /// monitor.
    pub async fn create_assignment(&self, account: &str) -> AssignmentRequest {
        let status = self
            .sso_admin
            .create_account_assignment()
            .instance_arn(&self.instance_arn)
            .target_id(account)
            .target_type(aws_sdk_ssoadmin::types::TargetType::AwsAccount)
            .permission_set_arn(&self.permission_set_arn)
            .principal_type(aws_sdk_ssoadmin::types::PrincipalType::Group)
            .principal_id(&self.group_id)
            .send()
            .await
            .expect("the assignment request is accepted")
            .account_assignment_creation_status
            .expect("a creation status");
        self.request("CREATE", status.request_id.expect("a request id"), account)
    }

    pub async fn delete_assignment(&self, account: &str) -> AssignmentRequest {
        let status = self
            .sso_admin
            .delete_account_assignment()
            .instance_arn(&self.instance_arn)
            .target_id(account)
            .target_type(aws_sdk_ssoadmin::types::TargetType::AwsAccount)
            .permission_set_arn(&self.permission_set_arn)
            .principal_type(aws_sdk_ssoadmin::types::PrincipalType::Group)
            .principal_id(&self.group_id)
            .send()
            .await
            .expect("the deletion request is accepted")
            .account_assignment_deletion_status
            .expect("a deletion status");
        self.request("DELETE", status.request_id.expect("a request id"), account)
    }

    fn request(&self, operation: &str, request_id: String, account: &str) -> AssignmentRequest {
        serde_json::from_value(json!({
            "requestId": request_id,
            "operation": operation,
            "instanceArn": self.instance_arn,
            "accountId": account,
            "permissionSetArn": self.permission_set_arn,
            "principalId": self.group_id,
            "principalType": "GROUP",
        }))
        .expect("the emulator's identifiers have IAM Identity Center's shapes")
    }
}
