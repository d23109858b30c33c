//! `ConnectionsApiFunction`: discovery connections over the management API.
//!
//! - `POST /connections` with `{"id", "name", "accountId", "roleArn", "externalId",
//!   "regions", "resourceTypes"}`: creates one (409 if the id is taken).
//! - `GET /connections`, `GET /connections/{id}`.
//! - `PUT /connections/{id}`: replaces one (404 if absent); its crawl history stays.
//! - `DELETE /connections/{id}` with `{"reason"}`: submitted as a `CONNECTION_DELETE` action,
//!   so the approval policy decides whether it runs at once or waits for approvers.
//! - `POST /connections/{id}/sync` with optional `{"resourceTypes": [...]}`: crawls now.
//!
//! Input is checked whole before anything is written; errors name the field.

use aws_lambda_events::event::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use chrono::Utc;
use lambda_runtime::LambdaEvent;
use maestro_aws::SdkConfig;
use maestro_aws::approvals::ActionSubmitter;
use maestro_aws::discovery::{DiscoveryRuns, asked_scopes};
use maestro_aws::env::{EnvError, FunctionEnv};
use maestro_aws::http::{
    ApiFailure, answer, body_text, caller_email, path_parameter, problem, route, to_json,
};
use maestro_aws::inventory::DynamoInventory;
use maestro_aws::lambda::LambdaFunction;
use maestro_domain::approvals::action::Action;
use maestro_domain::approvals::workflow::Submission;
use maestro_domain::inventory::connection::{
    Connection, ConnectionInput, ConnectionSource, ResourceType, is_connection_id,
};
use maestro_domain::sso::model::Environment;
use serde::Deserialize;
use serde_json::{Map, Value, json};

pub struct Deps {
    pub inventory: DynamoInventory,
    pub runs: DiscoveryRuns,
    pub actions: ActionSubmitter,
}

type Answer = Result<ApiGatewayV2httpResponse, ApiFailure>;

pub async fn handle(deps: &Deps, event: LambdaEvent<ApiGatewayV2httpRequest>) -> Answer {
    let request = event.payload;
    let (method, path) = route(&request);
    match request.route_key.as_deref() {
        Some("POST /connections") => create(deps, &request).await,
        Some("GET /connections") => list(deps).await,
        Some("GET /connections/{id}") => with_id(&request, |id| get(deps, id)).await,
        Some("PUT /connections/{id}") => with_id(&request, |id| replace(deps, &request, id)).await,
        Some("DELETE /connections/{id}") => {
            with_id(&request, |id| delete(deps, &request, id)).await
        }
        Some("POST /connections/{id}/sync") => {
            with_id(&request, |id| sync(deps, &request, id)).await
        }
        _ => Ok(problem(404, format!("no route {method} {path}"))),
    }
}

async fn with_id<F, Fut>(request: &ApiGatewayV2httpRequest, then: F) -> Answer
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Answer>,
{
    match path_parameter(request, "id") {
        Some(id) if is_connection_id(&id) => then(id).await,
        Some(id) => Ok(problem(
            400,
            format!("{id:?} is not a connection id (lower-case letters, digits and dashes)"),
        )),
        None => Ok(problem(400, "name the connection in the path")),
    }
}

/// The body as a JSON object, or why it is not one.
fn object_body(request: &ApiGatewayV2httpRequest) -> Result<Map<String, Value>, String> {
    let text = body_text(request)?;
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(_) => Err("the body must be a JSON object".to_owned()),
        Err(e) => Err(format!("the body is not JSON: {e}")),
    }
}

fn input_of(fields: Map<String, Value>) -> Result<ConnectionInput, String> {
    serde_json::from_value(Value::Object(fields))
        .map_err(|e| format!("the connection is not valid: {e}"))
}

fn connection_json(connection: &Connection) -> Result<Value, ApiFailure> {
    to_json(connection)
}

async fn create(deps: &Deps, request: &ApiGatewayV2httpRequest) -> Answer {
    let mut fields = match object_body(request) {
        Ok(fields) => fields,
        Err(e) => return Ok(problem(400, e)),
    };
    let id = match fields.remove("id") {
        Some(Value::String(id)) => id,
        Some(_) => return Ok(problem(400, "id: give a string")),
        None => {
            return Ok(problem(
                400,
                "id: name the connection (lower-case letters, digits and dashes)",
            ));
        }
    };
    let input = match input_of(fields) {
        Ok(input) => input,
        Err(e) => return Ok(problem(400, e)),
    };
    let now = Utc::now();
    let connection = match input.validate(&id, ConnectionSource::Manual, now, now) {
        Ok(connection) => connection,
        Err(e) => return Ok(problem(400, e.to_string())),
    };
    Ok(
        match deps.inventory.put_connection(&connection, true).await {
            Ok(true) => answer(201, connection_json(&connection)?),
            Ok(false) => problem(409, format!("connection {id} exists; PUT replaces it")),
            Err(e) => problem(503, format!("the connection was not saved: {e}")),
        },
    )
}

async fn list(deps: &Deps) -> Answer {
    Ok(match deps.inventory.connections().await {
        Ok(connections) => answer(200, json!({ "connections": to_json(&connections)? })),
        Err(e) => problem(503, format!("cannot read the connections: {e}")),
    })
}

async fn get(deps: &Deps, id: String) -> Answer {
    Ok(match deps.inventory.connection(&id).await {
        Ok(Some(connection)) => answer(200, connection_json(&connection)?),
        Ok(None) => problem(404, format!("no connection {id}")),
        Err(e) => problem(503, format!("cannot read the connection: {e}")),
    })
}

async fn replace(deps: &Deps, request: &ApiGatewayV2httpRequest, id: String) -> Answer {
    let fields = match object_body(request) {
        Ok(fields) => fields,
        Err(e) => return Ok(problem(400, e)),
    };
    let input = match input_of(fields) {
        Ok(input) => input,
        Err(e) => return Ok(problem(400, e)),
    };
    let existing = match deps.inventory.connection(&id).await {
        Ok(Some(existing)) => existing,
        Ok(None) => {
            return Ok(problem(
                404,
                format!("no connection {id}; POST creates one"),
            ));
        }
        Err(e) => return Ok(problem(503, format!("cannot read the connection: {e}"))),
    };
    let connection = match input.validate(&id, existing.source, existing.created_at, Utc::now()) {
        Ok(connection) => connection,
        Err(e) => return Ok(problem(400, e.to_string())),
    };
    Ok(
        match deps.inventory.put_connection(&connection, false).await {
            Ok(true) => answer(200, connection_json(&connection)?),
            Ok(false) => problem(404, format!("connection {id} was deleted meanwhile")),
            Err(e) => problem(503, format!("the connection was not saved: {e}")),
        },
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteBody {
    reason: String,
}

async fn delete(deps: &Deps, request: &ApiGatewayV2httpRequest, id: String) -> Answer {
    let Some(requester) = caller_email(request) else {
        return Ok(problem(
            403,
            "deletions are asked by people: sign the request as an IAM Identity Center user",
        ));
    };
    let body: DeleteBody =
        match object_body(request).map(|f| serde_json::from_value(Value::Object(f))) {
            Ok(Ok(body)) => body,
            Ok(Err(e)) => return Ok(problem(400, format!("the body is not {{\"reason\"}}: {e}"))),
            Err(e) => return Ok(problem(400, e)),
        };
    match deps.inventory.connection(&id).await {
        Ok(Some(_)) => {}
        Ok(None) => return Ok(problem(404, format!("no connection {id}"))),
        Err(e) => return Ok(problem(503, format!("cannot read the connection: {e}"))),
    }
    let submission = Submission {
        action: Action::ConnectionDelete { connection_id: id },
        // A connection is an account's whole inventory feed: treated as production.
        environment: Environment::Production,
        reason: body.reason,
    };
    Ok(match deps.actions.submit(requester, submission).await {
        Ok(submitted) => answer(202, to_json(&submitted)?),
        Err(e) => problem(e.status(), e.to_string()),
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SyncBody {
    resource_types: Option<Vec<String>>,
}

async fn sync(deps: &Deps, request: &ApiGatewayV2httpRequest, id: String) -> Answer {
    let body: SyncBody =
        match object_body(request).map(|f| serde_json::from_value(Value::Object(f))) {
            Ok(Ok(body)) => body,
            Ok(Err(e)) => {
                return Ok(problem(
                    400,
                    format!("the body is not {{\"resourceTypes\"}}: {e}"),
                ));
            }
            Err(e) => return Ok(problem(400, e)),
        };
    let only = match body.resource_types {
        None => None,
        Some(names) if names.is_empty() => {
            return Ok(problem(
                400,
                "resourceTypes: name at least one, or leave it out for all",
            ));
        }
        Some(names) => {
            let mut types = Vec::new();
            for name in names {
                match ResourceType::parse(&name) {
                    Some(t) => types.push(t),
                    None => {
                        return Ok(problem(
                            400,
                            format!("resourceTypes: {name:?} is not a resource type"),
                        ));
                    }
                }
            }
            Some(types)
        }
    };
    let connection = match deps.inventory.connection(&id).await {
        Ok(Some(connection)) => connection,
        Ok(None) => return Ok(problem(404, format!("no connection {id}"))),
        Err(e) => return Ok(problem(503, format!("cannot read the connection: {e}"))),
    };
    let scopes = asked_scopes(&connection, only.as_deref());
    if scopes.is_empty() {
        return Ok(problem(
            409,
            format!("connection {id} crawls none of those resource types"),
        ));
    }
    Ok(
        match deps
            .runs
            .start(&deps.inventory, scopes, true, Utc::now())
            .await
        {
            Ok(runs) => answer(202, json!({ "runs": to_json(&runs)? })),
            Err(e) => problem(503, format!("the sync did not start: {e}")),
        },
    )
}

impl LambdaFunction for Deps {
    type Event = ApiGatewayV2httpRequest;
    type Response = ApiGatewayV2httpResponse;
    type Error = ApiFailure;

    /// See `ActionSubmitter::from_parts` for the approval variables.
    fn from_parts(config: &SdkConfig, env: &FunctionEnv) -> Result<Self, EnvError> {
        let mut vars = env.reader();
        let table = vars.required("INVENTORY_TABLE");
        let runs = DiscoveryRuns::from_vars(config, &mut vars);
        vars.finish()?;
        Ok(Deps {
            inventory: DynamoInventory::new(config, table),
            runs,
            actions: ActionSubmitter::from_parts(config, env)?,
        })
    }

    async fn handle(&self, event: LambdaEvent<ApiGatewayV2httpRequest>) -> Answer {
        handle(self, event).await
    }
}
