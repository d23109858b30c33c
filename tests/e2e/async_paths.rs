//! Nothing asynchronous fails unseen: every path a failure can take ends in a queue that is
//! watched by an alarm, and every queue and topic is encrypted. Read off the template, so a
//! new function, rule or queue is held to the same rules the day it is added.

use std::collections::BTreeSet;

use maestro_tests::maestro_template;
use serde_json::Value;

/// The logical id a `!Ref X`, `!GetAtt X.Attr` or `{"Fn::GetAtt": [X, Attr]}` points at.
fn target(value: &Value) -> Option<String> {
    if let Some(name) = value["Ref"].as_str() {
        return Some(name.to_owned());
    }
    match &value["Fn::GetAtt"] {
        Value::Array(parts) => parts.first().and_then(Value::as_str).map(str::to_owned),
        Value::String(dotted) => dotted.split('.').next().map(str::to_owned),
        _ => None,
    }
}

fn resources_of(template: &Value, kind: &str) -> Vec<(String, Value)> {
    template["Resources"]
        .as_object()
        .expect("resources")
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .map(|(id, r)| (id.clone(), r.clone()))
        .collect()
}

/// What the alarms that notify someone watch, through `dimension`, in any of `metrics`:
/// alarms on one metric and metric-math alarms alike.
fn watched(template: &Value, metrics: &[&str], dimension: &str) -> BTreeSet<String> {
    let mut targets = BTreeSet::new();
    for (_, alarm) in resources_of(template, "AWS::CloudWatch::Alarm") {
        let properties = &alarm["Properties"];
        if properties["AlarmActions"]
            .as_array()
            .is_none_or(Vec::is_empty)
        {
            continue;
        }
        let single = std::iter::once(properties);
        let in_math = properties["Metrics"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| &m["MetricStat"]["Metric"]);
        for metric in single.chain(in_math) {
            if !metrics.contains(&metric["MetricName"].as_str().unwrap_or_default()) {
                continue;
            }
            targets.extend(
                metric["Dimensions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|d| d["Name"] == dimension)
                    .filter_map(|d| target(&d["Value"])),
            );
        }
    }
    targets
}

/// Event types whose deliveries Lambda or EventBridge makes asynchronously.
const ASYNCHRONOUS_EVENTS: &[&str] = &["Schedule", "EventBridgeRule", "SNS", "CloudWatchEvent"];

#[test]
fn every_asynchronous_failure_ends_in_a_watched_dead_letter_queue() {
    let template = maestro_template().document;
    let mut problems = Vec::new();
    let mut dead_letter_queues = BTreeSet::new();

    for (id, function) in resources_of(&template, "AWS::Serverless::Function") {
        let properties = &function["Properties"];
        let events = properties["Events"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let invoked_asynchronously = events
            .values()
            .any(|e| ASYNCHRONOUS_EVENTS.contains(&e["Type"].as_str().unwrap_or_default()));
        match target(&properties["DeadLetterQueue"]["TargetArn"]) {
            Some(queue) => {
                dead_letter_queues.insert(queue);
            }
            None if invoked_asynchronously => problems.push(format!(
                "{id} is invoked asynchronously but has no DeadLetterQueue for invocations that fail every retry"
            )),
            None => {}
        }
        for (name, event) in &events {
            let kind = event["Type"].as_str().unwrap_or_default();
            if kind == "EventBridgeRule" || kind == "Schedule" {
                match target(&event["Properties"]["DeadLetterConfig"]["Arn"]) {
                    Some(queue) => {
                        dead_letter_queues.insert(queue);
                    }
                    None => problems.push(format!(
                        "{id}.Events.{name}: events EventBridge cannot deliver have no DeadLetterConfig"
                    )),
                }
            }
            if kind == "SQS" {
                let Some(queue) = target(&event["Properties"]["Queue"]) else {
                    continue;
                };
                let redrive = &template["Resources"][&queue]["Properties"]["RedrivePolicy"];
                match target(&redrive["deadLetterTargetArn"]) {
                    Some(dlq) => {
                        dead_letter_queues.insert(dlq);
                    }
                    None => problems.push(format!(
                        "{id}.Events.{name}: queue {queue} has no RedrivePolicy, so a poison message is retried forever"
                    )),
                }
            }
        }
    }
    for (id, rule) in resources_of(&template, "AWS::Events::Rule") {
        for target_config in rule["Properties"]["Targets"]
            .as_array()
            .into_iter()
            .flatten()
        {
            match target(&target_config["DeadLetterConfig"]["Arn"]) {
                Some(queue) => {
                    dead_letter_queues.insert(queue);
                }
                None => problems.push(format!("{id}: a target has no DeadLetterConfig")),
            }
        }
    }

    assert!(
        dead_letter_queues.len() >= 4,
        "the template's dead-letter queues were not found: {dead_letter_queues:?}"
    );
    let alarmed = watched(
        &template,
        &["ApproximateNumberOfMessagesVisible"],
        "QueueName",
    );
    for queue in &dead_letter_queues {
        if !alarmed.contains(queue) {
            problems.push(format!(
                "dead-letter queue {queue} has no alarm on ApproximateNumberOfMessagesVisible that notifies anyone"
            ));
        }
    }

    // The approval workflow ends rejected requests as failed executions by design, so a
    // state machine may be watched for time-outs (and its steps' errors) instead.
    let watched_runs = watched(
        &template,
        &["ExecutionsFailed", "ExecutionsTimedOut"],
        "StateMachineArn",
    );
    for (id, _) in resources_of(&template, "AWS::Serverless::StateMachine") {
        if !watched_runs.contains(&id) {
            problems.push(format!(
                "state machine {id} has no alarm on failed or timed-out executions"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_queue_and_topic_is_encrypted_at_rest() {
    let template = maestro_template().document;
    let mut unencrypted = Vec::new();
    for (id, queue) in resources_of(&template, "AWS::SQS::Queue") {
        let properties = &queue["Properties"];
        if properties["SqsManagedSseEnabled"] != true && properties["KmsMasterKeyId"].is_null() {
            unencrypted.push(id);
        }
    }
    for (id, topic) in resources_of(&template, "AWS::SNS::Topic") {
        if topic["Properties"]["KmsMasterKeyId"].is_null() {
            unencrypted.push(id);
        }
    }
    assert!(
        unencrypted.is_empty(),
        "not encrypted at rest: {unencrypted:?}"
    );
    assert!(!resources_of(&template, "AWS::SQS::Queue").is_empty());
}
