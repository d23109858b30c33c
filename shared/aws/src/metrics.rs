//! Business metrics as CloudWatch embedded metric format (EMF): one JSON line on stdout per
//! data point set, which CloudWatch Logs turns into metrics in the `Maestro` namespace. It
//! needs no `PutMetricData` call and no permission, and never fails the function.
//!
//! | Metric | Unit | Dimensions | From |
//! |---|---|---|---|
//! | `ResourcesCreated`, `ResourcesChanged`, `ResourcesGone`, `ResourcesSeen` | Count | `ResourceType` | the discovery crawler, per scope crawled to the end |
//! | `FailingScopes` | Count | none | each discovery run's summary: its scopes that failed their last 3 crawls or more (`DiscoveryScopesFailingAlarm`) |
//! | `PlannedCreates`, `PlannedDeletes`, `HeldDeletes` | Count | `Mode` (dry-run, apply) | each scheduled or asked-for SSO reconcile run |
//! | `ApprovalsRequested` | Count | none | the approval workflow, per action sent to its approvers |
//! | `ApprovalsDecided` | Count | `Decision` (approve, reject) | each approver's decision that was counted |
//! | `RotationsSucceeded` | Count | none | each rotation that finished |
//! | `RotationsFailed` | Count | `Step` | each rotation step that failed |
//!
//! Approvals pending is `ApprovalsRequested` minus `ApprovalsDecided` over the approval window;
//! docs/observability.md has the dashboard expressions.

use serde_json::{Map, Value, json};

pub const NAMESPACE: &str = "Maestro";

/// One EMF document: the metrics share the dimensions and the time.
pub fn emf_line(dimensions: &[(&str, &str)], metrics: &[(&str, f64)], timestamp_ms: i64) -> String {
    let mut document = Map::new();
    let dimension_names: Vec<&str> = dimensions.iter().map(|(name, _)| *name).collect();
    document.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [dimension_names],
                "Metrics": metrics
                    .iter()
                    .map(|(name, _)| json!({ "Name": name, "Unit": "Count" }))
                    .collect::<Vec<_>>(),
            }],
        }),
    );
    for (name, value) in dimensions {
        document.insert((*name).into(), Value::String((*value).into()));
    }
    for (name, value) in metrics {
        document.insert((*name).into(), json!(value));
    }
    Value::Object(document).to_string()
}

/// Writes counts to stdout as EMF, where Lambda's log stream carries them to CloudWatch.
pub fn count(dimensions: &[(&str, &str)], counts: &[(&str, u64)]) {
    // EMF reads numbers; counts this size are exact as f64.
    let metrics: Vec<(&str, f64)> = counts.iter().map(|(n, v)| (*n, *v as f64)).collect();
    println!(
        "{}",
        emf_line(dimensions, &metrics, chrono::Utc::now().timestamp_millis())
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emf_line_declares_its_metrics_and_carries_their_values() {
        let line = emf_line(
            &[("ResourceType", "instances")],
            &[("ResourcesCreated", 3.0), ("ResourcesGone", 0.0)],
            1_700_000_000_000,
        );
        let document: Value = serde_json::from_str(&line).expect("one JSON object");
        let declared = &document["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(declared["Namespace"], "Maestro");
        assert_eq!(declared["Dimensions"], json!([["ResourceType"]]));
        assert_eq!(
            declared["Metrics"],
            json!([{"Name": "ResourcesCreated", "Unit": "Count"}, {"Name": "ResourcesGone", "Unit": "Count"}])
        );
        assert_eq!(document["_aws"]["Timestamp"], 1_700_000_000_000_i64);
        assert_eq!(document["ResourceType"], "instances");
        assert_eq!(document["ResourcesCreated"], 3.0);
        assert!(!line.contains('\n'));
    }
}
