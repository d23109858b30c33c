//! IAM Identity Center (sso-admin) adapters.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_ssoadmin::types::{AccountAssignmentOperationStatus, StatusValues};
use maestro_domain::port::PortError;
use maestro_domain::quota::CallRate;
use maestro_domain::sso::assignment_monitor::{
    AssignmentOperation, AssignmentRequest, ProvisioningStatus, ProvisioningStatusReader,
};

use crate::SdkConfig;
use crate::sdk_error::port_error;

const SERVICE: &str = "sso-admin";

pub struct SsoAdminProvisioning {
    client: aws_sdk_ssoadmin::Client,
    call_rate: Option<Arc<dyn CallRate>>,
}

impl SsoAdminProvisioning {
    pub fn new(config: &SdkConfig) -> Self {
        SsoAdminProvisioning {
            client: aws_sdk_ssoadmin::Client::new(config),
            call_rate: None,
        }
    }

    /// Takes a slot of the region's shared sso-admin budget before each call.
    pub fn with_call_rate(mut self, call_rate: Arc<dyn CallRate>) -> Self {
        self.call_rate = Some(call_rate);
        self
    }
}

#[async_trait]
impl ProvisioningStatusReader for SsoAdminProvisioning {
    async fn provisioning_status(
        &self,
        request: &AssignmentRequest,
    ) -> Result<ProvisioningStatus, PortError> {
        let what = format!("assignment request {}", request.request_id);
        if let Some(rate) = &self.call_rate {
            rate.take().await?;
        }
        let status = match request.operation {
            AssignmentOperation::Create => {
                self.client
                    .describe_account_assignment_creation_status()
                    .instance_arn(request.instance_arn.as_str())
                    .account_assignment_creation_request_id(request.request_id.as_str())
                    .send()
                    .await
                    .map_err(|e| port_error(SERVICE, &what, e))?
                    .account_assignment_creation_status
            }
            AssignmentOperation::Delete => {
                self.client
                    .describe_account_assignment_deletion_status()
                    .instance_arn(request.instance_arn.as_str())
                    .account_assignment_deletion_request_id(request.request_id.as_str())
                    .send()
                    .await
                    .map_err(|e| port_error(SERVICE, &what, e))?
                    .account_assignment_deletion_status
            }
        };
        let status = status.ok_or_else(|| PortError::Rejected {
            service: SERVICE,
            detail: format!("no status returned for {what}"),
        })?;
        provisioning_status(&status)
    }
}

fn provisioning_status(
    status: &AccountAssignmentOperationStatus,
) -> Result<ProvisioningStatus, PortError> {
    match status.status() {
        Some(StatusValues::InProgress) => Ok(ProvisioningStatus::InProgress),
        Some(StatusValues::Succeeded) => Ok(ProvisioningStatus::Succeeded),
        Some(StatusValues::Failed) => Ok(ProvisioningStatus::Failed {
            reason: status
                .failure_reason()
                .unwrap_or("IAM Identity Center gave no reason")
                .to_owned(),
        }),
        other => Err(PortError::Rejected {
            service: SERVICE,
            detail: format!("unknown provisioning status {other:?}"),
        }),
    }
}
