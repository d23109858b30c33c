//! The operator's side of `make up`: the running cloud leaves a state file, and these commands
//! use it to drive the stack as a user's event would (`maestro-localcloud sso-request`, `audit`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_ssoadmin::types::PrincipalType;
use serde::{Deserialize, Serialize};

use crate::error::{LocalCloudError, sdk_error};
use crate::identity_center::{AssignmentTarget, Operation, request_assignment};
use crate::seed::{SampleOrganisation, find};
use crate::sign_in::UserPool;
use crate::{LocalCloud, Stack, listen, moto, sdk_config_for};

/// Where `make up` writes what the other commands need.
pub fn state_file() -> PathBuf {
    moto::repository_root().join(".localcloud/state.json")
}

/// What a running `make up` tells the other commands.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpState {
    pub aws_endpoint_url: String,
    pub region: String,
    pub lambda_endpoint: String,
    pub http_endpoint: String,
    pub outputs: BTreeMap<String, String>,
    /// A queue subscribed to AuditTopic since the stack was built, read by `audit`.
    pub audit_listener_url: String,
    pub organisation: Option<SampleOrganisation>,
    /// The user pool the stack's JWT authorizer trusts, read by `token`.
    #[serde(default)]
    pub user_pool: Option<UserPool>,
}

impl UpState {
    pub async fn record(
        cloud: &LocalCloud,
        stack: &Stack,
        organisation: Option<SampleOrganisation>,
    ) -> Result<UpState, LocalCloudError> {
        let audit_topic = stack.output("AuditTopicArn").ok_or_else(|| {
            LocalCloudError::Template("the template does not output AuditTopicArn".into())
        })?;
        let audit_listener_url =
            listen::subscribe_queue(cloud.sdk_config(), audit_topic, "local-audit-listener")
                .await?;
        let state = UpState {
            aws_endpoint_url: cloud.moto_endpoint().to_owned(),
            region: cloud.region().to_owned(),
            lambda_endpoint: cloud.lambda_endpoint().to_owned(),
            http_endpoint: cloud.http_endpoint().to_owned(),
            outputs: stack.outputs.clone(),
            audit_listener_url,
            organisation,
            user_pool: cloud.user_pool(),
        };
        let path = state_file();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(
            &path,
            serde_json::to_vec_pretty(&state).map_err(std::io::Error::other)?,
        )?;
        Ok(state)
    }

    pub fn load() -> Result<UpState, LocalCloudError> {
        let path = state_file();
        let text = std::fs::read_to_string(&path).map_err(|e| {
            LocalCloudError::Emulator(format!(
                "cannot read {} ({e}): is `make up` running?",
                path.display()
            ))
        })?;
        serde_json::from_str(&text)
            .map_err(|e| LocalCloudError::Emulator(format!("{} is damaged: {e}", path.display())))
    }

    fn output(&self, name: &str) -> Result<&str, LocalCloudError> {
        self.outputs
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| LocalCloudError::Template(format!("the stack has no output {name}")))
    }
}

/// An assignment to ask IAM Identity Center for, by the sample organisation's names.
pub struct AssignmentAsk {
    pub account: String,
    pub principal: String,
    pub principal_is_user: bool,
    pub permission_set: String,
    pub delete: bool,
}

/// Asks the emulated IAM Identity Center to create (or delete) the assignment, then puts the
/// resulting request on the monitor queue, as the SSO sync does. Returns the queued body.
pub async fn sso_request(ask: &AssignmentAsk) -> Result<String, LocalCloudError> {
    let state = UpState::load()?;
    let organisation = state.organisation.as_ref().ok_or_else(|| {
        LocalCloudError::Emulator("`make up` ran without the sample organisation".into())
    })?;
    let lookup = |e: String| LocalCloudError::Emulator(e);
    // A 12-digit id names any account, a member of the organisation or not.
    let account_id = if ask.account.len() == 12 && ask.account.chars().all(|c| c.is_ascii_digit()) {
        ask.account.clone()
    } else {
        find(&organisation.accounts, "account", &ask.account)
            .map_err(lookup)?
            .id
            .clone()
    };
    let principals = if ask.principal_is_user {
        &organisation.users
    } else {
        &organisation.groups
    };
    let principal = find(principals, "principal", &ask.principal).map_err(lookup)?;
    let permission_set = find(
        &organisation.permission_sets,
        "permission set",
        &ask.permission_set,
    )
    .map_err(lookup)?;
    let target = AssignmentTarget {
        instance_arn: organisation.instance_arn.clone(),
        account_id,
        permission_set_arn: permission_set.id.clone(),
        principal_id: principal.id.clone(),
        principal_type: if ask.principal_is_user {
            PrincipalType::User
        } else {
            PrincipalType::Group
        },
    };
    let operation = if ask.delete {
        Operation::Delete
    } else {
        Operation::Create
    };
    let config = sdk_config_for(&state.aws_endpoint_url, &state.region).await;
    let request = request_assignment(&config, &target, operation).await?;
    let body = serde_json::to_string_pretty(&request).map_err(std::io::Error::other)?;
    aws_sdk_sqs::Client::new(&config)
        .send_message()
        .queue_url(state.output("SsoAssignmentRequestsQueueUrl")?)
        .message_body(&body)
        .send()
        .await
        .map_err(|e| LocalCloudError::Emulator(format!("sqs: {}", sdk_error(e))))?;
    Ok(body)
}

/// The audit messages published since the last call, waiting up to `patience` for `count`.
/// An ID token for `email`, a member of `teams`, from the running stack's user pool.
pub async fn token(email: &str, teams: &[&str]) -> Result<String, LocalCloudError> {
    let state = UpState::load()?;
    let pool = state.user_pool.ok_or_else(|| {
        LocalCloudError::Template("the running stack has no JWT authorizer (AuthIssuer)".into())
    })?;
    pool.id_token(&state.aws_endpoint_url, email, teams).await
}

pub async fn audit(count: usize, patience: Duration) -> Result<Vec<String>, LocalCloudError> {
    let state = UpState::load()?;
    let config = sdk_config_for(&state.aws_endpoint_url, &state.region).await;
    listen::receive_bodies(&config, &state.audit_listener_url, count, patience).await
}
