//! The OpenAPI documents in `docs/openapi/` describe exactly the routes the template wires: a
//! route added, renamed or removed on one side fails here until the other follows.

use std::collections::BTreeSet;

use maestro_localcloud::moto;
use maestro_tests::maestro_template;
use serde_json::Value;

/// "METHOD /path" for every HttpApi event on `api` in the template.
fn template_routes(api: &str) -> BTreeSet<String> {
    let template = maestro_template();
    let mut routes = BTreeSet::new();
    for resource in template.document["Resources"]
        .as_object()
        .expect("resources")
        .values()
    {
        for event in resource["Properties"]["Events"]
            .as_object()
            .into_iter()
            .flat_map(|events| events.values())
        {
            let properties = &event["Properties"];
            if event["Type"] == "HttpApi" && properties["ApiId"]["Ref"] == api {
                routes.insert(format!(
                    "{} {}",
                    properties["Method"].as_str().expect("a method"),
                    properties["Path"].as_str().expect("a path")
                ));
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
