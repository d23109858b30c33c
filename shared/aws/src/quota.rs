//! The quota governor in DynamoDB (`MaestroQuotaTable`, key `pk`).
//!
//! - Calls per second: one counter item per fifth of a second
//!   (`sso-admin#window#<epoch milliseconds / 200>`), raised with a conditional update that
//!   fails at a fifth of the limit; a caller that finds the window full waits for the next.
//!   Windows this short keep the calls even: per-second windows let a second's calls granted
//!   at its end and the next second's at its start reach IAM Identity Center together, twice
//!   the rate for a moment, which its throttling refuses. Items expire a minute later.
//! - Outstanding operations: one item (`sso-admin#outstanding`) holding a map of key →
//!   expiry and a version; reservations and releases are conditional on the version, so
//!   concurrent workers never both take the last slot.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use maestro_domain::port::PortError;
use maestro_domain::quota::{
    CallRate, OutstandingOperations, SSO_ADMIN_CALLS_KEPT_FOR_CHANGES, SSO_ADMIN_CALLS_PER_SECOND,
    SSO_ADMIN_OUTSTANDING_OPERATIONS,
};

use crate::SdkConfig;
use crate::sdk_error::port_error;
use crate::versioned::VersionedMap;

const SERVICE: &str = "dynamodb";
const OUTSTANDING: &str = "sso-admin#outstanding";
/// How long a caller waits for a call slot before handing over to its retry.
const PATIENCE: Duration = Duration::from_secs(10);
/// Optimistic writes that lose a race are tried again this often at most.
const RACES: usize = 50;
/// The governor's windows: a fifth of a second, so that 20 and 15 calls a second divide evenly.
const WINDOWS_PER_SECOND: u32 = 5;
const WINDOW_MILLIS: i64 = 1_000 / WINDOWS_PER_SECOND as i64;

pub struct DynamoQuota {
    client: aws_sdk_dynamodb::Client,
    table: String,
    calls_per_second: u32,
    outstanding: usize,
}

impl DynamoQuota {
    pub fn new(
        config: &SdkConfig,
        table: String,
        calls_per_second: u32,
        outstanding: usize,
    ) -> Self {
        DynamoQuota {
            client: aws_sdk_dynamodb::Client::new(config),
            table,
            calls_per_second,
            outstanding,
        }
    }

    /// The governor of IAM Identity Center's quotas, for readers: they leave
    /// [`SSO_ADMIN_CALLS_KEPT_FOR_CHANGES`] calls of every second to the worker and the monitor.
    pub fn for_sso_admin_readers(config: &SdkConfig, table: String) -> Self {
        DynamoQuota {
            calls_per_second: SSO_ADMIN_CALLS_PER_SECOND - SSO_ADMIN_CALLS_KEPT_FOR_CHANGES,
            ..DynamoQuota::for_sso_admin(config, table)
        }
    }

    /// The governor of IAM Identity Center's quotas, for the worker and the monitor.
    pub fn for_sso_admin(config: &SdkConfig, table: String) -> Self {
        DynamoQuota::new(
            config,
            table,
            SSO_ADMIN_CALLS_PER_SECOND,
            SSO_ADMIN_OUTSTANDING_OPERATIONS,
        )
    }

    fn busy(detail: &str) -> PortError {
        PortError::Transient {
            service: "quota",
            detail: detail.to_owned(),
        }
    }

    /// The item that holds the operation slots.
    fn slots(&self) -> VersionedMap<'_> {
        VersionedMap {
            client: &self.client,
            table: &self.table,
            key: HashMap::from([("pk".to_owned(), AttributeValue::S(OUTSTANDING.into()))]),
            map: "held",
        }
    }

    /// The map of held keys and the item's version (0 when there is no item yet).
    async fn held(&self) -> Result<(HashMap<String, Held>, i64), PortError> {
        let (entries, version) = self.slots().read().await?;
        let held = entries
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), Held::read(v)?)))
            .collect();
        Ok((held, version))
    }

    /// Writes `held` if the item is still at `version`; `false` when another writer won.
    async fn write(&self, held: &HashMap<String, Held>, version: i64) -> Result<bool, PortError> {
        let map = held.iter().map(|(k, v)| (k.clone(), v.written())).collect();
        self.slots().write(map, version, &[]).await
    }
}

/// One held slot: until when, and for whom.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Held {
    expires: i64,
    holder: String,
}

impl Held {
    /// `{"expires": N, "holder": S}`; a bare number is a slot held before holders were kept,
    /// whose holder matches no one.
    fn read(value: &AttributeValue) -> Option<Held> {
        if let Ok(expires) = value.as_n() {
            return Some(Held {
                expires: expires.parse().ok()?,
                holder: String::new(),
            });
        }
        let map = value.as_m().ok()?;
        Some(Held {
            expires: map.get("expires")?.as_n().ok()?.parse().ok()?,
            holder: map.get("holder")?.as_s().ok()?.clone(),
        })
    }

    fn written(&self) -> AttributeValue {
        AttributeValue::M(HashMap::from([
            (
                "expires".to_owned(),
                AttributeValue::N(self.expires.to_string()),
            ),
            ("holder".to_owned(), AttributeValue::S(self.holder.clone())),
        ]))
    }
}

#[async_trait]
impl CallRate for DynamoQuota {
    async fn take(&self) -> Result<(), PortError> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let per_window = (self.calls_per_second / WINDOWS_PER_SECOND).max(1);
        loop {
            let now = Utc::now();
            let millis = now.timestamp_millis();
            let window = millis.div_euclid(WINDOW_MILLIS);
            let taken = self
                .client
                .update_item()
                .table_name(&self.table)
                .key(
                    "pk",
                    AttributeValue::S(format!("sso-admin#window#{window}")),
                )
                .update_expression("ADD calls :one SET expiresAt = :expires")
                .condition_expression("attribute_not_exists(calls) OR calls < :limit")
                .expression_attribute_values(":one", AttributeValue::N("1".into()))
                .expression_attribute_values(":limit", AttributeValue::N(per_window.to_string()))
                .expression_attribute_values(
                    ":expires",
                    AttributeValue::N((now.timestamp() + 60).to_string()),
                )
                .send()
                .await;
            match taken {
                Ok(_) => return Ok(()),
                Err(SdkError::ServiceError(context))
                    if matches!(
                        context.err(),
                        UpdateItemError::ConditionalCheckFailedException(_)
                    ) =>
                {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(Self::busy("no sso-admin call slot within 10 s"));
                    }
                    let into_window = millis.rem_euclid(WINDOW_MILLIS);
                    let left = u64::try_from(WINDOW_MILLIS - into_window).unwrap_or(1);
                    tokio::time::sleep(Duration::from_millis(left)).await;
                }
                Err(e) => return Err(port_error(SERVICE, &self.table, e)),
            }
        }
    }
}

#[async_trait]
impl OutstandingOperations for DynamoQuota {
    async fn reserve(
        &self,
        key: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, PortError> {
        for _ in 0..RACES {
            let (mut held, version) = self.held().await?;
            held.retain(|_, slot| slot.expires > now.timestamp());
            match held.get(key) {
                Some(slot) if slot.holder != holder => return Ok(false),
                Some(_) => {}
                None if held.len() >= self.outstanding => return Ok(false),
                None => {}
            }
            held.insert(
                key.to_owned(),
                Held {
                    expires: until.timestamp(),
                    holder: holder.to_owned(),
                },
            );
            if self.write(&held, version).await? {
                return Ok(true);
            }
            lost_a_race().await;
        }
        Err(Self::busy("too many concurrent reservations"))
    }

    async fn release(&self, key: &str) -> Result<(), PortError> {
        for _ in 0..RACES {
            let (mut held, version) = self.held().await?;
            if held.remove(key).is_none() {
                return Ok(());
            }
            if self.write(&held, version).await? {
                return Ok(());
            }
            lost_a_race().await;
        }
        Err(Self::busy("too many concurrent releases"))
    }
}

/// A short, varied pause after another writer won, so that racing writers spread out.
async fn lost_a_race() {
    let jitter = u64::from(Utc::now().timestamp_subsec_nanos() % 25);
    tokio::time::sleep(Duration::from_millis(jitter)).await;
}
