//! The local cloud: Maestro on one machine, with no AWS account and no Docker.
//!
//! [`LocalCloud::start`] runs the emulator (moto, through `localcloud/moto/launcher.py`) and
//! the Lambda Invoke API; [`LocalCloud::deploy`] builds the stack that `infra/template.yaml`
//! describes and runs its functions in-process, fed by their event sources; [`LocalCloud::reset`]
//! empties everything so the next test starts clean.

pub mod console;
pub mod error;
pub mod event_sources;
pub mod functions;
pub mod http_api;
pub mod identity_center;
pub mod identity_provider;
pub mod invoke;
pub mod listen;
pub mod moto;
pub mod seed;
pub mod sign_in;
pub mod stack;
pub mod template;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use aws_sdk_sqs::config::{Credentials, Region};
use maestro_aws::SdkConfig;
use serde_json::Value;

pub use error::LocalCloudError;
pub use stack::{Stack, StackSettings};
pub use template::Template;

use functions::Registration;
use http_api::RouteTable;
use invoke::FunctionTable;
use moto::{Moto, MotoOptions};
use stack::EventSource;

/// The address approval emails come from on the local cloud.
pub const LOCAL_SENDER: &str = "maestro@approvals.example.com";

/// The approval policy `make up` and the tests deploy with.
pub const SAMPLE_APPROVAL_POLICY: &str = include_str!("../sample-approval-policy.json");

/// Everyone the sample approval policy names as an approver, once each.
pub fn sample_approvers() -> Vec<String> {
    let policy: serde_json::Value =
        serde_json::from_str(SAMPLE_APPROVAL_POLICY).unwrap_or_default();
    let mut approvers: Vec<String> = policy["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|rule| {
            rule["approval"]["approvers"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    approvers.sort();
    approvers.dedup();
    approvers
}

/// Who owns which secrets on the local cloud (`SecretOwners`): team `payments` the
/// `prod/`, `staging/` and `dev/` secrets, in those environments.
pub const SAMPLE_SECRET_OWNERS: &str = include_str!("../sample-secret-owners.json");

/// How to start the local cloud.
#[derive(Debug, Clone)]
pub struct LocalCloudOptions {
    /// A Python with moto installed (see `make venv`).
    pub python: PathBuf,
    pub region: String,
    /// Port of the Lambda Invoke API; 0 picks a free one.
    pub lambda_port: u16,
    /// Port of the stack's HTTP APIs; 0 picks a free one.
    pub http_port: u16,
    /// Status reads that answer IN_PROGRESS before an SSO assignment request settles.
    pub sso_polls_in_progress: u32,
}

impl Default for LocalCloudOptions {
    fn default() -> Self {
        LocalCloudOptions {
            python: moto::default_python(),
            region: "us-east-1".to_owned(),
            lambda_port: 0,
            http_port: 0,
            sso_polls_in_progress: 1,
        }
    }
}

pub struct LocalCloud {
    moto: Moto,
    sdk_config: SdkConfig,
    region: String,
    lambda_endpoint: String,
    http_endpoint: String,
    registrations: Mutex<Vec<Registration>>,
    functions: FunctionTable,
    routes: RouteTable,
    /// The user pool of the latest stack that has a JWT authorizer (`AuthIssuer`), and the
    /// `Authorization` values it issued, by user and teams: a token is good for an hour, and
    /// each new pool starts without any.
    user_pool: Mutex<Option<(sign_in::UserPool, IssuedBearers)>>,
    /// The host of each explicit HTTP API, by API id.
    api_hosts: Mutex<BTreeMap<String, String>>,
    schedules: Mutex<Vec<(stack::Schedule, Arc<stack::DeployedFunction>)>>,
    event_sources: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// Serves `router` on 127.0.0.1:`port` in the background; returns its base URL.
async fn serve(
    port: u16,
    router: axum::Router,
    what: &'static str,
) -> Result<String, LocalCloudError> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::error!(%error, "the {what} stopped");
        }
    });
    Ok(endpoint)
}

/// `Authorization` values by (email, teams).
type IssuedBearers = BTreeMap<(String, Vec<String>), String>;

impl LocalCloud {
    pub async fn start(options: LocalCloudOptions) -> Result<Self, LocalCloudError> {
        let functions = FunctionTable::default();
        let routes = RouteTable::default();
        let lambda_endpoint = serve(
            options.lambda_port,
            invoke::router(functions.clone()),
            "Lambda Invoke API",
        )
        .await?;
        let moto = Moto::start(&MotoOptions {
            python: options.python.clone(),
            launcher: moto::repository_root().join("localcloud/moto/launcher.py"),
            lambda_endpoint: lambda_endpoint.clone(),
            sso_polls_in_progress: options.sso_polls_in_progress,
        })
        .await?;
        // The user pools' sign-in pages share the HTTP APIs' port, as a browser reaches both.
        let http_endpoint = serve(
            options.http_port,
            identity_provider::router(identity_provider::LocalSignIn::new(
                moto.endpoint(),
                &options.region,
            ))
            .merge(http_api::router(routes.clone())),
            "HTTP API",
        )
        .await?;
        let sdk_config = sdk_config_for(moto.endpoint(), &options.region).await;
        Ok(LocalCloud {
            moto,
            sdk_config,
            region: options.region,
            lambda_endpoint,
            http_endpoint,
            registrations: Mutex::new(functions::REGISTRY.to_vec()),
            functions,
            routes,
            user_pool: Mutex::new(None),
            api_hosts: Mutex::new(BTreeMap::new()),
            schedules: Mutex::new(Vec::new()),
            event_sources: Mutex::new(Vec::new()),
        })
    }

    /// SDK configuration that talks to the emulator, for tests, seeds and tools.
    pub fn sdk_config(&self) -> &SdkConfig {
        &self.sdk_config
    }

    pub fn moto_endpoint(&self) -> &str {
        self.moto.endpoint()
    }

    pub fn lambda_endpoint(&self) -> &str {
        &self.lambda_endpoint
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// Where the stack's HTTP API routes are served.
    pub fn http_endpoint(&self) -> &str {
        &self.http_endpoint
    }

    /// Makes one more function crate available to templates (tests register fakes this way).
    pub fn register(&self, registration: Registration) {
        let mut registrations = self
            .registrations
            .lock()
            .expect("the registration lock is never poisoned");
        registrations.retain(|r| r.binary != registration.binary);
        registrations.push(registration);
    }

    /// Every parameter the local cloud fills for a template that declares it: the IAM
    /// Identity Center instance, and the approvals' sender and sample policy.
    pub async fn local_parameters(
        &self,
        template: &Template,
    ) -> Result<BTreeMap<String, String>, LocalCloudError> {
        let mut parameters = self.identity_center_parameters(template).await?;
        parameters.extend(self.approval_parameters(template).await?);
        parameters.extend(self.auth_parameters(template).await?);
        Ok(parameters)
    }

    /// `AuthIssuer` and `AuthAudience`: a new user pool in the emulator and its app client,
    /// for templates that declare them. [`LocalCloud::bearer`] signs users in to it.
    pub async fn auth_parameters(
        &self,
        template: &Template,
    ) -> Result<BTreeMap<String, String>, LocalCloudError> {
        if template.document["Parameters"].get("AuthIssuer").is_none() {
            return Ok(BTreeMap::new());
        }
        let pool = sign_in::UserPool::create(self.moto.endpoint(), &self.region).await?;
        let mut parameters = BTreeMap::from([
            ("AuthIssuer".to_owned(), pool.issuer()),
            ("AuthAudience".to_owned(), pool.client_id.clone()),
        ]);
        let declared = |name: &str| template.document["Parameters"].get(name).is_some();
        // Approvers sign in on the pool's local pages, with its one app client.
        if declared("AuthMetadataUrl") {
            parameters.insert(
                "AuthMetadataUrl".to_owned(),
                identity_provider::LocalSignIn::metadata_url(&self.http_endpoint, &pool.id),
            );
        }
        if declared("ApproverSignInClientId") {
            parameters.insert("ApproverSignInClientId".to_owned(), pool.client_id.clone());
        }
        *self
            .user_pool
            .lock()
            .expect("the user pool lock is never poisoned") = Some((pool, BTreeMap::new()));
        Ok(parameters)
    }

    /// The user pool the stack's authorizer trusts, once [`LocalCloud::local_parameters`]
    /// made one.
    pub fn user_pool(&self) -> Option<sign_in::UserPool> {
        self.user_pool
            .lock()
            .expect("the user pool lock is never poisoned")
            .as_ref()
            .map(|(pool, _)| pool.clone())
    }

    /// An `Authorization` header value for `email`, a member of `teams`, whose address the
    /// stack's user pool never verified (a fresh user each call: nothing is reused).
    pub async fn unverified_bearer(
        &self,
        email: &str,
        teams: &[&str],
    ) -> Result<String, LocalCloudError> {
        let pool = self.user_pool().ok_or_else(|| {
            LocalCloudError::Emulator("no user pool: deploy a stack with AuthIssuer first".into())
        })?;
        let token = pool
            .id_token_with(
                self.moto.endpoint(),
                email,
                teams,
                sign_in::EmailVerified::No,
            )
            .await?;
        Ok(format!("Bearer {token}"))
    }

    /// An `Authorization` header value for `email`, a member of `teams`, signed in to the
    /// stack's user pool.
    pub async fn bearer(&self, email: &str, teams: &[&str]) -> Result<String, LocalCloudError> {
        let key = (
            email.to_owned(),
            teams.iter().map(|t| (*t).to_owned()).collect::<Vec<_>>(),
        );
        let pool = {
            let signed_in = self
                .user_pool
                .lock()
                .expect("the user pool lock is never poisoned");
            let (pool, issued) = signed_in.as_ref().ok_or_else(|| {
                LocalCloudError::Emulator(
                    "no user pool: deploy a stack with AuthIssuer first".into(),
                )
            })?;
            if let Some(bearer) = issued.get(&key) {
                return Ok(bearer.clone());
            }
            pool.clone()
        };
        let token = pool.id_token(self.moto.endpoint(), email, teams).await?;
        let bearer = format!("Bearer {token}");
        if let Some((current, issued)) = self
            .user_pool
            .lock()
            .expect("the user pool lock is never poisoned")
            .as_mut()
            && current.id == pool.id
        {
            issued.insert(key, bearer.clone());
        }
        Ok(bearer)
    }

    /// `ApprovalSender`, verified in SES as a user verifies theirs, `ApprovalPolicy`: the
    /// sample policy (`localcloud/sample-approval-policy.json`), whose approvers are the
    /// sample organisation's people, and `SecretOwners` (`localcloud/sample-secret-owners.json`).
    pub async fn approval_parameters(
        &self,
        template: &Template,
    ) -> Result<BTreeMap<String, String>, LocalCloudError> {
        let mut parameters = BTreeMap::new();
        let declared = |name: &str| template.document["Parameters"].get(name).is_some();
        if declared("ApprovalSender") {
            aws_sdk_sesv2::Client::new(&self.sdk_config)
                .create_email_identity()
                .email_identity(LOCAL_SENDER)
                .send()
                .await
                .map_err(|e| LocalCloudError::Emulator(format!("ses: {}", error::sdk_error(e))))?;
            parameters.insert("ApprovalSender".to_owned(), LOCAL_SENDER.to_owned());
        }
        if declared("ApprovalPolicy") {
            parameters.insert(
                "ApprovalPolicy".to_owned(),
                SAMPLE_APPROVAL_POLICY.to_owned(),
            );
        }
        if declared("SecretOwners") {
            parameters.insert("SecretOwners".to_owned(), SAMPLE_SECRET_OWNERS.to_owned());
        }
        Ok(parameters)
    }

    /// The template parameters that name the emulator's IAM Identity Center instance
    /// (`SsoInstanceArn`, `IdentityStoreId`), for templates that declare them; moto makes
    /// the instance itself, with ids no one can know before it runs.
    pub async fn identity_center_parameters(
        &self,
        template: &Template,
    ) -> Result<BTreeMap<String, String>, LocalCloudError> {
        let declared = |name: &str| template.document["Parameters"].get(name).is_some();
        if !declared("SsoInstanceArn") && !declared("IdentityStoreId") {
            return Ok(BTreeMap::new());
        }
        let instance = aws_sdk_ssoadmin::Client::new(&self.sdk_config)
            .list_instances()
            .send()
            .await
            .map_err(|e| LocalCloudError::Emulator(format!("sso-admin: {}", error::sdk_error(e))))?
            .instances
            .unwrap_or_default()
            .into_iter()
            .next()
            .ok_or_else(|| LocalCloudError::Emulator("no IAM Identity Center instance".into()))?;
        Ok([
            ("SsoInstanceArn", instance.instance_arn),
            ("IdentityStoreId", instance.identity_store_id),
        ]
        .into_iter()
        .filter(|(name, _)| declared(name))
        .filter_map(|(name, value)| Some((name.to_owned(), value?)))
        .collect())
    }

    /// Builds the template's stack and starts its functions' event sources.
    pub async fn deploy(
        &self,
        template: &Template,
        stack_name: &str,
        parameter_overrides: &BTreeMap<String, String>,
    ) -> Result<Stack, LocalCloudError> {
        // Each explicit HTTP API gets a host of its own, as API Gateway gives each API its
        // domain: cookies and addresses are the API's alone.
        // A host outlives its stack: the next deploy of the same API reuses it.
        let mut api_endpoints = BTreeMap::new();
        for (logical_id, resource) in template.resources() {
            if resource["Type"] != "AWS::Serverless::HttpApi" {
                continue;
            }
            let api_id = stack::local_api_id(logical_id);
            let known = self
                .api_hosts
                .lock()
                .expect("the API host lock is never poisoned")
                .get(&api_id)
                .cloned();
            let endpoint = match known {
                Some(endpoint) => endpoint,
                None => {
                    let endpoint = serve(
                        0,
                        http_api::api_router(self.routes.clone(), &api_id),
                        "HTTP API",
                    )
                    .await?;
                    self.api_hosts
                        .lock()
                        .expect("the API host lock is never poisoned")
                        .insert(api_id.clone(), endpoint.clone());
                    endpoint
                }
            };
            api_endpoints.insert(api_id, endpoint);
        }
        let settings = StackSettings {
            stack_name: stack_name.to_owned(),
            region: self.region.clone(),
            moto_endpoint: self.moto.endpoint().to_owned(),
            http_endpoint: self.http_endpoint.clone(),
            api_endpoints,
            parameters: template.parameters(parameter_overrides)?,
        };
        let registrations = self
            .registrations
            .lock()
            .expect("the registration lock is never poisoned")
            .clone();
        let stack = stack::deploy(template, settings, &self.sdk_config, &registrations).await?;
        self.functions
            .write()
            .expect("the function table lock is never poisoned")
            .extend(stack.functions.clone());
        let sqs = aws_sdk_sqs::Client::new(&self.sdk_config);
        let mut running = Vec::new();
        for source in &stack.event_sources {
            let function = |name: &str| Arc::clone(&stack.functions[name]);
            match source {
                EventSource::Queue(mapping) => running.push(event_sources::spawn_queue_mapping(
                    sqs.clone(),
                    mapping.clone(),
                    function(&mapping.function_name),
                    self.region.clone(),
                )),
                EventSource::Rule(delivery) => running.push(event_sources::spawn_rule_delivery(
                    sqs.clone(),
                    delivery.clone(),
                    function(&delivery.function_name),
                )),
                EventSource::Schedule(schedule) => {
                    let target = function(&schedule.function_name);
                    running.extend(event_sources::spawn_schedule(
                        schedule.clone(),
                        Arc::clone(&target),
                        self.region.clone(),
                    ));
                    self.schedules
                        .lock()
                        .expect("the schedule lock is never poisoned")
                        .push((schedule.clone(), target));
                }
                EventSource::HttpRoute(route) => self
                    .routes
                    .write()
                    .expect("the route table lock is never poisoned")
                    .push((route.clone(), function(&route.function_name))),
            }
        }
        self.event_sources
            .lock()
            .expect("the event source list lock is never poisoned")
            .extend(running);
        Ok(stack)
    }

    /// Fires the schedule `event_name` of function `logical_id` now, as EventBridge would on
    /// its next tick; `cron(…)` schedules fire only this way.
    pub async fn fire_schedule(
        &self,
        logical_id: &str,
        event_name: &str,
    ) -> Result<Value, lambda_runtime::Diagnostic> {
        let found = self
            .schedules
            .lock()
            .expect("the schedule lock is never poisoned")
            .iter()
            .find(|(s, _)| s.logical_id == logical_id && s.event_name == event_name)
            .cloned();
        let (schedule, function) = found.ok_or_else(|| lambda_runtime::Diagnostic {
            error_type: "ResourceNotFoundException".into(),
            error_message: format!("{logical_id} has no schedule {event_name}"),
        })?;
        event_sources::fire_schedule(&schedule, &function, &self.region).await
    }

    /// Stops every event source, forgets every function and empties the emulator.
    pub async fn reset(&self) -> Result<(), LocalCloudError> {
        for source in self
            .event_sources
            .lock()
            .expect("the event source list lock is never poisoned")
            .drain(..)
        {
            source.abort();
        }
        self.functions
            .write()
            .expect("the function table lock is never poisoned")
            .clear();
        self.routes
            .write()
            .expect("the route table lock is never poisoned")
            .clear();
        self.schedules
            .lock()
            .expect("the schedule lock is never poisoned")
            .clear();
        self.moto.reset().await
    }

    /// Invokes a function of the stack by name or ARN, as the Invoke API would.
    pub async fn invoke(
        &self,
        function: &str,
        payload: Value,
    ) -> Result<Value, lambda_runtime::Diagnostic> {
        let deployed =
            invoke::find(&self.functions, function).ok_or_else(|| lambda_runtime::Diagnostic {
                error_type: "ResourceNotFoundException".into(),
                error_message: format!("Function not found: {function}"),
            })?;
        invoke::invoke(&deployed, payload).await
    }
}

/// The SDK configuration for the emulator: its endpoint, a region, and test credentials.
pub async fn sdk_config_for(endpoint: &str, region: &str) -> SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            "localcloud",
            "localcloud",
            None,
            None,
            "localcloud",
        ))
        .load()
        .await
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_sample_policys_approvers_are_named_once_each() {
        assert_eq!(
            super::sample_approvers(),
            ["alice@example.com", "bob@example.com", "carol@example.com"]
        );
    }
}
