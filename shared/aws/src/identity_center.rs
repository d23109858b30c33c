//! IAM Identity Center (sso-admin) and its identity store, read for planning and written by
//! the assignment worker.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_ssoadmin::types::{PrincipalType as SdkPrincipalType, TargetType};
use maestro_domain::port::PortError;
use maestro_domain::quota::CallRate;
use maestro_domain::sso::apply::AssignmentWriter;
use maestro_domain::sso::assignment_monitor::{
    AccountId, AssignmentOperation, AssignmentRequest, InstanceArn, PermissionSetArn, PrincipalId,
    PrincipalType, RequestId,
};
use maestro_domain::sso::plan::{Assignment, PermissionSetInfo, Principal};
use maestro_domain::sso::snapshot::IdentityCenterReader;

use crate::SdkConfig;
use crate::sdk_error::port_error;

const SERVICE: &str = "sso-admin";

pub struct IdentityCenter {
    sso_admin: aws_sdk_ssoadmin::Client,
    identity_store: aws_sdk_identitystore::Client,
    instance_arn: InstanceArn,
    identity_store_id: String,
    /// Every sso-admin call takes a slot of the region's shared budget first.
    call_rate: Option<Arc<dyn CallRate>>,
}

fn rejected(service: &'static str, detail: String) -> PortError {
    PortError::Rejected { service, detail }
}

/// Parses an identifier from the service, which must have the shape the domain expects.
fn parsed<T: TryFrom<String, Error = maestro_domain::sso::assignment_monitor::InvalidField>>(
    service: &'static str,
    value: Option<String>,
) -> Result<T, PortError> {
    let value =
        value.ok_or_else(|| rejected(service, "a listing entry has no identifier".into()))?;
    T::try_from(value).map_err(|e| rejected(service, e.to_string()))
}

impl IdentityCenter {
    pub fn new(config: &SdkConfig, instance_arn: InstanceArn, identity_store_id: String) -> Self {
        IdentityCenter {
            sso_admin: aws_sdk_ssoadmin::Client::new(config),
            identity_store: aws_sdk_identitystore::Client::new(config),
            instance_arn,
            identity_store_id,
            call_rate: None,
        }
    }

    pub fn with_call_rate(mut self, call_rate: Arc<dyn CallRate>) -> Self {
        self.call_rate = Some(call_rate);
        self
    }

    async fn slot(&self) -> Result<(), PortError> {
        match &self.call_rate {
            Some(rate) => rate.take().await,
            None => Ok(()),
        }
    }

    /// Every page of an sso-admin listing, one rate slot per request sent: a listing's end
    /// is known from the last page's token, and costs no slot of its own.
    async fn every_page<T, F, Fut>(&self, mut page: F) -> Result<Vec<T>, PortError>
    where
        F: FnMut(Option<String>) -> Fut,
        Fut: std::future::Future<Output = Result<(Vec<T>, Option<String>), PortError>>,
    {
        let mut items = Vec::new();
        let mut token = None;
        loop {
            self.slot().await?;
            let sent = token.take();
            let (mut found, next) = page(sent.clone()).await?;
            items.append(&mut found);
            match next {
                // A service that answers the token it was sent would page forever.
                Some(next) if Some(&next) == sent.as_ref() => {
                    return Err(rejected(
                        SERVICE,
                        "a listing answered the page token it was sent".to_owned(),
                    ));
                }
                Some(next) if !next.is_empty() => token = Some(next),
                _ => return Ok(items),
            }
        }
    }

    async fn tags(&self, arn: &str) -> Result<BTreeMap<String, String>, PortError> {
        let tags = self
            .every_page(|token| async move {
                let page = self
                    .sso_admin
                    .list_tags_for_resource()
                    .instance_arn(self.instance_arn.as_str())
                    .resource_arn(arn)
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(|e| port_error(SERVICE, arn, e))?;
                Ok((page.tags.unwrap_or_default(), page.next_token))
            })
            .await?;
        Ok(tags.into_iter().map(|tag| (tag.key, tag.value)).collect())
    }
}

#[async_trait]
impl AssignmentWriter for IdentityCenter {
    async fn change(
        &self,
        operation: AssignmentOperation,
        assignment: &Assignment,
    ) -> Result<AssignmentRequest, PortError> {
        let principal_type = match assignment.principal_type {
            PrincipalType::Group => SdkPrincipalType::Group,
            PrincipalType::User => SdkPrincipalType::User,
        };
        let what = format!(
            "{operation:?} of {} in {}",
            assignment.permission_set_arn, assignment.account_id
        );
        // The writes count towards the 20 calls a second like every other sso-admin call.
        self.slot().await?;
        let status = match operation {
            AssignmentOperation::Create => {
                self.sso_admin
                    .create_account_assignment()
                    .instance_arn(self.instance_arn.as_str())
                    .target_id(assignment.account_id.as_str())
                    .target_type(TargetType::AwsAccount)
                    .permission_set_arn(assignment.permission_set_arn.as_str())
                    .principal_type(principal_type)
                    .principal_id(assignment.principal_id.as_str())
                    .send()
                    .await
                    .map_err(|e| port_error(SERVICE, &what, e))?
                    .account_assignment_creation_status
            }
            AssignmentOperation::Delete => {
                self.sso_admin
                    .delete_account_assignment()
                    .instance_arn(self.instance_arn.as_str())
                    .target_id(assignment.account_id.as_str())
                    .target_type(TargetType::AwsAccount)
                    .permission_set_arn(assignment.permission_set_arn.as_str())
                    .principal_type(principal_type)
                    .principal_id(assignment.principal_id.as_str())
                    .send()
                    .await
                    .map_err(|e| port_error(SERVICE, &what, e))?
                    .account_assignment_deletion_status
            }
        };
        let request_id: RequestId = parsed(SERVICE, status.and_then(|s| s.request_id))?;
        Ok(AssignmentRequest {
            request_id,
            operation,
            instance_arn: self.instance_arn.clone(),
            account_id: assignment.account_id.clone(),
            permission_set_arn: assignment.permission_set_arn.clone(),
            principal_id: assignment.principal_id.clone(),
            principal_type: assignment.principal_type,
            run_id: None,
        })
    }
}

#[async_trait]
impl IdentityCenterReader for IdentityCenter {
    fn instance_arn(&self) -> &InstanceArn {
        &self.instance_arn
    }

    async fn permission_set_arns(&self) -> Result<Vec<PermissionSetArn>, PortError> {
        let arns = self
            .every_page(|token| async move {
                let page = self
                    .sso_admin
                    .list_permission_sets()
                    .instance_arn(self.instance_arn.as_str())
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(|e| port_error(SERVICE, "the permission sets", e))?;
                Ok((page.permission_sets.unwrap_or_default(), page.next_token))
            })
            .await?;
        arns.into_iter()
            .map(|arn| parsed(SERVICE, Some(arn)))
            .collect()
    }

    async fn permission_set(
        &self,
        arn: &PermissionSetArn,
    ) -> Result<Option<PermissionSetInfo>, PortError> {
        self.slot().await?;
        let described = self
            .sso_admin
            .describe_permission_set()
            .instance_arn(self.instance_arn.as_str())
            .permission_set_arn(arn.as_str())
            .send()
            .await;
        let name = match described {
            Ok(output) => output
                .permission_set
                .and_then(|p| p.name)
                .unwrap_or_default(),
            Err(e) => match port_error(SERVICE, arn.as_str(), e) {
                PortError::NotFound { .. } => return Ok(None),
                other => return Err(other),
            },
        };
        let tags = self.tags(arn.as_str()).await?;
        Ok(Some(PermissionSetInfo {
            arn: arn.clone(),
            name,
            tags,
        }))
    }

    async fn groups(&self) -> Result<Vec<Principal>, PortError> {
        let mut groups = Vec::new();
        let mut pages = self
            .identity_store
            .list_groups()
            .identity_store_id(&self.identity_store_id)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| port_error("identitystore", "the groups", e))?;
            for group in page.groups {
                groups.push(Principal {
                    id: parsed("identitystore", Some(group.group_id))?,
                    name: group.display_name.unwrap_or_default(),
                });
            }
        }
        Ok(groups)
    }

    async fn users(&self) -> Result<Vec<Principal>, PortError> {
        let mut users = Vec::new();
        let mut pages = self
            .identity_store
            .list_users()
            .identity_store_id(&self.identity_store_id)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| port_error("identitystore", "the users", e))?;
            for user in page.users {
                users.push(Principal {
                    id: parsed("identitystore", Some(user.user_id))?,
                    name: user.user_name.unwrap_or_default(),
                });
            }
        }
        Ok(users)
    }

    /// IAM Identity Center provisions a permission set to every account it assigns it in, so
    /// the pairs to list are the set's provisioned accounts, not every account times every
    /// set.
    async fn accounts_provisioned(
        &self,
        set: &PermissionSetArn,
    ) -> Result<Vec<AccountId>, PortError> {
        let ids = self
            .every_page(|token| async move {
                let page = self
                    .sso_admin
                    .list_accounts_for_provisioned_permission_set()
                    .instance_arn(self.instance_arn.as_str())
                    .permission_set_arn(set.as_str())
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(|e| {
                        port_error(SERVICE, &format!("the accounts {set} is provisioned to"), e)
                    })?;
                Ok((page.account_ids.unwrap_or_default(), page.next_token))
            })
            .await?;
        ids.into_iter()
            .map(|id| AccountId::try_from(id).map_err(|e| rejected(SERVICE, e.to_string())))
            .collect()
    }

    async fn sets_provisioned_to(
        &self,
        account: &AccountId,
    ) -> Result<Vec<PermissionSetArn>, PortError> {
        let arns = self
            .every_page(|token| async move {
                let page = self
                    .sso_admin
                    .list_permission_sets_provisioned_to_account()
                    .instance_arn(self.instance_arn.as_str())
                    .account_id(account.as_str())
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(|e| {
                        port_error(
                            SERVICE,
                            &format!("the permission sets provisioned to {account}"),
                            e,
                        )
                    })?;
                Ok((page.permission_sets.unwrap_or_default(), page.next_token))
            })
            .await?;
        arns.into_iter()
            .map(|arn| parsed(SERVICE, Some(arn)))
            .collect()
    }

    async fn assignments_of(
        &self,
        account: &AccountId,
        set: &PermissionSetArn,
    ) -> Result<Vec<Assignment>, PortError> {
        self.listed_assignments(account, set).await
    }
}

impl IdentityCenter {
    async fn listed_assignments(
        &self,
        account: &AccountId,
        set: &PermissionSetArn,
    ) -> Result<Vec<Assignment>, PortError> {
        let found = self
            .every_page(|token| async move {
                let page = self
                    .sso_admin
                    .list_account_assignments()
                    .instance_arn(self.instance_arn.as_str())
                    .account_id(account.as_str())
                    .permission_set_arn(set.as_str())
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(|e| {
                        port_error(
                            SERVICE,
                            &format!("the assignments of {set} in {account}"),
                            e,
                        )
                    })?;
                Ok((
                    page.account_assignments.unwrap_or_default(),
                    page.next_token,
                ))
            })
            .await?;
        let mut assignments = Vec::with_capacity(found.len());
        for found in found {
            let principal_type = match found.principal_type {
                Some(SdkPrincipalType::Group) => PrincipalType::Group,
                Some(SdkPrincipalType::User) => PrincipalType::User,
                other => {
                    return Err(rejected(
                        SERVICE,
                        format!("unknown principal type {other:?}"),
                    ));
                }
            };
            assignments.push(Assignment {
                account_id: account.clone(),
                permission_set_arn: set.clone(),
                principal_type,
                principal_id: parsed::<PrincipalId>(SERVICE, found.principal_id)?,
            });
        }
        Ok(assignments)
    }
}
