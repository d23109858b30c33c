//! `InventoryApiFunction`: the inventory over the management API.
//!
//! - `GET /inventory`: entities, filtered by `family`, `type`, `account`, `region`,
//!   `environment`, `tagKey` (and `tagValue`), `active`, `namePrefix`; `limit` (1 to 1000,
//!   default 100) and `cursor` page through them.
//! - `GET /inventory/{id}`: one entity (its ARN or id, `/` written `%2F`) with its relations
//!   both ways.
//! - `GET /inventory/{id}/history`: its changes, newest first, paged the same way.
//! - `GET /inventory/summary`: counts of entities by family, account, region, environment.
//! - `GET /inventory/export?format=csv|json`: the listing as a report, one page per call
//!   with the next page's cursor in the `maestro-next-cursor` header, so neither side ever
//!   holds the whole inventory.
//!
//! Unknown or malformed parameters are refused with 400 naming them.
//!
//! A caller sees the entities of the accounts whose connections their teams may read
//! (`maestro_domain::access`); Maestro's operators see everything. Other entities do not
//! exist for them, and their summary holds only the counts by account of their accounts.

use aws_lambda_events::event::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use lambda_runtime::LambdaEvent;
use maestro_aws::SdkConfig;
use maestro_aws::env::{EnvError, FunctionEnv};
use maestro_aws::http::{ApiFailure, Teams, answer, csv, path_parameter, problem, route};
use maestro_aws::inventory::{
    DynamoInventory, Filter, StartKey, cursor_fits, decode_cursor, history_cursor_fits,
};
use maestro_aws::lambda::LambdaFunction;
use maestro_domain::access::{Caller, Readable};
use maestro_domain::inventory::connection::{GLOBAL_REGION, is_account_id, is_region};
use maestro_domain::inventory::entity::Family;
use maestro_domain::port::PortError;
use serde_json::{Value, json};

pub struct Deps {
    pub inventory: DynamoInventory,
    pub teams: Teams,
}

type Answer = Result<ApiGatewayV2httpResponse, ApiFailure>;

const LISTING_PARAMETERS: &[&str] = &[
    "family",
    "type",
    "account",
    "region",
    "environment",
    "tagKey",
    "tagValue",
    "active",
    "namePrefix",
    "limit",
    "cursor",
];

/// The columns of the CSV export, in order.
pub const CSV_COLUMNS: &[&str] = &[
    "id",
    "family",
    "providerType",
    "account",
    "region",
    "zone",
    "name",
    "environment",
    "role",
    "status",
    "active",
    "firstSeen",
    "lastChanged",
    "tags",
];

pub async fn handle(deps: &Deps, event: LambdaEvent<ApiGatewayV2httpRequest>) -> Answer {
    let request = event.payload;
    let (method, path) = route(&request);
    let readable = match deps.teams.caller(&request) {
        Ok(caller) => match readable_by(deps, &caller).await {
            Ok(readable) => readable,
            Err(e) => return Ok(problem(503, format!("cannot read the connections: {e}"))),
        },
        Err(refused) => return Ok(*refused),
    };
    let readable = &readable;
    match request.route_key.as_deref() {
        Some("GET /inventory") => listing(deps, &request, readable, Format::Listing).await,
        Some("GET /inventory/export") => {
            let format = match request.query_string_parameters.first("format") {
                None | Some("json") => Format::Json,
                Some("csv") => Format::Csv,
                Some(other) => {
                    return Ok(problem(
                        400,
                        format!("format: {other:?} is not csv or json"),
                    ));
                }
            };
            listing(deps, &request, readable, format).await
        }
        Some("GET /inventory/summary") => summary(deps, readable).await,
        Some("GET /inventory/{id}") => entity(deps, &request, readable).await,
        Some("GET /inventory/{id}/history") => history(deps, &request, readable).await,
        _ => Ok(problem(404, format!("no route {method} {path}"))),
    }
}

/// What the caller may read: operators everything, without a read of the connections.
async fn readable_by(deps: &Deps, caller: &Caller) -> Result<Readable, PortError> {
    let operators = &deps.teams.operators;
    if caller.is_operator(operators) {
        return Ok(Readable::Everything);
    }
    let connections = deps.inventory.connections().await?;
    Ok(Readable::of(
        caller,
        operators,
        connections
            .iter()
            .map(|c| (c.account_id.as_str(), &c.access)),
    ))
}

/// Whether the caller may read an entity, by its `account`.
fn may_read(readable: &Readable, entity: &Value) -> bool {
    entity["account"]
        .as_str()
        .is_some_and(|account| readable.account(account))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Listing,
    Json,
    Csv,
}

/// The page size and cursor of a paged request, or what is wrong with them.
fn paging(request: &ApiGatewayV2httpRequest) -> Result<(i32, Option<StartKey>), String> {
    let query = &request.query_string_parameters;
    let limit = match query.first("limit") {
        None => 100,
        Some(raw) => match raw.parse::<i32>() {
            Ok(limit) if (1..=1000).contains(&limit) => limit,
            _ => return Err(format!("limit: {raw:?} is not a number from 1 to 1000")),
        },
    };
    let cursor = match query.first("cursor") {
        None => None,
        Some(raw) => Some(
            decode_cursor(raw)
                .ok_or_else(|| "cursor: not a cursor this API gave out".to_owned())?,
        ),
    };
    Ok((limit, cursor))
}

fn filter_of(request: &ApiGatewayV2httpRequest, allowed: &[&str]) -> Result<Filter, String> {
    let query = &request.query_string_parameters;
    if let Some((unknown, _)) = query.iter().find(|(k, _)| !allowed.contains(k)) {
        return Err(format!(
            "{unknown:?} is not a parameter here; use {}",
            allowed.join(", ")
        ));
    }
    if let Some((empty, _)) = query.iter().find(|(_, value)| value.is_empty()) {
        return Err(format!("{empty}: give a value, or leave the parameter out"));
    }
    let text = |name: &str| query.first(name).map(str::to_owned);
    let family = text("family");
    if let Some(family) = &family
        && Family::parse(family).is_none()
    {
        let known: Vec<&str> = Family::ALL.iter().map(|f| f.as_str()).collect();
        return Err(format!(
            "family: {family:?} is not one of {}",
            known.join(", ")
        ));
    }
    let account = text("account");
    if let Some(account) = &account
        && !is_account_id(account)
    {
        return Err(format!("account: {account:?} is not a 12-digit account id"));
    }
    let region = text("region");
    if let Some(region) = &region
        && !is_region(region)
        && region != GLOBAL_REGION
    {
        return Err(format!("region: {region:?} is not a region name"));
    }
    let active = match query.first("active") {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(other) => return Err(format!("active: {other:?} is not true or false")),
    };
    let tag_value = text("tagValue");
    let tag_key = text("tagKey");
    if tag_value.is_some() && tag_key.is_none() {
        return Err("tagValue: give the tagKey it belongs to".to_owned());
    }
    Ok(Filter {
        family,
        provider_type: text("type"),
        account,
        region,
        environment: text("environment"),
        tag_key,
        tag_value,
        active,
        name_prefix: text("namePrefix"),
    })
}

async fn listing(
    deps: &Deps,
    request: &ApiGatewayV2httpRequest,
    readable: &Readable,
    format: Format,
) -> Answer {
    let mut allowed = LISTING_PARAMETERS.to_vec();
    if format != Format::Listing {
        allowed.push("format");
    }
    let filter = match filter_of(request, &allowed) {
        Ok(filter) => filter,
        Err(e) => return Ok(problem(400, e)),
    };
    let (limit, cursor) = match paging(request) {
        Ok(paging) => paging,
        Err(e) => return Ok(problem(400, e)),
    };
    if cursor.as_ref().is_some_and(|c| !cursor_fits(&filter, c)) {
        return Ok(problem(
            400,
            "cursor: it continues a listing with other filters; repeat that listing's filters",
        ));
    }
    if let Some(account) = &filter.account
        && !readable.account(account)
    {
        return Ok(problem(
            403,
            format!("account: no connection your teams may read covers {account}"),
        ));
    }
    let mut page = match deps.inventory.list(&filter, limit, cursor).await {
        Ok(page) => page,
        Err(e) => return Ok(problem(503, format!("cannot read the inventory: {e}"))),
    };
    // A page may come back shorter than the limit, even empty, with a cursor: paging goes on.
    page.entities.retain(|entity| may_read(readable, entity));
    let next = page.cursor.clone();
    Ok(match format {
        Format::Listing | Format::Json => {
            let mut response = answer(
                200,
                json!({ "entities": page.entities, "cursor": page.cursor }),
            );
            if let Some(next) = next
                && let Ok(value) = next.parse()
            {
                response.headers.insert("maestro-next-cursor", value);
            }
            response
        }
        Format::Csv => {
            let mut extra = vec![(
                "content-disposition",
                "attachment; filename=\"maestro-inventory.csv\"".to_owned(),
            )];
            if let Some(next) = next {
                extra.push(("maestro-next-cursor", next));
            }
            csv(200, to_csv(&page.entities), &extra)
        }
    })
}

fn csv_field(value: &str) -> String {
    // A leading =, +, - or @ would be a formula to a spreadsheet: quoted with a ' it is text.
    let value = if value.starts_with(['=', '+', '-', '@']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

/// Entities as CSV rows under the header of [`CSV_COLUMNS`]; tags as `key=value` joined by `;`.
pub fn to_csv(entities: &[Value]) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push('\n');
    for entity in entities {
        let row: Vec<String> = CSV_COLUMNS
            .iter()
            .map(|column| match (column, entity.get(*column)) {
                (&"tags", Some(Value::Object(tags))) => tags
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(";"),
                (_, Some(Value::String(text))) => text.clone(),
                (_, Some(Value::Bool(flag))) => flag.to_string(),
                (_, Some(Value::Number(number))) => number.to_string(),
                _ => String::new(),
            })
            .map(|field| csv_field(&field))
            .collect();
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}

async fn summary(deps: &Deps, readable: &Readable) -> Answer {
    Ok(match deps.inventory.summary().await {
        Ok(mut summary) => {
            // The other dimensions count across accounts, so only operators see them.
            if let Readable::Accounts(accounts) = readable {
                summary.retain(|dimension, _| dimension == "account");
                for counts in summary.values_mut() {
                    counts.retain(|account, _| accounts.contains(account));
                }
            }
            answer(200, json!({ "counts": summary }))
        }
        Err(e) => problem(503, format!("cannot read the summary: {e}")),
    })
}

fn entity_id(request: &ApiGatewayV2httpRequest) -> Result<String, &'static str> {
    path_parameter(request, "id")
        .filter(|id| id.len() <= 2048)
        .ok_or("name the entity in the path, its / written %2F")
}

async fn entity(deps: &Deps, request: &ApiGatewayV2httpRequest, readable: &Readable) -> Answer {
    if let Some((unknown, _)) = request.query_string_parameters.iter().next() {
        return Ok(problem(400, format!("{unknown:?} is not a parameter here")));
    }
    let id = match entity_id(request) {
        Ok(id) => id,
        Err(e) => return Ok(problem(400, e)),
    };
    let entity = match deps.inventory.entity(&id).await {
        Ok(Some(entity)) if may_read(readable, &entity) => entity,
        Ok(_) => return Ok(problem(404, format!("no entity {id}"))),
        Err(e) => return Ok(problem(503, format!("cannot read the entity: {e}"))),
    };
    let incoming = match deps.inventory.incoming(&id).await {
        Ok(incoming) => incoming,
        Err(e) => return Ok(problem(503, format!("cannot read its relations: {e}"))),
    };
    let outgoing = entity.get("relations").cloned().unwrap_or(json!([]));
    let incoming: Vec<Value> = incoming
        .into_iter()
        .filter(|(_, source)| arn_account(source).is_none_or(|a| readable.account(a)))
        .map(|(kind, source)| json!({ "kind": kind, "source": source }))
        .collect();
    Ok(answer(
        200,
        json!({ "entity": entity, "relations": { "outgoing": outgoing, "incoming": incoming } }),
    ))
}

/// The account of an ARN (`arn:partition:service:region:account:…`), if it names one.
fn arn_account(arn: &str) -> Option<&str> {
    arn.split(':').nth(4).filter(|account| !account.is_empty())
}

async fn history(deps: &Deps, request: &ApiGatewayV2httpRequest, readable: &Readable) -> Answer {
    if let Some((unknown, _)) = request
        .query_string_parameters
        .iter()
        .find(|(k, _)| !["limit", "cursor"].contains(k))
    {
        return Ok(problem(
            400,
            format!("{unknown:?} is not a parameter here; use limit, cursor"),
        ));
    }
    let id = match entity_id(request) {
        Ok(id) => id,
        Err(e) => return Ok(problem(400, e)),
    };
    let (limit, cursor) = match paging(request) {
        Ok(paging) => paging,
        Err(e) => return Ok(problem(400, e)),
    };
    if cursor
        .as_ref()
        .is_some_and(|c| !history_cursor_fits(&id, c))
    {
        return Ok(problem(
            400,
            "cursor: it continues another listing, not this history",
        ));
    }
    match deps.inventory.entity(&id).await {
        Ok(Some(entity)) if may_read(readable, &entity) => {}
        Ok(_) => return Ok(problem(404, format!("no entity {id}"))),
        Err(e) => return Ok(problem(503, format!("cannot read the entity: {e}"))),
    }
    Ok(match deps.inventory.history(&id, limit, cursor).await {
        Ok((records, next)) => answer(200, json!({ "history": records, "cursor": next })),
        Err(e) => problem(503, format!("cannot read its history: {e}")),
    })
}

impl LambdaFunction for Deps {
    type Event = ApiGatewayV2httpRequest;
    type Response = ApiGatewayV2httpResponse;
    type Error = ApiFailure;

    fn from_parts(config: &SdkConfig, env: &FunctionEnv) -> Result<Self, EnvError> {
        let mut vars = env.reader();
        let table = vars.required("INVENTORY_TABLE");
        let teams = Teams::from_vars(&mut vars);
        vars.finish()?;
        Ok(Deps {
            inventory: DynamoInventory::new(config, table),
            teams,
        })
    }

    async fn handle(&self, event: LambdaEvent<ApiGatewayV2httpRequest>) -> Answer {
        handle(self, event).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_it_and_defuses_formulas() {
        let rows = to_csv(&[
            json!({"id": "arn:aws:s3:::b", "name": "a, \"b\"", "active": true,
                   "tags": {"Owner": "ops", "Team": "x"}}),
            json!({"id": "i-1", "name": "=HYPERLINK(1)"}),
        ]);
        let lines: Vec<&str> = rows.lines().collect();
        assert_eq!(lines[0], CSV_COLUMNS.join(","));
        assert!(lines[1].starts_with("arn:aws:s3:::b,"));
        assert!(lines[1].contains("\"a, \"\"b\"\"\""));
        assert!(lines[1].contains(",true,"));
        assert!(lines[1].ends_with(",Owner=ops;Team=x"), "{}", lines[1]);
        assert!(lines[2].contains(",'=HYPERLINK(1),"), "{}", lines[2]);
    }
}
