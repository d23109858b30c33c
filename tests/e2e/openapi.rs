//! The OpenAPI documents in `docs/openapi/` describe exactly the routes the template wires: a
//! route added, renamed or removed on one side fails here until the other follows. The
//! management API is then fuzzed from its document with schemathesis, on the local cloud.

use std::collections::BTreeSet;

use maestro_localcloud::stack::FUNCTION_ACCESS_KEY_PREFIX;
use maestro_localcloud::{moto, seed};
use maestro_tests::{OPERATORS, maestro_template, on_local_cloud};
use serde_json::Value;

/// "METHOD /path" for every HttpApi event on `api` in the template.
fn template_routes(api: &str) -> BTreeSet<String> {
    routes_and_functions(api)
        .into_iter()
        .map(|(route, _)| route)
        .collect()
}

/// Each HttpApi event on `api` in the template, with the logical id of its function.
fn routes_and_functions(api: &str) -> BTreeSet<(String, String)> {
    let template = maestro_template();
    let mut routes = BTreeSet::new();
    for (function, resource) in template.document["Resources"]
        .as_object()
        .expect("resources")
    {
        for event in resource["Properties"]["Events"]
            .as_object()
            .into_iter()
            .flat_map(|events| events.values())
        {
            let properties = &event["Properties"];
            if event["Type"] == "HttpApi" && properties["ApiId"]["Ref"] == api {
                let route = format!(
                    "{} {}",
                    properties["Method"].as_str().expect("a method"),
                    properties["Path"].as_str().expect("a path")
                );
                routes.insert((route, function.clone()));
            }
        }
    }
    routes
}

fn document(name: &str) -> Value {
    let path = moto::repository_root().join("docs/openapi").join(name);
    let text = std::fs::read_to_string(&path).expect("the OpenAPI document reads");
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{name} is YAML: {e}"))
}

const METHODS: [&str; 6] = ["get", "head", "post", "put", "patch", "delete"];

fn documented_routes(document: &Value) -> BTreeSet<String> {
    let mut routes = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in METHODS.iter().filter(|m| item.get(**m).is_some()) {
            routes.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    routes
}

/// A parameter, with a `$ref` to `#/components/parameters/…` followed.
fn resolved<'a>(document: &'a Value, parameter: &'a Value) -> &'a Value {
    match parameter["$ref"].as_str() {
        Some(reference) => {
            let name = reference
                .strip_prefix("#/components/parameters/")
                .unwrap_or_else(|| panic!("{reference} points at a parameter"));
            &document["components"]["parameters"][name]
        }
        None => parameter,
    }
}

/// Every `{name}` of every path is declared as a required path parameter of each operation.
fn assert_path_parameters_declared(document: &Value) {
    for (path, item) in document["paths"].as_object().expect("paths") {
        let wanted: BTreeSet<&str> = path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for method in METHODS.iter().filter(|m| item.get(**m).is_some()) {
            let declared: BTreeSet<&str> = item["parameters"]
                .as_array()
                .into_iter()
                .chain(item[*method]["parameters"].as_array())
                .flatten()
                .map(|p| resolved(document, p))
                .filter(|p| p["in"] == "path" && p["required"] == true)
                .filter_map(|p| p["name"].as_str())
                .collect();
            assert_eq!(declared, wanted, "{method} {path}: its path parameters");
            assert!(
                item[*method]["responses"]
                    .as_object()
                    .is_some_and(|r| !r.is_empty()),
                "{method} {path} documents its answers"
            );
        }
    }
}

#[test]
fn the_management_api_document_has_every_route_of_the_template_and_no_other() {
    let document = document("management.yaml");
    assert_eq!(
        documented_routes(&document),
        template_routes("MaestroHttpApi")
    );
    assert_path_parameters_declared(&document);
}

#[test]
fn the_approval_links_document_has_every_route_of_the_template_and_no_other() {
    let document = document("approval-links.yaml");
    assert_eq!(
        documented_routes(&document),
        template_routes("ApprovalLinksApi")
    );
    assert_path_parameters_declared(&document);
}

/// Schemathesis sends what the document allows and what it does not (wrong types, missing
/// fields, odd strings, unknown parameters) to every route of the management API, signed in
/// as an operator, so every function runs. No answer may be a 5xx, and a refused request may
/// write nothing (`tests/fuzz/maestro_fuzz_checks.py`).
#[test]
fn fuzzing_the_management_api_finds_no_server_error_and_no_partial_write() {
    on_local_cloud(Some(&maestro_template()), |cloud, stack| async move {
        let stack = stack.expect("the stack");
        // The call quota's counters are written by reads too: they are not the request's state.
        let quota_table = stack.resources["MaestroQuotaTable"].reference.clone();
        // Data for the routes to find: the sample organisation, and the connection the
        // document's examples name.
        seed::sample_organisation(cloud.sdk_config())
            .await
            .expect("the sample organisation is seeded");
        let bearer = cloud
            .bearer("fuzz@example.com", &[OPERATORS])
            .await
            .expect("the fuzzer signs in");
        let created = reqwest::Client::new()
            .post(format!("{}/connections", cloud.http_endpoint()))
            .header("authorization", &bearer)
            .body(
                serde_json::json!({"id": "sample", "name": "Sample", "accountId": seed::SAMPLE_ACCOUNTS[0], "regions": ["eu-west-1"]})
                    .to_string(),
            )
            .send()
            .await
            .expect("the API answers");
        assert_eq!(created.status(), 201);
        let writers: Vec<String> = routes_and_functions("MaestroHttpApi")
            .into_iter()
            .map(|(_, function)| format!("{FUNCTION_ACCESS_KEY_PREFIX}{function}"))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let root = moto::repository_root();
        let schemathesis = moto::default_python()
            .parent()
            .expect("the virtualenv's bin folder")
            .join("schemathesis");
        let report = std::env::temp_dir().join(format!("maestro-fuzz-{}", std::process::id()));
        let output = tokio::process::Command::new(&schemathesis)
            .current_dir(&root)
            .env("SCHEMATHESIS_HOOKS", "maestro_fuzz_checks")
            .env("PYTHONPATH", root.join("tests/fuzz"))
            .env("MAESTRO_MOTO_ENDPOINT", cloud.moto_endpoint())
            .env("MAESTRO_API_WRITERS", writers.join(","))
            .env("MAESTRO_BOOKKEEPING_TABLES", quota_table)
            .args(["run", "docs/openapi/management.yaml", "--url"])
            .arg(cloud.http_endpoint())
            .arg("--header")
            .arg(format!("Authorization: {bearer}"))
            .args([
                "--checks",
                "not_a_server_error,no_partial_write",
                "--workers",
                "1",
                "--max-examples",
                "15",
                "--seed",
                "20261122",
                // The same cases every run, and no example database left in the clone.
                "--generation-database",
                "none",
                "--phases",
                "examples,coverage,fuzzing",
                // Entity ids are free-form strings a path cannot always carry (a bare `/`):
                // most drawn ones are filtered out, which is expected, not a schema problem.
                "--suppress-health-check",
                "filter_too_much",
                "--request-timeout",
                "60",
                "--no-color",
                "--output-sanitize",
                "true",
                "--report-dir",
            ])
            .arg(&report)
            .output()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} (make venv installs it): {e}",
                    schemathesis.display()
                )
            });
        let printed = format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success(),
            "schemathesis found failures:\n{printed}"
        );
        let selected = printed
            .lines()
            .find_map(|line| line.trim().strip_prefix("Operations:"))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<usize>().ok());
        assert_eq!(
            selected,
            Some(routes_and_functions("MaestroHttpApi").len()),
            "schemathesis tests every route:\n{printed}"
        );
    });
}
