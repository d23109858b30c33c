//! Asking the emulated IAM Identity Center for account assignments, as the SSO sync does, and
//! turning its answer into the request the assignment monitor watches.

use aws_sdk_ssoadmin::types::{PrincipalType, TargetType};
use maestro_aws::SdkConfig;
use serde_json::{Value, json};

use crate::error::{LocalCloudError, sdk_error};

/// One account assignment: who gets which permission set in which account.
#[derive(Debug, Clone)]
pub struct AssignmentTarget {
    pub instance_arn: String,
    pub account_id: String,
    pub permission_set_arn: String,
    pub principal_id: String,
    pub principal_type: PrincipalType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Delete,
}

/// The create and delete calls take the same six fields under the same names.
macro_rules! with_target {
    ($call:expr, $target:expr) => {
        $call
            .instance_arn(&$target.instance_arn)
            .target_id(&$target.account_id)
            .target_type(TargetType::AwsAccount)
            .permission_set_arn(&$target.permission_set_arn)
            .principal_type($target.principal_type.clone())
            .principal_id(&$target.principal_id)
    };
}

/// Asks IAM Identity Center to create or delete the assignment and returns the request to
/// monitor, in the shape the monitor queue takes.
pub async fn request_assignment(
    config: &SdkConfig,
    target: &AssignmentTarget,
    operation: Operation,
) -> Result<Value, LocalCloudError> {
    let sso_admin = aws_sdk_ssoadmin::Client::new(config);
    let failed = |detail: String| LocalCloudError::Emulator(format!("sso-admin: {detail}"));
    let status = match operation {
        Operation::Create => {
            with_target!(sso_admin.create_account_assignment(), target)
                .send()
                .await
                .map_err(|e| failed(sdk_error(e)))?
                .account_assignment_creation_status
        }
        Operation::Delete => {
            with_target!(sso_admin.delete_account_assignment(), target)
                .send()
                .await
                .map_err(|e| failed(sdk_error(e)))?
                .account_assignment_deletion_status
        }
    };
    let request_id = status
        .and_then(|s| s.request_id)
        .ok_or_else(|| failed("no request id returned".into()))?;
    Ok(json!({
        "requestId": request_id,
        "operation": match operation {
            Operation::Create => "CREATE",
            Operation::Delete => "DELETE",
        },
        "instanceArn": target.instance_arn,
        "accountId": target.account_id,
        "permissionSetArn": target.permission_set_arn,
        "principalId": target.principal_id,
        "principalType": target.principal_type.as_str(),
    }))
}
