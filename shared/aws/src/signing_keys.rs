//! The approval links' signing key, kept in Secrets Manager. The version staged AWSCURRENT
//! signs; AWSPREVIOUS still verifies, so a rotation does not break the links in flight. A
//! link lives at most as long as its approval's timeout (30 days at most), so the key must
//! rotate less often than that.
//!
//! A warm function keeps the keys it read for [`KEYS_KEPT_FOR`]: anyone can post a link, and
//! each read costs two Secrets Manager calls. A rotation (or a revocation) reaches every
//! function within that time.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_secretsmanager::error::SdkError;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use maestro_domain::approvals::link::{LinkKeys, SigningKey};
use maestro_domain::approvals::steps::SigningKeys;
use maestro_domain::port::PortError;

use crate::SdkConfig;
use crate::sdk_error::port_error;

const SERVICE: &str = "secretsmanager";

/// How long a function keeps the keys it read.
pub const KEYS_KEPT_FOR: Duration = Duration::from_secs(60);

pub struct SecretLinkKeys {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
    kept: Mutex<Option<(Instant, LinkKeys)>>,
}

impl SecretLinkKeys {
    pub fn new(config: &SdkConfig, secret_id: String) -> Self {
        SecretLinkKeys {
            client: aws_sdk_secretsmanager::Client::new(config),
            secret_id,
            kept: Mutex::new(None),
        }
    }
}

#[async_trait]
impl SigningKeys for SecretLinkKeys {
    /// The keys, read again once those kept are [`KEYS_KEPT_FOR`] old.
    async fn load(&self) -> Result<LinkKeys, PortError> {
        if let Some((read_at, keys)) = self.kept().as_ref()
            && read_at.elapsed() < KEYS_KEPT_FOR
        {
            return Ok(keys.clone());
        }
        let keys = self.read().await?;
        *self.kept() = Some((Instant::now(), keys.clone()));
        Ok(keys)
    }
}

impl SecretLinkKeys {
    /// The keys kept, if any. A panic while they were being replaced leaves the old value or
    /// the new, both whole, so a poisoned lock is taken as it is.
    fn kept(&self) -> std::sync::MutexGuard<'_, Option<(Instant, LinkKeys)>> {
        self.kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn read(&self) -> Result<LinkKeys, PortError> {
        let current = self
            .stage("AWSCURRENT")
            .await?
            .ok_or_else(|| PortError::NotFound {
                service: SERVICE,
                what: "the signing key's AWSCURRENT version".into(),
            })?;
        let previous = self.stage("AWSPREVIOUS").await?;
        Ok(LinkKeys { current, previous })
    }

    async fn stage(&self, stage: &str) -> Result<Option<SigningKey>, PortError> {
        let value = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .version_stage(stage)
            .send()
            .await;
        let value = match value {
            Ok(value) => value,
            Err(SdkError::ServiceError(context))
                if matches!(
                    context.err(),
                    GetSecretValueError::ResourceNotFoundException(_)
                ) && stage != "AWSCURRENT" =>
            {
                return Ok(None);
            }
            Err(error) => return Err(port_error(SERVICE, "the signing key", error)),
        };
        let bytes = value
            .secret_string
            .map(String::into_bytes)
            .or_else(|| value.secret_binary.map(|b| b.into_inner()))
            .unwrap_or_default();
        SigningKey::new(bytes)
            .map(Some)
            .map_err(|e| PortError::Rejected {
                service: SERVICE,
                detail: format!("the signing key's {stage} version: {e}"),
            })
    }
}
