//! Making the template's stack real on the emulator: names first (so references never depend
//! on creation order), then every resource, then the functions and their event sources.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use crate::error::{LocalCloudError, sdk_error};
use crate::functions::{FailedInit, InProcessFunction, Registration};
use crate::template::{ResolveContext, Template, resolve, substitute};
use maestro_aws::SdkConfig;
use maestro_aws::env::FunctionEnv;

pub const ACCOUNT_ID: &str = "123456789012";

/// The logical id SAM gives the HTTP API it creates for `HttpApi` events that name none.
pub const IMPLICIT_HTTP_API: &str = "ServerlessHttpApi";

/// EventBridge's quota on an event pattern's size, in characters (adjustable only by a quota
/// request, which a template cannot assume).
pub const EVENT_PATTERN_MAX_CHARS: usize = 2048;

/// API ids are ten lowercase characters; the local one is derived from the logical id.
pub fn local_api_id(logical_id: &str) -> String {
    let mut id: String = logical_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .take(10)
        .collect();
    while id.len() < 10 {
        id.push('0');
    }
    id
}

/// Where and as what the stack is built.
#[derive(Debug, Clone)]
pub struct StackSettings {
    pub stack_name: String,
    pub region: String,
    pub moto_endpoint: String,
    /// Where the local host serves HTTP APIs; each API is also at `/_api/<api id>` below it.
    pub http_endpoint: String,
    /// The hosts that serve one API each at their root, by API id (each API's `ApiEndpoint`,
    /// as in AWS); an API without one is at `/_api/<api id>` below `http_endpoint`.
    pub api_endpoints: BTreeMap<String, String>,
    pub parameters: BTreeMap<String, String>,
}

/// The kinds of resource the local cloud builds, and those it accepts without emulating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Queue,
    Topic,
    Subscription,
    Table,
    Function,
    StateMachine,
    EventBus,
    /// A Secrets Manager secret. `Ref` gives its name, which every API takes where it takes
    /// the ARN: the emulator picks the ARN's random suffix only when the secret is created.
    Secret,
    /// An HTTP API: its routes come from the functions' `HttpApi` events.
    HttpApi,
    /// Accepted so the template deploys, resolved so its references are checked, but not
    /// emulated (IAM, KMS, alarms, log groups: nothing local depends on them).
    NotEmulated,
}

impl Kind {
    fn of(resource_type: &str) -> Option<Kind> {
        Some(match resource_type {
            "AWS::SQS::Queue" => Kind::Queue,
            "AWS::SNS::Topic" => Kind::Topic,
            "AWS::SNS::Subscription" => Kind::Subscription,
            "AWS::DynamoDB::Table" => Kind::Table,
            "AWS::Serverless::Function" => Kind::Function,
            "AWS::Serverless::StateMachine" => Kind::StateMachine,
            "AWS::Events::EventBus" => Kind::EventBus,
            "AWS::SecretsManager::Secret" => Kind::Secret,
            "AWS::Serverless::HttpApi" => Kind::HttpApi,
            "AWS::KMS::Key"
            | "AWS::KMS::Alias"
            | "AWS::CloudWatch::Alarm"
            | "AWS::Logs::LogGroup"
            | "AWS::IAM::Role"
            | "AWS::IAM::ManagedPolicy"
            | "AWS::SQS::QueuePolicy"
            | "AWS::SNS::TopicPolicy"
            | "AWS::SecretsManager::ResourcePolicy"
            | "AWS::Lambda::Permission"
            | "AWS::Events::EventBusPolicy" => Kind::NotEmulated,
            _ => return None,
        })
    }
}

/// A resource's identity in the stack: what `Ref` gives and what `Fn::GetAtt` can read.
#[derive(Debug, Clone)]
pub struct PhysicalResource {
    pub resource_type: String,
    pub kind: Kind,
    pub reference: String,
    pub attributes: BTreeMap<&'static str, String>,
}

/// A function of the stack as the local host runs it.
pub struct DeployedFunction {
    pub logical_id: String,
    pub name: String,
    pub arn: String,
    pub timeout_seconds: u64,
    /// Where asynchronous invocations that fail every attempt go (`DeadLetterQueue`).
    pub dead_letter_queue_url: Option<String>,
    pub handler: Arc<dyn InProcessFunction>,
}

/// What feeds a function, from its `Events` in the template.
#[derive(Debug, Clone)]
pub enum EventSource {
    Queue(QueueMapping),
    Rule(RuleDelivery),
    Schedule(Schedule),
    HttpRoute(HttpRoute),
}

/// An SQS event source mapping of the template.
#[derive(Debug, Clone)]
pub struct QueueMapping {
    pub function_name: String,
    pub queue_url: String,
    pub queue_arn: String,
    pub batch_size: i32,
    pub report_batch_item_failures: bool,
}

/// What a rule or schedule target sends the function (`Input`, `InputPath`, or the event).
#[derive(Debug, Clone, PartialEq)]
pub enum TargetInput {
    Event,
    Constant(Value),
    /// A JSONPath of the event, in the `$.a.b` form.
    Path(String),
}

/// An EventBridge rule whose matches reach a function: the emulator matches the pattern and
/// delivers to a queue of the host's, which the host reads and invokes the function from.
#[derive(Debug, Clone)]
pub struct RuleDelivery {
    pub function_name: String,
    pub rule_name: String,
    pub delivery_queue_url: String,
    pub input: TargetInput,
}

/// A schedule with a function target.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub function_name: String,
    /// The function's logical id and event name: how tests and operators fire it by hand.
    pub logical_id: String,
    pub event_name: String,
    pub rule_arn: String,
    /// `Some` for `rate(…)` expressions; `cron(…)` schedules fire only when asked.
    pub every: Option<std::time::Duration>,
    pub expression: String,
    pub input: TargetInput,
}

/// One route of an HTTP API (payload format 2.0).
#[derive(Debug, Clone)]
pub struct HttpRoute {
    pub function_name: String,
    /// An HTTP method or `ANY`.
    pub method: String,
    /// A path with `{name}` and `{name+}` parameters, or `$default`.
    pub path: String,
    pub api_id: String,
    /// The JWT authorizer that guards the route, if any.
    pub authorizer: Option<JwtAuthorizer>,
}

/// A JWT authorizer, as an HTTP API's `JwtConfiguration` sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtAuthorizer {
    pub issuer: String,
    pub audience: Vec<String>,
    /// Where its signing keys are: a Cognito user pool's are in the emulator.
    pub jwks_url: String,
}

impl JwtAuthorizer {
    fn new(issuer: String, audience: Vec<String>, moto_endpoint: &str) -> JwtAuthorizer {
        // https://cognito-idp.<region>.amazonaws.com/<pool id> is served by the emulator.
        let cognito_pool = issuer
            .strip_prefix("https://cognito-idp.")
            .and_then(|rest| rest.split_once(".amazonaws.com/"))
            .map(|(_, pool)| pool.to_owned());
        let jwks_url = match cognito_pool {
            Some(pool) => format!("{moto_endpoint}/{pool}/.well-known/jwks.json"),
            None => format!("{issuer}/.well-known/jwks.json"),
        };
        JwtAuthorizer {
            issuer,
            audience,
            jwks_url,
        }
    }
}

/// The stack as built: resources by logical id, outputs, functions and their event sources.
pub struct Stack {
    pub settings: StackSettings,
    pub resources: BTreeMap<String, PhysicalResource>,
    pub outputs: BTreeMap<String, String>,
    pub functions: BTreeMap<String, Arc<DeployedFunction>>,
    pub event_sources: Vec<EventSource>,
}

impl Stack {
    /// What `Ref` of `logical_id` gives: a queue URL, a topic ARN, a function name…
    pub fn reference(&self, logical_id: &str) -> Option<&str> {
        self.resources.get(logical_id).map(|r| r.reference.as_str())
    }

    pub fn attribute(&self, logical_id: &str, attribute: &str) -> Option<&str> {
        self.resources
            .get(logical_id)
            .and_then(|r| r.attributes.get(attribute))
            .map(String::as_str)
    }

    pub fn output(&self, name: &str) -> Option<&str> {
        self.outputs.get(name).map(String::as_str)
    }
}

/// Names every resource of the template, as CloudFormation would before creating any.
struct Plan<'a> {
    template: &'a Template,
    settings: &'a StackSettings,
    resources: BTreeMap<String, PhysicalResource>,
}

impl ResolveContext for Plan<'_> {
    fn reference(&self, name: &str) -> Option<String> {
        match name {
            "AWS::Region" => Some(self.settings.region.clone()),
            "AWS::AccountId" => Some(ACCOUNT_ID.to_owned()),
            "AWS::StackName" => Some(self.settings.stack_name.clone()),
            "AWS::StackId" => Some(format!(
                "arn:aws:cloudformation:{}:{ACCOUNT_ID}:stack/{}/local",
                self.settings.region, self.settings.stack_name
            )),
            "AWS::Partition" => Some("aws".to_owned()),
            "AWS::URLSuffix" => Some("amazonaws.com".to_owned()),
            _ => self
                .settings
                .parameters
                .get(name)
                .cloned()
                .or_else(|| self.resources.get(name).map(|r| r.reference.clone())),
        }
    }

    fn attribute(&self, resource: &str, attribute: &str) -> Result<String, String> {
        let physical = self
            .resources
            .get(resource)
            .ok_or_else(|| format!("Fn::GetAtt {resource}.{attribute}: no resource {resource}"))?;
        physical.attributes.get(attribute).cloned().ok_or_else(|| {
            let known: Vec<&str> = physical.attributes.keys().copied().collect();
            format!(
                "Fn::GetAtt {resource}.{attribute}: the local cloud knows only {known:?} of {}",
                physical.resource_type
            )
        })
    }
}

/// Only parameters and pseudo parameters: what resource names may be built from.
struct NamesOnly<'a>(&'a StackSettings);

impl ResolveContext for NamesOnly<'_> {
    fn reference(&self, name: &str) -> Option<String> {
        match name {
            "AWS::Region" => Some(self.0.region.clone()),
            "AWS::AccountId" => Some(ACCOUNT_ID.to_owned()),
            "AWS::StackName" => Some(self.0.stack_name.clone()),
            "AWS::Partition" => Some("aws".to_owned()),
            _ => self.0.parameters.get(name).cloned(),
        }
    }

    fn attribute(&self, resource: &str, attribute: &str) -> Result<String, String> {
        Err(format!(
            "a resource name cannot depend on {resource}.{attribute}"
        ))
    }
}

impl<'a> Plan<'a> {
    fn new(template: &'a Template, settings: &'a StackSettings) -> Result<Self, LocalCloudError> {
        let mut resources = BTreeMap::new();
        for (logical_id, resource) in template.resources() {
            let resource_type = resource["Type"].as_str().unwrap_or_default();
            let kind = Kind::of(resource_type).ok_or_else(|| {
                LocalCloudError::Template(format!(
                    "{logical_id}: the local cloud does not build {resource_type:?}; extend localcloud/src/stack.rs"
                ))
            })?;
            let physical = physical(settings, logical_id, resource_type, kind, resource)?;
            resources.insert(logical_id.clone(), physical);
        }
        // SAM makes one HTTP API for the HttpApi events that name none.
        let uses_implicit_api = template.resources().any(|(_, r)| {
            r["Properties"]["Events"]
                .as_object()
                .into_iter()
                .flatten()
                .any(|(_, e)| e["Type"] == "HttpApi" && e["Properties"]["ApiId"].is_null())
        });
        // SAM gives each function without a `Role` its own, `<function>Role`, which the
        // template may name (`!GetAtt <function>Role.Arn`).
        let implicit_roles: Vec<String> = template
            .resources()
            .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
            .filter(|(_, r)| r["Properties"]["Role"].is_null())
            .map(|(id, _)| format!("{id}Role"))
            .filter(|role| !resources.contains_key(role))
            .collect();
        for role in implicit_roles {
            let arn = format!(
                "arn:aws:iam::{ACCOUNT_ID}:role/{}-{role}",
                settings.stack_name
            );
            resources.insert(
                role.clone(),
                PhysicalResource {
                    resource_type: "AWS::IAM::Role".to_owned(),
                    kind: Kind::NotEmulated,
                    reference: format!("{}-{role}", settings.stack_name),
                    attributes: BTreeMap::from([("Arn", arn)]),
                },
            );
        }
        if uses_implicit_api && !resources.contains_key(IMPLICIT_HTTP_API) {
            let implicit = serde_json::json!({"Type": "AWS::Serverless::HttpApi"});
            let physical = physical(
                settings,
                IMPLICIT_HTTP_API,
                "AWS::Serverless::HttpApi",
                Kind::HttpApi,
                &implicit,
            )?;
            resources.insert(IMPLICIT_HTTP_API.to_owned(), physical);
        }
        Ok(Plan {
            template,
            settings,
            resources,
        })
    }

    /// The resource's properties with every intrinsic resolved.
    fn properties(&self, logical_id: &str) -> Result<Value, LocalCloudError> {
        let resource = &self.template.document["Resources"][logical_id];
        resolve(&resource["Properties"], self, logical_id)
    }
}

fn physical(
    settings: &StackSettings,
    logical_id: &str,
    resource_type: &str,
    kind: Kind,
    resource: &Value,
) -> Result<PhysicalResource, LocalCloudError> {
    let region = &settings.region;
    let explicit_name = |property: &str| -> Result<Option<String>, LocalCloudError> {
        match resource["Properties"].get(property) {
            None => Ok(None),
            Some(value) => {
                let at = format!("{logical_id}.Properties.{property}");
                match resolve(value, &NamesOnly(settings), &at)? {
                    Value::String(name) => Ok(Some(name)),
                    other => Err(LocalCloudError::Template(format!(
                        "{at}: expected a name, got {other}"
                    ))),
                }
            }
        }
    };
    let generated = |max: usize| {
        let mut name = format!("{}-{logical_id}", settings.stack_name);
        name.truncate(max);
        name
    };
    let mut attributes = BTreeMap::new();
    let reference = match kind {
        Kind::Queue => {
            let name = explicit_name("QueueName")?.unwrap_or_else(|| {
                let fifo = resource["Properties"]["FifoQueue"].as_bool() == Some(true);
                if fifo {
                    format!("{}.fifo", generated(75))
                } else {
                    generated(80)
                }
            });
            let url = format!("{}/{ACCOUNT_ID}/{name}", settings.moto_endpoint);
            attributes.insert("Arn", format!("arn:aws:sqs:{region}:{ACCOUNT_ID}:{name}"));
            attributes.insert("QueueName", name);
            attributes.insert("QueueUrl", url.clone());
            url
        }
        Kind::Topic => {
            let name = explicit_name("TopicName")?.unwrap_or_else(|| generated(256));
            let arn = format!("arn:aws:sns:{region}:{ACCOUNT_ID}:{name}");
            attributes.insert("TopicArn", arn.clone());
            attributes.insert("TopicName", name);
            arn
        }
        Kind::Subscription => format!("arn:aws:sns:{region}:{ACCOUNT_ID}:{logical_id}:local"),
        Kind::Table => {
            let name = explicit_name("TableName")?.unwrap_or_else(|| generated(255));
            attributes.insert(
                "Arn",
                format!("arn:aws:dynamodb:{region}:{ACCOUNT_ID}:table/{name}"),
            );
            name
        }
        Kind::Function => {
            let name = explicit_name("FunctionName")?.unwrap_or_else(|| generated(64));
            attributes.insert(
                "Arn",
                format!("arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{name}"),
            );
            name
        }
        Kind::StateMachine => {
            let name = explicit_name("Name")?.unwrap_or_else(|| generated(80));
            let arn = format!("arn:aws:states:{region}:{ACCOUNT_ID}:stateMachine:{name}");
            attributes.insert("Arn", arn.clone());
            attributes.insert("Name", name);
            arn
        }
        Kind::EventBus => {
            let name = explicit_name("Name")?.unwrap_or_else(|| generated(256));
            let arn = format!("arn:aws:events:{region}:{ACCOUNT_ID}:event-bus/{name}");
            attributes.insert("Arn", arn);
            attributes.insert("Name", name.clone());
            name
        }
        Kind::HttpApi => {
            let api_id = local_api_id(logical_id);
            let endpoint = settings
                .api_endpoints
                .get(&api_id)
                .cloned()
                .unwrap_or_else(|| format!("{}/_api/{api_id}", settings.http_endpoint));
            attributes.insert("ApiEndpoint", endpoint);
            api_id
        }
        Kind::Secret => {
            let name = explicit_name("Name")?.unwrap_or_else(|| generated(256));
            attributes.insert("Id", name.clone());
            name
        }
        Kind::NotEmulated => {
            let name = generated(256);
            let service = resource_type
                .split("::")
                .nth(1)
                .unwrap_or("local")
                .to_lowercase();
            attributes.insert(
                "Arn",
                format!("arn:aws:{service}:{region}:{ACCOUNT_ID}:{name}"),
            );
            if resource_type == "AWS::KMS::Key" {
                attributes.insert("KeyId", name.clone());
            }
            name
        }
    };
    Ok(PhysicalResource {
        resource_type: resource_type.to_owned(),
        kind,
        reference,
        attributes,
    })
}

/// The AWS clients the build needs, all pointed at the emulator.
struct Clients {
    sqs: aws_sdk_sqs::Client,
    sns: aws_sdk_sns::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    sfn: aws_sdk_sfn::Client,
    events: aws_sdk_eventbridge::Client,
    secrets: aws_sdk_secretsmanager::Client,
}

/// Builds the stack: resolves the whole template first (so a wiring mistake fails before
/// anything is created), then creates the resources on the emulator.
pub async fn deploy(
    template: &Template,
    settings: StackSettings,
    sdk_config: &SdkConfig,
    registrations: &[Registration],
) -> Result<Stack, LocalCloudError> {
    let plan = Plan::new(template, &settings)?;
    let mut properties = BTreeMap::new();
    for logical_id in plan.resources.keys() {
        properties.insert(logical_id.clone(), plan.properties(logical_id)?);
    }
    let globals = resolve(
        &template.document["Globals"]["Function"],
        &plan,
        "Globals.Function",
    )?;
    let of_kind = |kind: Kind| {
        plan.resources
            .iter()
            .filter(move |(_, r)| r.kind == kind)
            .map(|(id, r)| (id.as_str(), r, &properties[id]))
    };

    let clients = Clients {
        sqs: aws_sdk_sqs::Client::new(sdk_config),
        sns: aws_sdk_sns::Client::new(sdk_config),
        dynamodb: aws_sdk_dynamodb::Client::new(sdk_config),
        sfn: aws_sdk_sfn::Client::new(sdk_config),
        events: aws_sdk_eventbridge::Client::new(sdk_config),
        secrets: aws_sdk_secretsmanager::Client::new(sdk_config),
    };

    // State machine definitions and function wiring are checked before anything is created.
    let mut definitions = Vec::new();
    for (id, physical, props) in of_kind(Kind::StateMachine) {
        definitions.push((id, physical, state_machine_definition(template, id, props)?));
    }
    let mut functions = BTreeMap::new();
    let mut planned_sources = Vec::new();
    for (id, physical, props) in of_kind(Kind::Function) {
        let function = function(
            &plan,
            sdk_config,
            registrations,
            (id, physical, props),
            &globals,
        )?;
        planned_sources.extend(function_events(&plan, id, &function.name, props)?);
        functions.insert(function.name.clone(), Arc::new(function));
    }

    for (id, physical, _) in of_kind(Kind::EventBus) {
        clients
            .events
            .create_event_bus()
            .name(&physical.reference)
            .send()
            .await
            .map_err(|e| LocalCloudError::build(id, sdk_error(e)))?;
    }
    for (id, physical, props) in of_kind(Kind::Topic) {
        create_topic(&clients, id, physical, props).await?;
    }
    for (id, physical, props) in of_kind(Kind::Queue) {
        create_queue(&clients, id, physical, props).await?;
    }
    // Redrive policies name other queues, so they are set once every queue exists.
    for (id, physical, props) in of_kind(Kind::Queue) {
        set_redrive_policy(&clients, id, physical, props).await?;
    }
    for (id, _, props) in of_kind(Kind::Subscription) {
        subscribe(&clients, id, props).await?;
    }
    for (id, physical, props) in of_kind(Kind::Table) {
        create_table(&clients, id, physical, props).await?;
    }
    for (id, physical, props) in of_kind(Kind::Secret) {
        create_secret(&clients, id, physical, props).await?;
    }
    for (id, physical, definition) in definitions {
        let props = &properties[id];
        clients
            .sfn
            .create_state_machine()
            .name(&physical.attributes["Name"])
            .definition(definition)
            .role_arn(format!(
                "arn:aws:iam::{ACCOUNT_ID}:role/{}-{id}Role",
                settings.stack_name
            ))
            .r#type(
                props["Type"]
                    .as_str()
                    .unwrap_or("STANDARD")
                    .parse()
                    .map_err(|e| LocalCloudError::build(id, e))?,
            )
            .send()
            .await
            .map_err(|e| LocalCloudError::build(id, sdk_error(e)))?;
    }

    let mut outputs = BTreeMap::new();
    if let Some(declared) = template.document["Outputs"].as_object() {
        for (name, output) in declared {
            let value = resolve(&output["Value"], &plan, &format!("Outputs.{name}"))?;
            outputs.insert(name.clone(), value_string(&value));
        }
    }
    let mut event_sources = Vec::new();
    for planned in planned_sources {
        event_sources.push(match planned {
            PlannedSource::Ready(source) => source,
            PlannedSource::Rule(rule) => {
                EventSource::Rule(create_rule_delivery(&clients, &settings, rule).await?)
            }
        });
    }
    let resources = plan.resources;
    Ok(Stack {
        settings,
        resources,
        outputs,
        functions,
        event_sources,
    })
}

fn value_string(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn state_machine_definition(
    template: &Template,
    id: &str,
    props: &Value,
) -> Result<String, LocalCloudError> {
    let raw = match (&props["DefinitionUri"], &props["Definition"]) {
        (Value::String(uri), Value::Null) => {
            let path = template.base_dir.join(uri);
            std::fs::read_to_string(&path).map_err(|e| {
                LocalCloudError::Template(format!(
                    "{id}.DefinitionUri: cannot read {}: {e}",
                    path.display()
                ))
            })?
        }
        (Value::Null, definition @ Value::Object(_)) => definition.to_string(),
        _ => {
            return Err(LocalCloudError::Template(format!(
                "{id}: give DefinitionUri (a local file) or an inline Definition"
            )));
        }
    };
    let substitutions = props["DefinitionSubstitutions"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let at = format!("{id}.DefinitionUri");
    let definition = substitute(&raw, &at, |name| {
        substitutions.get(name).map(value_string).ok_or_else(|| {
            LocalCloudError::Template(format!(
                "{at}: the definition uses ${{{name}}}, which DefinitionSubstitutions does not give"
            ))
        })
    })?;
    serde_json::from_str::<Value>(&definition).map_err(|e| {
        LocalCloudError::Template(format!("{at}: not valid JSON after substitution: {e}"))
    })?;
    Ok(definition)
}

/// The function's own credentials, as its execution role would give it: the access key names
/// the function (`LOCAL<logical id>`), so the emulator's call log (launcher extension 13)
/// tells which function made each call.
fn signed_as(sdk_config: &SdkConfig, logical_id: &str) -> SdkConfig {
    let credentials = aws_credential_types::Credentials::new(
        format!("{FUNCTION_ACCESS_KEY_PREFIX}{logical_id}"),
        "localcloud",
        None,
        None,
        "localcloud-function",
    );
    sdk_config
        .to_builder()
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(credentials),
        )
        .build()
}

/// How a function's access key starts; the rest is its logical id.
pub const FUNCTION_ACCESS_KEY_PREFIX: &str = "LOCAL";

fn function(
    plan: &Plan<'_>,
    sdk_config: &SdkConfig,
    registrations: &[Registration],
    (id, physical, props): (&str, &PhysicalResource, &Value),
    globals: &Value,
) -> Result<DeployedFunction, LocalCloudError> {
    let settings = plan.settings;
    let raw = &plan.template.document["Resources"][id];
    let binary = raw["Metadata"]["BuildProperties"]["Binary"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| {
            props["CodeUri"]
                .as_str()
                .and_then(|uri| std::path::Path::new(uri).file_name())
                .map(|name| name.to_string_lossy().into_owned())
        })
        .ok_or_else(|| {
            LocalCloudError::Template(format!(
                "{id}: name the crate in Metadata.BuildProperties.Binary"
            ))
        })?;
    let registration = registrations.iter().find(|r| r.binary == binary).ok_or_else(|| {
        LocalCloudError::Template(format!(
            "{id} builds binary {binary:?}, which the local host does not know; register it in localcloud/src/functions.rs"
        ))
    })?;

    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for source in [
        &globals["Environment"]["Variables"],
        &props["Environment"]["Variables"],
    ] {
        for (name, value) in source.as_object().into_iter().flatten() {
            env.insert(name.clone(), value_string(value));
        }
    }
    let name = physical.reference.clone();
    // What Lambda itself sets in every function's environment.
    env.insert("AWS_REGION".into(), settings.region.clone());
    env.insert("AWS_DEFAULT_REGION".into(), settings.region.clone());
    env.insert("AWS_LAMBDA_FUNCTION_NAME".into(), name.clone());
    let timeout_seconds = props["Timeout"]
        .as_u64()
        .or_else(|| globals["Timeout"].as_u64())
        .unwrap_or(3);
    let function_config = signed_as(sdk_config, id);
    let handler = match (registration.build)(&function_config, &FunctionEnv::from_vars(env)) {
        Ok(handler) => handler,
        Err(error) => {
            tracing::error!(function = %id, %error, "the function's cold start fails; every invocation will fail");
            Arc::new(FailedInit(error))
        }
    };
    let dead_letter_queue_url = match &props["DeadLetterQueue"] {
        Value::Null => None,
        dlq if dlq["Type"] == "SQS" => {
            let arn = dlq["TargetArn"].as_str().unwrap_or_default();
            let queue = plan
                .resources
                .values()
                .find(|r| r.kind == Kind::Queue && r.attributes["Arn"] == arn)
                .ok_or_else(|| {
                    LocalCloudError::Template(format!(
                        "{id}.DeadLetterQueue: {arn:?} is not a queue of this stack"
                    ))
                })?;
            Some(queue.reference.clone())
        }
        other => {
            return Err(LocalCloudError::Template(format!(
                "{id}.DeadLetterQueue: the local cloud emulates SQS dead-letter queues only, got {other}"
            )));
        }
    };
    Ok(DeployedFunction {
        logical_id: id.to_owned(),
        arn: physical.attributes["Arn"].clone(),
        name,
        timeout_seconds,
        dead_letter_queue_url,
        handler,
    })
}

/// An event source as planned: ready, or a rule still to be created on the emulator.
enum PlannedSource {
    Ready(EventSource),
    Rule(PlannedRule),
}

struct PlannedRule {
    function_name: String,
    /// `<function logical id>-<event name>`: names the rule and its delivery queue.
    name: String,
    at: String,
    event_bus: Option<String>,
    pattern: Value,
    input: TargetInput,
    input_transformer: Value,
}

fn target_input(props: &Value, at: &str) -> Result<TargetInput, LocalCloudError> {
    match (&props["Input"], &props["InputPath"]) {
        (Value::Null, Value::Null) => Ok(TargetInput::Event),
        (Value::String(input), Value::Null) => serde_json::from_str(input)
            .map(TargetInput::Constant)
            .map_err(|e| LocalCloudError::Template(format!("{at}.Input is not JSON: {e}"))),
        (Value::Null, Value::String(path)) if path.starts_with('$') => {
            Ok(TargetInput::Path(path.clone()))
        }
        _ => Err(LocalCloudError::Template(format!(
            "{at}: give Input (a JSON string) or InputPath (a $. path), not both"
        ))),
    }
}

/// `rate(5 minutes)` as a duration; `None` for `cron(…)`; an error for anything else.
fn schedule_period(
    expression: &str,
    at: &str,
) -> Result<Option<std::time::Duration>, LocalCloudError> {
    if expression.starts_with("cron(") && expression.ends_with(')') {
        return Ok(None);
    }
    let invalid = || {
        LocalCloudError::Template(format!(
            "{at}: {expression:?} is neither rate(<n> <unit>) nor cron(…)"
        ))
    };
    let inner = expression
        .strip_prefix("rate(")
        .and_then(|rest| rest.strip_suffix(')'))
        .ok_or_else(invalid)?;
    let (count, unit) = inner.trim().split_once(' ').ok_or_else(invalid)?;
    let count: u64 = count.parse().map_err(|_| invalid())?;
    let seconds = match unit.trim() {
        "minute" | "minutes" => 60,
        "hour" | "hours" => 3600,
        "day" | "days" => 86_400,
        _ => return Err(invalid()),
    };
    if count == 0 {
        return Err(invalid());
    }
    Ok(Some(std::time::Duration::from_secs(count * seconds)))
}

/// The authorizer of a route: its own `Auth.Authorizer`, else its API's `DefaultAuthorizer`;
/// `NONE` for none. Only JWT authorizers are emulated.
fn route_authorizer(
    plan: &Plan<'_>,
    api_logical_id: &str,
    event_props: &Value,
    at: &str,
) -> Result<Option<JwtAuthorizer>, LocalCloudError> {
    let auth = match plan.template.document["Resources"].get(api_logical_id) {
        Some(_) => plan.properties(api_logical_id)?["Auth"].clone(),
        None => Value::Null,
    };
    let name = match (
        &event_props["Auth"]["Authorizer"],
        &auth["DefaultAuthorizer"],
    ) {
        (Value::String(name), _) | (Value::Null, Value::String(name)) => name.clone(),
        _ => return Ok(None),
    };
    // IAM authorization has no local stand-in: such routes are open here.
    if name == "NONE" || name == "AWS_IAM" {
        return Ok(None);
    }
    let config = &auth["Authorizers"][&name]["JwtConfiguration"];
    let unsupported = || {
        LocalCloudError::Template(format!(
            "{at}: authorizer {name:?} is not a JWT authorizer of {api_logical_id} with an issuer and an audience; the local cloud emulates only those"
        ))
    };
    let issuer = config["issuer"].as_str().ok_or_else(unsupported)?;
    let audience: Vec<String> = match &config["audience"] {
        Value::Array(list) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Value::String(one) => one.split(',').map(|a| a.trim().to_owned()).collect(),
        _ => return Err(unsupported()),
    };
    if audience.iter().all(String::is_empty) {
        return Err(unsupported());
    }
    Ok(Some(JwtAuthorizer::new(
        issuer.trim_end_matches('/').to_owned(),
        audience,
        &plan.settings.moto_endpoint,
    )))
}

fn function_events(
    plan: &Plan<'_>,
    id: &str,
    function_name: &str,
    props: &Value,
) -> Result<Vec<PlannedSource>, LocalCloudError> {
    let mut sources = Vec::new();
    for (event_name, event) in props["Events"].as_object().into_iter().flatten() {
        let at = format!("{id}.Events.{event_name}");
        let event_props = &event["Properties"];
        let disabled = event_props["Enabled"].as_bool() == Some(false)
            || event_props["State"].as_str() == Some("DISABLED");
        if disabled {
            continue;
        }
        match event["Type"].as_str().unwrap_or_default() {
            "SQS" => {
                let queue_arn = event_props["Queue"].as_str().unwrap_or_default();
                let queue = plan
                    .resources
                    .values()
                    .find(|r| r.kind == Kind::Queue && r.attributes["Arn"] == queue_arn)
                    .ok_or_else(|| {
                        LocalCloudError::Template(format!(
                            "{at}: Queue {queue_arn:?} is not a queue of this stack"
                        ))
                    })?;
                let report_batch_item_failures = event_props["FunctionResponseTypes"]
                    .as_array()
                    .is_some_and(|types| types.iter().any(|t| t == "ReportBatchItemFailures"));
                sources.push(PlannedSource::Ready(EventSource::Queue(QueueMapping {
                    function_name: function_name.to_owned(),
                    queue_url: queue.reference.clone(),
                    queue_arn: queue_arn.to_owned(),
                    batch_size: event_props["BatchSize"].as_i64().unwrap_or(10).clamp(1, 10) as i32,
                    report_batch_item_failures,
                })));
            }
            "EventBridgeRule" | "CloudWatchEvent" => {
                let pattern = event_props["Pattern"].clone();
                if !pattern.is_object() {
                    return Err(LocalCloudError::Template(format!(
                        "{at}: the rule needs a Pattern"
                    )));
                }
                let length = pattern.to_string().chars().count();
                if length > EVENT_PATTERN_MAX_CHARS {
                    return Err(LocalCloudError::Template(format!(
                        "{at}: the event pattern is {length} characters; EventBridge takes at \
                         most {EVENT_PATTERN_MAX_CHARS} (split the rule)"
                    )));
                }
                sources.push(PlannedSource::Rule(PlannedRule {
                    function_name: function_name.to_owned(),
                    name: format!("{id}-{event_name}"),
                    event_bus: event_props["EventBusName"].as_str().map(str::to_owned),
                    pattern,
                    input: target_input(event_props, &at)?,
                    input_transformer: event_props["InputTransformer"].clone(),
                    at,
                }));
            }
            kind @ ("Schedule" | "ScheduleV2") => {
                let key = if kind == "Schedule" {
                    "Schedule"
                } else {
                    "ScheduleExpression"
                };
                let expression = event_props[key].as_str().ok_or_else(|| {
                    LocalCloudError::Template(format!("{at}: the schedule needs {key}"))
                })?;
                sources.push(PlannedSource::Ready(EventSource::Schedule(Schedule {
                    function_name: function_name.to_owned(),
                    logical_id: id.to_owned(),
                    event_name: event_name.clone(),
                    rule_arn: format!(
                        "arn:aws:events:{}:{ACCOUNT_ID}:rule/{}-{id}-{event_name}",
                        plan.settings.region, plan.settings.stack_name
                    ),
                    every: schedule_period(expression, &at)?,
                    expression: expression.to_owned(),
                    input: target_input(event_props, &at)?,
                })));
            }
            "HttpApi" => {
                let (api_logical_id, api_id) = match &event_props["ApiId"] {
                    Value::Null => (
                        IMPLICIT_HTTP_API.to_owned(),
                        plan.resources[IMPLICIT_HTTP_API].reference.clone(),
                    ),
                    Value::String(api_id) => plan
                        .resources
                        .iter()
                        .find(|(_, r)| r.kind == Kind::HttpApi && r.reference == *api_id)
                        .map(|(logical_id, r)| (logical_id.clone(), r.reference.clone()))
                        .ok_or_else(|| {
                            LocalCloudError::Template(format!(
                                "{at}: ApiId {api_id:?} is not an HTTP API of this stack"
                            ))
                        })?,
                    other => {
                        return Err(LocalCloudError::Template(format!(
                            "{at}: ApiId must be a Ref to an AWS::Serverless::HttpApi, got {other}"
                        )));
                    }
                };
                let (method, path) = match (&event_props["Method"], &event_props["Path"]) {
                    (Value::Null, Value::Null) => ("ANY".to_owned(), "$default".to_owned()),
                    (Value::String(method), Value::String(path)) if path.starts_with('/') => {
                        (method.to_uppercase(), path.clone())
                    }
                    _ => {
                        return Err(LocalCloudError::Template(format!(
                            "{at}: give Method and a Path starting with /, or neither for $default"
                        )));
                    }
                };
                let authorizer = route_authorizer(plan, &api_logical_id, event_props, &at)?;
                sources.push(PlannedSource::Ready(EventSource::HttpRoute(HttpRoute {
                    function_name: function_name.to_owned(),
                    method,
                    path,
                    api_id,
                    authorizer,
                })));
            }
            other => {
                return Err(LocalCloudError::Template(format!(
                    "{at}: the local cloud does not emulate {other:?} events; extend localcloud/src/stack.rs"
                )));
            }
        }
    }
    Ok(sources)
}

/// Creates the rule on the emulator, which matches events against its pattern, with a queue
/// of the host's as its target.
async fn create_rule_delivery(
    clients: &Clients,
    settings: &StackSettings,
    rule: PlannedRule,
) -> Result<RuleDelivery, LocalCloudError> {
    let failed = |e: String| LocalCloudError::build(&rule.at, e);
    let mut rule_name = format!("{}-{}", settings.stack_name, rule.name);
    rule_name.truncate(64);
    let mut queue_name = format!("localcloud-{rule_name}");
    queue_name.truncate(80);
    let queue_url = clients
        .sqs
        .create_queue()
        .queue_name(&queue_name)
        .send()
        .await
        .map_err(|e| failed(sdk_error(e)))?
        .queue_url
        .ok_or_else(|| failed("no queue URL".into()))?;
    clients
        .events
        .put_rule()
        .name(&rule_name)
        .set_event_bus_name(rule.event_bus.clone())
        .event_pattern(rule.pattern.to_string())
        .send()
        .await
        .map_err(|e| failed(sdk_error(e)))?;
    let mut target = aws_sdk_eventbridge::types::Target::builder()
        .id("function")
        .arn(format!(
            "arn:aws:sqs:{}:{ACCOUNT_ID}:{queue_name}",
            settings.region
        ));
    if let Some(transformer) = rule.input_transformer.as_object() {
        let paths: std::collections::HashMap<String, String> = transformer
            .get("InputPathsMap")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), value_string(v)))
            .collect();
        target = target.input_transformer(
            aws_sdk_eventbridge::types::InputTransformer::builder()
                .set_input_paths_map(Some(paths))
                .input_template(value_string(&transformer["InputTemplate"]))
                .build()
                .map_err(|e| failed(e.to_string()))?,
        );
    }
    clients
        .events
        .put_targets()
        .rule(&rule_name)
        .set_event_bus_name(rule.event_bus)
        .targets(target.build().map_err(|e| failed(e.to_string()))?)
        .send()
        .await
        .map_err(|e| failed(sdk_error(e)))?;
    Ok(RuleDelivery {
        function_name: rule.function_name,
        rule_name,
        delivery_queue_url: queue_url,
        input: rule.input,
    })
}

/// Properties given as numbers or strings in templates, as SQS and SNS want them: strings.
fn attribute_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::Object(_) | Value::Array(_) => Some(value.to_string()),
        other => Some(value_string(other)),
    }
}

/// A secret with its `SecretString`, or a value made by `GenerateSecretString`'s rules.
async fn create_secret(
    clients: &Clients,
    id: &str,
    physical: &PhysicalResource,
    props: &Value,
) -> Result<(), LocalCloudError> {
    let value = match (&props["SecretString"], &props["GenerateSecretString"]) {
        (Value::String(value), Value::Null) => value.clone(),
        (Value::Null, rules @ Value::Object(_)) => {
            if !rules["SecretStringTemplate"].is_null() {
                return Err(LocalCloudError::Template(format!(
                    "{id}.Properties.GenerateSecretString: the local cloud does not build SecretStringTemplate secrets"
                )));
            }
            let flag = |name: &str| rules[name].as_bool();
            clients
                .secrets
                .get_random_password()
                .set_password_length(rules["PasswordLength"].as_i64())
                .set_exclude_characters(rules["ExcludeCharacters"].as_str().map(str::to_owned))
                .set_exclude_numbers(flag("ExcludeNumbers"))
                .set_exclude_punctuation(flag("ExcludePunctuation"))
                .set_exclude_uppercase(flag("ExcludeUppercase"))
                .set_exclude_lowercase(flag("ExcludeLowercase"))
                .set_include_space(flag("IncludeSpace"))
                .set_require_each_included_type(flag("RequireEachIncludedType"))
                .send()
                .await
                .map_err(|e| LocalCloudError::build(id, sdk_error(e)))?
                .random_password
                .unwrap_or_default()
        }
        _ => {
            return Err(LocalCloudError::Template(format!(
                "{id}.Properties: a secret needs exactly one of SecretString and GenerateSecretString"
            )));
        }
    };
    clients
        .secrets
        .create_secret()
        .name(&physical.reference)
        .set_description(props["Description"].as_str().map(str::to_owned))
        .secret_string(value)
        .send()
        .await
        .map_err(|e| LocalCloudError::build(id, sdk_error(e)))?;
    Ok(())
}

async fn create_topic(
    clients: &Clients,
    id: &str,
    physical: &PhysicalResource,
    props: &Value,
) -> Result<(), LocalCloudError> {
    let mut request = clients
        .sns
        .create_topic()
        .name(&physical.attributes["TopicName"]);
    for attribute in ["DisplayName", "FifoTopic", "ContentBasedDeduplication"] {
        if let Some(value) = attribute_text(&props[attribute]) {
            request = request.attributes(attribute, value);
        }
    }
    request
        .send()
        .await
        .map_err(|e| LocalCloudError::build(id, sdk_error(e)))?;
    for (i, subscription) in props["Subscription"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let mut inline = subscription.clone();
        inline["TopicArn"] = Value::String(physical.reference.clone());
        subscribe(clients, &format!("{id}.Subscription[{i}]"), &inline).await?;
    }
    Ok(())
}

async fn create_queue(
    clients: &Clients,
    id: &str,
    physical: &PhysicalResource,
    props: &Value,
) -> Result<(), LocalCloudError> {
    let mut request = clients
        .sqs
        .create_queue()
        .queue_name(&physical.attributes["QueueName"]);
    for attribute in [
        "VisibilityTimeout",
        "MessageRetentionPeriod",
        "DelaySeconds",
        "ReceiveMessageWaitTimeSeconds",
        "MaximumMessageSize",
        "FifoQueue",
        "ContentBasedDeduplication",
    ] {
        if let Some(value) = attribute_text(&props[attribute]) {
            request = request.attributes(
                aws_sdk_sqs::types::QueueAttributeName::from(attribute),
                value,
            );
        }
    }
    let created = request
        .send()
        .await
        .map_err(|e| LocalCloudError::build(id, sdk_error(e)))?;
    // References were resolved with the planned URL; the emulator must agree with it.
    if created.queue_url.as_deref() != Some(physical.reference.as_str()) {
        return Err(LocalCloudError::build(
            id,
            format!(
                "the emulator named the queue {:?}, not {:?} as planned",
                created.queue_url, physical.reference
            ),
        ));
    }
    Ok(())
}

async fn set_redrive_policy(
    clients: &Clients,
    id: &str,
    physical: &PhysicalResource,
    props: &Value,
) -> Result<(), LocalCloudError> {
    let Some(policy) = attribute_text(&props["RedrivePolicy"]) else {
        return Ok(());
    };
    clients
        .sqs
        .set_queue_attributes()
        .queue_url(&physical.reference)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
            policy,
        )
        .send()
        .await
        .map_err(|e| LocalCloudError::build(id, sdk_error(e)))?;
    Ok(())
}

async fn subscribe(clients: &Clients, id: &str, props: &Value) -> Result<(), LocalCloudError> {
    let mut request = clients
        .sns
        .subscribe()
        .topic_arn(value_string(&props["TopicArn"]))
        .protocol(value_string(&props["Protocol"]))
        .endpoint(value_string(&props["Endpoint"]));
    for attribute in ["RawMessageDelivery", "FilterPolicy", "FilterPolicyScope"] {
        if let Some(value) = attribute_text(&props[attribute]) {
            request = request.attributes(attribute, value);
        }
    }
    request
        .send()
        .await
        .map_err(|e| LocalCloudError::build(id, sdk_error(e)))?;
    Ok(())
}

async fn create_table(
    clients: &Clients,
    id: &str,
    physical: &PhysicalResource,
    props: &Value,
) -> Result<(), LocalCloudError> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, Projection,
        ProjectionType, TimeToLiveSpecification,
    };
    let build = |e: aws_sdk_dynamodb::error::BuildError| LocalCloudError::build(id, e);
    let key_schema = |keys: &Value| -> Result<Vec<KeySchemaElement>, LocalCloudError> {
        keys.as_array()
            .into_iter()
            .flatten()
            .map(|key| {
                KeySchemaElement::builder()
                    .attribute_name(value_string(&key["AttributeName"]))
                    .key_type(value_string(&key["KeyType"]).as_str().into())
                    .build()
                    .map_err(build)
            })
            .collect()
    };
    let mut request = clients
        .dynamodb
        .create_table()
        .table_name(&physical.reference)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(key_schema(&props["KeySchema"])?));
    for definition in props["AttributeDefinitions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(value_string(&definition["AttributeName"]))
                .attribute_type(value_string(&definition["AttributeType"]).as_str().into())
                .build()
                .map_err(build)?,
        );
    }
    for index in props["GlobalSecondaryIndexes"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let projection = index["Projection"]["ProjectionType"]
            .as_str()
            .unwrap_or("ALL");
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(value_string(&index["IndexName"]))
                .set_key_schema(Some(key_schema(&index["KeySchema"])?))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(projection))
                        .set_non_key_attributes(
                            index["Projection"]["NonKeyAttributes"]
                                .as_array()
                                .map(|a| a.iter().map(value_string).collect()),
                        )
                        .build(),
                )
                .build()
                .map_err(build)?,
        );
    }
    request
        .send()
        .await
        .map_err(|e| LocalCloudError::build(id, sdk_error(e)))?;
    let ttl = &props["TimeToLiveSpecification"];
    if ttl["Enabled"].as_bool() == Some(true) {
        clients
            .dynamodb
            .update_time_to_live()
            .table_name(&physical.reference)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(value_string(&ttl["AttributeName"]))
                    .build()
                    .map_err(build)?,
            )
            .send()
            .await
            .map_err(|e| LocalCloudError::build(id, sdk_error(e)))?;
    }
    Ok(())
}
