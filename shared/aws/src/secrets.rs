//! Secrets Manager as the rotation protocol uses it.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_secretsmanager::error::SdkError;
use aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretError;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use maestro_domain::approvals::submit::SecretIdentity;
use maestro_domain::port::PortError;
use maestro_domain::rotation::credentials::PasswordPolicy;
use maestro_domain::rotation::protocol::{
    CURRENT, PENDING, SecretDescription, SecretStore, Version,
};
use maestro_domain::rotation::schedule::SecretInfo;

use crate::SdkConfig;
use crate::sdk_error::port_error;

const SERVICE: &str = "secretsmanager";

pub struct SecretsManager {
    client: aws_sdk_secretsmanager::Client,
}

impl SecretsManager {
    pub fn new(config: &SdkConfig) -> Self {
        SecretsManager {
            client: aws_sdk_secretsmanager::Client::new(config),
        }
    }
}

#[async_trait]
impl SecretStore for SecretsManager {
    async fn describe(&self, secret_id: &str) -> Result<SecretDescription, PortError> {
        let described = self
            .client
            .describe_secret()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|e| port_error(SERVICE, secret_id, e))?;
        Ok(SecretDescription {
            arn: described.arn.unwrap_or_default(),
            name: described.name.unwrap_or_default(),
            rotation_enabled: described.rotation_enabled.unwrap_or(false),
            versions: described
                .version_ids_to_stages
                .unwrap_or_default()
                .into_iter()
                .collect(),
            tags: described
                .tags
                .unwrap_or_default()
                .into_iter()
                .filter_map(|t| Some((t.key?, t.value.unwrap_or_default())))
                .collect::<BTreeMap<_, _>>(),
        })
    }

    async fn value(
        &self,
        secret_id: &str,
        version: Version<'_>,
    ) -> Result<Option<String>, PortError> {
        let request = self.client.get_secret_value().secret_id(secret_id);
        let request = match version {
            Version::Stage(stage) => request.version_stage(stage),
            Version::Id(id) => request.version_id(id),
        };
        match request.send().await {
            Ok(value) => Ok(value.secret_string),
            // A version that exists but holds no value yet reads as not found, too.
            Err(SdkError::ServiceError(context))
                if matches!(
                    context.err(),
                    GetSecretValueError::ResourceNotFoundException(_)
                ) =>
            {
                Ok(None)
            }
            Err(error) => Err(port_error(SERVICE, secret_id, error)),
        }
    }

    async fn random_password(&self, policy: &PasswordPolicy) -> Result<String, PortError> {
        let generated = self
            .client
            .get_random_password()
            .password_length(i64::from(policy.length))
            .exclude_characters(&policy.exclude_characters)
            .exclude_punctuation(policy.exclude_punctuation)
            .send()
            .await
            .map_err(|e| port_error(SERVICE, "a random password", e))?;
        generated
            .random_password
            .ok_or_else(|| PortError::Rejected {
                service: SERVICE,
                detail: "GetRandomPassword answered no password".into(),
            })
    }

    async fn put_pending(
        &self,
        secret_id: &str,
        token: &str,
        value: &str,
    ) -> Result<(), PortError> {
        self.client
            .put_secret_value()
            .secret_id(secret_id)
            .client_request_token(token)
            .secret_string(value)
            .version_stages(PENDING)
            .send()
            .await
            .map_err(|e| port_error(SERVICE, secret_id, e))?;
        Ok(())
    }

    async fn make_current(
        &self,
        secret_id: &str,
        token: &str,
        from: &str,
    ) -> Result<(), PortError> {
        self.client
            .update_secret_version_stage()
            .secret_id(secret_id)
            .version_stage(CURRENT)
            .move_to_version_id(token)
            .remove_from_version_id(from)
            .send()
            .await
            .map_err(|e| port_error(SERVICE, secret_id, e))?;
        Ok(())
    }
}

fn time(value: Option<aws_smithy_types::DateTime>) -> Option<chrono::DateTime<chrono::Utc>> {
    let value = value?;
    chrono::DateTime::from_timestamp(value.secs(), value.subsec_nanos())
}

impl SecretsManager {
    /// Every secret of the account and region, with what rotation needs to know.
    pub async fn list(&self) -> Result<Vec<SecretInfo>, PortError> {
        let mut secrets = Vec::new();
        let mut pages = self.client.list_secrets().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| port_error(SERVICE, "the secrets", e))?;
            for entry in page.secret_list.unwrap_or_default() {
                secrets.push(SecretInfo {
                    name: entry.name.clone().unwrap_or_default(),
                    arn: entry.arn.clone().unwrap_or_default(),
                    tags: entry
                        .tags
                        .clone()
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|t| Some((t.key?, t.value.unwrap_or_default())))
                        .collect(),
                    rotation_enabled: entry.rotation_enabled.unwrap_or(false),
                    rotation_days: entry
                        .rotation_rules
                        .as_ref()
                        .and_then(|r| r.automatically_after_days)
                        .and_then(|d| u32::try_from(d).ok()),
                    created: time(entry.created_date),
                    last_changed: time(entry.last_changed_date),
                    last_rotated: time(entry.last_rotated_date),
                    next_rotation: time(entry.next_rotation_date),
                });
            }
        }
        Ok(secrets)
    }

    /// Starts a rotation now, with the rotation function the secret already has.
    pub async fn rotate_now(&self, secret_id: &str) -> Result<String, PortError> {
        let rotated = self
            .client
            .rotate_secret()
            .secret_id(secret_id)
            .rotate_immediately(true)
            .send()
            .await
            .map_err(|e| port_error(SERVICE, secret_id, e))?;
        Ok(rotated.version_id.unwrap_or_default())
    }
}

impl SecretsManager {
    /// A secret's ARN and name, or `None` when no secret has that name or ARN.
    pub async fn identity(&self, secret_id: &str) -> Result<Option<SecretIdentity>, PortError> {
        let described = self
            .client
            .describe_secret()
            .secret_id(secret_id)
            .send()
            .await;
        match described {
            Ok(described) => Ok(described
                .arn
                .zip(described.name)
                .map(|(arn, name)| SecretIdentity { arn, name })),
            Err(SdkError::ServiceError(context))
                if matches!(
                    context.err(),
                    DescribeSecretError::ResourceNotFoundException(_)
                ) =>
            {
                Ok(None)
            }
            Err(error) => Err(port_error(SERVICE, secret_id, error)),
        }
    }
}
