//! `ConnectionsApiFunction`: discovery connections over the management API.
//!
//! - `POST /connections` with `{"id", "name", "accountId", "roleArn", "externalId",
//!   "regions", "resourceTypes", "access"}`: creates one (409 if the id is taken).
//! - `GET /connections`, `GET /connections/{id}` (with each scope's last crawl: when, how it
//!   ended, and how many crawls in a row failed).
//! - `PUT /connections/{id}`: replaces one (404 if absent); its crawl history stays.
//! - `DELETE /connections/{id}` with `{"reason"}`: submitted as a `CONNECTION_DELETE` action,
//!   so the approval policy decides whether it runs at once or waits for approvers.
//! - `POST /connections/{id}/sync` with optional `{"resourceTypes": [...]}`: crawls now.
//!
//! Input is checked whole before anything is written; errors name the field.
//!
//! Every connection names the teams that may read, change (write) or administer (admin) it
//! in `access`; Maestro's operators hold admin on all (`maestro_domain::access`). A caller
//! who may not read a connection is told it does not exist. Only operators create
//! connections, and a connection's account never changes, since a connection opens its
//! account's inventory to the teams it names.

use aws_lambda_events::event::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use chrono::Utc;
use lambda_runtime::LambdaEvent;
use maestro_aws::SdkConfig;
use maestro_aws::approvals::ActionSubmitter;
use maestro_aws::discovery::{DiscoveryRuns, asked_scopes};
use maestro_aws::env::{EnvError, FunctionEnv};
use maestro_aws::http::{
    ApiFailure, Teams, answer, body_text, path_parameter, problem, route, to_json,
};
use maestro_aws::inventory::DynamoInventory;
use maestro_aws::lambda::LambdaFunction;
use maestro_domain::access::{Access, Caller, checked_grants};
use maestro_domain::approvals::action::Action;
use maestro_domain::approvals::submit::Submission;
use maestro_domain::inventory::connection::{
    Connection, ConnectionInput, ConnectionSource, ResourceType, is_connection_id,
};
use maestro_domain::inventory::health::CrawlRecords;
use serde::Deserialize;
use serde_json::{Map, Value, json};

pub struct Deps {
    pub inventory: DynamoInventory,
    pub runs: DiscoveryRuns,
    pub actions: ActionSubmitter,
    pub teams: Teams,
}

type Answer = Result<ApiGatewayV2httpResponse, ApiFailure>;

pub async fn handle(deps: &Deps, event: LambdaEvent<ApiGatewayV2httpRequest>) -> Answer {
    let request = event.payload;
    let (method, path) = route(&request);
    let caller = match deps.teams.caller(&request) {
        Ok(caller) => caller,
        Err(refused) => return Ok(*refused),
    };
    let caller = &caller;
    match request.route_key.as_deref() {
        Some("POST /connections") => create(deps, &request, caller).await,
        Some("GET /connections") => list(deps, caller).await,
        Some("GET /connections/{id}") => with_id(&request, |id| get(deps, caller, id)).await,
        Some("PUT /connections/{id}") => {
            with_id(&request, |id| replace(deps, &request, caller, id)).await
        }
        Some("DELETE /connections/{id}") => {
            with_id(&request, |id| delete(deps, &request, caller, id)).await
        }
        Some("POST /connections/{id}/sync") => {
            with_id(&request, |id| sync(deps, &request, caller, id)).await
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

/// The connection, if the caller holds `needed` on it; else the answer to give: 404 when
/// they may not even read it, so that ids do not leak, and 403 when they may.
async fn held(
    deps: &Deps,
    caller: &Caller,
    id: &str,
    needed: Access,
) -> Result<Connection, Box<ApiGatewayV2httpResponse>> {
    let connection = match deps.inventory.connection(id).await {
        Ok(Some(connection)) => connection,
        Ok(None) => return Err(Box::new(problem(404, format!("no connection {id}")))),
        Err(e) => {
            return Err(Box::new(problem(
                503,
                format!("cannot read the connection: {e}"),
            )));
        }
    };
    let operators = &deps.teams.operators;
    match caller.access_to(&connection.access, operators) {
        None => Err(Box::new(problem(404, format!("no connection {id}")))),
        Some(held) if held < needed => Err(Box::new(problem(
            403,
            format!(
                "this needs {} access to connection {id}; your teams hold {}",
                needed.as_str(),
                held.as_str()
            ),
        ))),
        Some(_) => Ok(connection),
    }
}

async fn create(deps: &Deps, request: &ApiGatewayV2httpRequest, caller: &Caller) -> Answer {
    // A connection opens its account's whole inventory to the teams it names.
    if !caller.is_operator(&deps.teams.operators) {
        return Ok(problem(
            403,
            format!(
                "only the operators ({}) connect accounts; ask them for a connection and its grants",
                deps.teams.operators
            ),
        ));
    }
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
    let mut connection = match input.validate(&id, ConnectionSource::Manual, now, now) {
        Ok(connection) => connection,
        Err(e) => return Ok(problem(400, e.to_string())),
    };
    connection.access = match checked_grants(connection.access, caller, &deps.teams.operators) {
        Ok(grants) => grants,
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

async fn list(deps: &Deps, caller: &Caller) -> Answer {
    Ok(match deps.inventory.connections().await {
        Ok(mut connections) => {
            connections.retain(|c| caller.may(Access::Read, &c.access, &deps.teams.operators));
            answer(200, json!({ "connections": to_json(&connections)? }))
        }
        Err(e) => problem(503, format!("cannot read the connections: {e}")),
    })
}

async fn get(deps: &Deps, caller: &Caller, id: String) -> Answer {
    let connection = match held(deps, caller, &id, Access::Read).await {
        Ok(connection) => connection,
        Err(refused) => return Ok(*refused),
    };
    let mut crawls = match deps.inventory.last_crawls(&id).await {
        Ok(crawls) => crawls,
        Err(e) => return Ok(problem(503, format!("cannot read the scopes' crawls: {e}"))),
    };
    let mut body = connection_json(&connection)?;
    // Each of the connection's scopes that was crawled, in the connection's order; a scope
    // since removed from the connection is left out.
    let mut scopes = Vec::new();
    for scope in connection.scopes() {
        let Some(crawl) = crawls.remove(&scope.key()) else {
            continue;
        };
        let mut view = to_json(&crawl)?;
        view["region"] = json!(scope.region);
        view["resourceType"] = json!(scope.resource_type.as_str());
        scopes.push(view);
    }
    body["crawls"] = Value::Array(scopes);
    Ok(answer(200, body))
}

async fn replace(
    deps: &Deps,
    request: &ApiGatewayV2httpRequest,
    caller: &Caller,
    id: String,
) -> Answer {
    let fields = match object_body(request) {
        Ok(fields) => fields,
        Err(e) => return Ok(problem(400, e)),
    };
    let input = match input_of(fields) {
        Ok(input) => input,
        Err(e) => return Ok(problem(400, e)),
    };
    let existing = match held(deps, caller, &id, Access::Write).await {
        Ok(existing) => existing,
        Err(refused) => return Ok(*refused),
    };
    if input.account_id != existing.account_id {
        return Ok(problem(
            400,
            format!(
                "accountId: connection {id} is for {}; connect another account with a new connection",
                existing.account_id
            ),
        ));
    }
    let regrants = input.access.is_some();
    let mut connection = match input.validate(&id, existing.source, existing.created_at, Utc::now())
    {
        Ok(connection) => connection,
        Err(e) => return Ok(problem(400, e.to_string())),
    };
    connection.access = if !regrants || connection.access == existing.access {
        existing.access
    } else if !caller.may(Access::Admin, &existing.access, &deps.teams.operators) {
        return Ok(problem(
            403,
            format!("granting or revoking access needs admin access to connection {id}"),
        ));
    } else {
        match checked_grants(connection.access, caller, &deps.teams.operators) {
            Ok(grants) => grants,
            Err(e) => return Ok(problem(400, e.to_string())),
        }
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

async fn delete(
    deps: &Deps,
    request: &ApiGatewayV2httpRequest,
    caller: &Caller,
    id: String,
) -> Answer {
    let body: DeleteBody =
        match object_body(request).map(|f| serde_json::from_value(Value::Object(f))) {
            Ok(Ok(body)) => body,
            Ok(Err(e)) => return Ok(problem(400, format!("the body is not {{\"reason\"}}: {e}"))),
            Err(e) => return Ok(problem(400, e)),
        };
    // The same use case as `POST /actions`: admin on the connection, production's rule.
    let submission = Submission {
        action: Action::ConnectionDelete { connection_id: id },
        reason: body.reason,
    };
    Ok(match deps.actions.submit(caller, submission).await {
        Ok(submitted) => answer(202, to_json(&submitted)?),
        Err(e) => problem(e.status(), e.to_string()),
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SyncBody {
    resource_types: Option<Vec<String>>,
}

async fn sync(
    deps: &Deps,
    request: &ApiGatewayV2httpRequest,
    caller: &Caller,
    id: String,
) -> Answer {
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
    let connection = match held(deps, caller, &id, Access::Write).await {
        Ok(connection) => connection,
        Err(refused) => return Ok(*refused),
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
            Ok(started) if started.runs.is_empty() => problem(
                429,
                format!(
                    "discovery is crawling at its cap of {} crawlers ({} runs going); ask again \
                     when they end",
                    deps.runs.cap().crawlers,
                    started.running
                ),
            ),
            Ok(started) => answer(202, json!({ "runs": to_json(&started.runs)? })),
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
        let teams = Teams::from_vars(&mut vars);
        vars.finish()?;
        Ok(Deps {
            inventory: DynamoInventory::new(config, table),
            runs,
            actions: ActionSubmitter::from_parts(config, env)?,
            teams,
        })
    }

    async fn handle(&self, event: LambdaEvent<ApiGatewayV2httpRequest>) -> Answer {
        handle(self, event).await
    }
}
