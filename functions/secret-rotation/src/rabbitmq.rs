//! RabbitMQ (and Amazon MQ for RabbitMQ) users as rotation targets, through the management
//! HTTP API. The secret's `host` and `port` are the management endpoint's (`https` unless the
//! secret says `"managementScheme": "http"`), and `vhost` (default `/`) is where the
//! application works.
//!
//! Changing a password needs the `administrator` tag: a user without it names, in
//! `masterarn`, the secret of a user who has it. Checking one through the management API
//! needs the `management` tag at least, so rotated users carry it.

use std::time::Duration;

use async_trait::async_trait;
use maestro_domain::rotation::credentials::Credentials;
use maestro_domain::rotation::protocol::{Target, TargetError};
use reqwest::StatusCode;
use serde_json::{Value, json};

pub struct RabbitMq {
    http: reqwest::Client,
}

impl RabbitMq {
    pub fn new() -> Result<RabbitMq, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the RabbitMQ client: {e}"))?;
        Ok(RabbitMq { http })
    }
}

fn base(credentials: &Credentials) -> String {
    let scheme = match credentials.field("managementScheme") {
        Some("http") => "http",
        _ => "https",
    };
    format!("{scheme}://{}:{}/api", credentials.host, credentials.port)
}

/// A path segment (a user or vhost name) for the management API.
fn segment(name: &str) -> String {
    let mut encoded = String::new();
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

fn unreachable(credentials: &Credentials, error: impl std::fmt::Display) -> TargetError {
    TargetError::Unreachable(format!(
        "RabbitMQ management at {}:{}: {error}",
        credentials.host, credentials.port
    ))
}

impl RabbitMq {
    async fn get(
        &self,
        as_user: &Credentials,
        path: &str,
    ) -> Result<reqwest::Response, TargetError> {
        self.http
            .get(format!("{}{path}", base(as_user)))
            .basic_auth(&as_user.username, Some(&as_user.password))
            .send()
            .await
            .map_err(|e| unreachable(as_user, e))
    }
}

#[async_trait]
impl Target for RabbitMq {
    async fn logs_in(&self, credentials: &Credentials) -> Result<bool, TargetError> {
        let answer = self.get(credentials, "/whoami").await?;
        match answer.status() {
            status if status.is_success() => Ok(true),
            StatusCode::UNAUTHORIZED => Ok(false),
            status => Err(unreachable(
                credentials,
                format!("whoami answered {status}"),
            )),
        }
    }

    async fn set(&self, acting: &Credentials, pending: &Credentials) -> Result<(), TargetError> {
        let path = format!("/users/{}", segment(&pending.username));
        let user = self.get(acting, &path).await?;
        if !user.status().is_success() {
            return Err(TargetError::Refused(format!(
                "{} cannot read user {} ({})",
                acting.username,
                pending.username,
                user.status()
            )));
        }
        // PUT replaces the user: its tags must be sent back as they were.
        let tags = user
            .json::<Value>()
            .await
            .map_err(|e| unreachable(acting, e))?
            .get("tags")
            .cloned()
            .unwrap_or(Value::Array(Vec::new()));
        let tags = match tags {
            Value::Array(list) => Value::String(
                list.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            other => other,
        };
        let changed = self
            .http
            .put(format!("{}{path}", base(acting)))
            .basic_auth(&acting.username, Some(&acting.password))
            .json(&json!({ "password": pending.password, "tags": tags }))
            .send()
            .await
            .map_err(|e| unreachable(acting, e))?;
        if changed.status().is_success() {
            Ok(())
        } else {
            Err(TargetError::Refused(format!(
                "changing the password of {} answered {}",
                pending.username,
                changed.status()
            )))
        }
    }

    async fn test(&self, pending: &Credentials) -> Result<(), TargetError> {
        if !self.logs_in(pending).await? {
            return Err(TargetError::Refused(format!(
                "the pending password of {} does not log in",
                pending.username
            )));
        }
        // The broker declares a queue, publishes and consumes a message on a channel of the
        // application's vhost, as the pending user.
        let vhost = pending.field("vhost").unwrap_or("/");
        let alive = self
            .get(pending, &format!("/aliveness-test/{}", segment(vhost)))
            .await?;
        let status = alive.status();
        let body: Value = alive.json().await.unwrap_or(Value::Null);
        if status.is_success() && body["status"] == "ok" {
            Ok(())
        } else {
            Err(TargetError::Refused(format!(
                "{} cannot use a channel on vhost {vhost}: {status} {body}",
                pending.username
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_path_segments() {
        assert_eq!(segment("/"), "%2F");
        assert_eq!(segment("app user"), "app%20user");
        assert_eq!(segment("app-1_x.y"), "app-1_x.y");
    }
}
