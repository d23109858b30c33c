//! Least privilege, measured: what the template grants each function, what the end-to-end run
//! saw each function call (the emulator's call log, launcher extension 13), and the difference.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use maestro_localcloud::stack::FUNCTION_ACCESS_KEY_PREFIX;
use serde_json::Value;

/// Every action a statement named `sid` grants (any statement when `sid` is `None`), across
/// the policies of `policies`: inline statements and IAM policy documents alike.
pub fn granted(policies: &Value, sid: Option<&str>) -> BTreeSet<String> {
    let mut actions = BTreeSet::new();
    for policy in policies.as_array().into_iter().flatten() {
        let statements = policy
            .get("Statement")
            .or_else(|| policy["PolicyDocument"].get("Statement"));
        for statement in statements.and_then(Value::as_array).into_iter().flatten() {
            if sid.is_some_and(|sid| statement["Sid"] != sid) {
                continue;
            }
            actions.extend(strings(&statement["Action"]));
        }
        actions.extend(policy_template_actions(policy));
    }
    actions
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(one) => vec![one.clone()],
        Value::Array(list) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// The actions of the SAM policy templates the template uses, as SAM's
/// `policy_templates.json` defines them. A template not listed here fails the test by name
/// rather than granting nothing unseen.
const SAM_POLICY_TEMPLATES: &[(&str, &[&str])] = &[
    ("StepFunctionsExecutionPolicy", &["states:StartExecution"]),
    ("SNSPublishMessagePolicy", &["sns:Publish"]),
    ("LambdaInvokePolicy", &["lambda:InvokeFunction"]),
    ("SQSSendMessagePolicy", &["sqs:SendMessage*"]),
    (
        "DynamoDBCrudPolicy",
        &[
            "dynamodb:GetItem",
            "dynamodb:DeleteItem",
            "dynamodb:PutItem",
            "dynamodb:Scan",
            "dynamodb:Query",
            "dynamodb:UpdateItem",
            "dynamodb:BatchWriteItem",
            "dynamodb:BatchGetItem",
            "dynamodb:DescribeTable",
            "dynamodb:ConditionCheckItem",
        ],
    ),
];

fn policy_template_actions(policy: &Value) -> Vec<String> {
    let Some(object) = policy.as_object() else {
        return Vec::new();
    };
    object
        .keys()
        .filter(|key| !["Statement", "PolicyDocument", "PolicyName", "Version"].contains(&key.as_str()))
        .flat_map(|name| {
            let actions = SAM_POLICY_TEMPLATES
                .iter()
                .find(|(template, _)| template == name)
                .map(|(_, actions)| *actions)
                .unwrap_or_else(|| {
                    panic!("the SAM policy template {name} is not known to tests/support/iam.rs: add its actions")
                });
            actions.iter().map(|action| (*action).to_owned())
        })
        .collect()
}

/// Each function's granted actions, by logical id.
pub fn function_grants(template: &Value) -> BTreeMap<String, BTreeSet<String>> {
    template["Resources"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, resource)| resource["Type"] == "AWS::Serverless::Function")
        .map(|(id, resource)| {
            (
                id.clone(),
                granted(&resource["Properties"]["Policies"], None),
            )
        })
        .collect()
}

/// Actions that would let a function escalate or act beyond Maestro if granted on every
/// resource, and what their resources must name instead.
const SCOPED_ACTIONS: &[(&str, &[&str])] = &[
    // IAM Identity Center's own roles and SAML provider only.
    ("iam:CreateRole", &["role/aws-reserved/sso.amazonaws.com/"]),
    ("iam:DeleteRole", &["role/aws-reserved/sso.amazonaws.com/"]),
    (
        "iam:AttachRolePolicy",
        &["role/aws-reserved/sso.amazonaws.com/"],
    ),
    (
        "iam:DetachRolePolicy",
        &["role/aws-reserved/sso.amazonaws.com/"],
    ),
    (
        "iam:PutRolePolicy",
        &["role/aws-reserved/sso.amazonaws.com/"],
    ),
    (
        "iam:DeleteRolePolicy",
        &["role/aws-reserved/sso.amazonaws.com/"],
    ),
    ("iam:CreateSAMLProvider", &["saml-provider/AWSSSO_"]),
    ("iam:UpdateSAMLProvider", &["saml-provider/AWSSSO_"]),
    // Maestro's instance, its permission sets, accounts.
    (
        "sso:CreateAccountAssignment",
        &["SsoInstanceArn", "permissionSet/", "account/"],
    ),
    (
        "sso:DeleteAccountAssignment",
        &["SsoInstanceArn", "permissionSet/", "account/"],
    ),
];

/// Actions that must carry a condition on top of their resource: rotation only with
/// Maestro's function, member roles only inside the organisation.
const CONDITIONED_ACTIONS: &[&str] = &["secretsmanager:RotateSecret", "sts:AssumeRole"];

/// Writes to `ApprovalsTable` must name the items they may touch (`dynamodb:LeadingKeys`): an
/// approval's item holds its task token.
const TABLE_WRITES: &[&str] = &[
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
];

/// Statements of the template's functions that grant more than their scope: a wildcard
/// where [`SCOPED_ACTIONS`] name resources, no condition on a [`CONDITIONED_ACTIONS`] grant,
/// or a write to the approvals table without `dynamodb:LeadingKeys`.
pub fn scope_findings(template: &Value) -> Vec<String> {
    let mut findings = Vec::new();
    let functions = template["Resources"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, resource)| resource["Type"] == "AWS::Serverless::Function");
    for (function, resource) in functions {
        let statements = resource["Properties"]["Policies"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|policy| policy["Statement"].as_array())
            .flatten();
        for statement in statements {
            let sid = statement["Sid"].as_str().unwrap_or("(no Sid)");
            let actions = strings(&statement["Action"]);
            let resources: Vec<String> = match &statement["Resource"] {
                Value::Array(list) => list.iter().map(Value::to_string).collect(),
                one => vec![one.to_string()],
            };
            let conditioned = statement.get("Condition").is_some();
            for action in &actions {
                if let Some((_, allowed)) = SCOPED_ACTIONS.iter().find(|(a, _)| a == action) {
                    for resource in &resources {
                        if !allowed.iter().any(|part| resource.contains(part)) {
                            findings.push(format!(
                                "{function} {sid}: {action} on {resource}, beyond {allowed:?}"
                            ));
                        }
                    }
                }
                if CONDITIONED_ACTIONS.contains(&action.as_str()) && !conditioned {
                    findings.push(format!("{function} {sid}: {action} without a condition"));
                }
                let leading_keys = statement["Condition"]
                    .to_string()
                    .contains("dynamodb:LeadingKeys");
                if TABLE_WRITES.contains(&action.as_str())
                    && resources.iter().any(|r| r.contains("ApprovalsTable"))
                    && !leading_keys
                {
                    findings.push(format!(
                        "{function} {sid}: {action} on any item of ApprovalsTable"
                    ));
                }
            }
        }
    }
    findings
}

/// One line of the emulator's call log.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Call {
    /// The function's logical id, or the ARN of the role whose session made the call.
    pub caller: String,
    /// The IAM action the call needs (`service:Action`).
    pub action: String,
}

/// The calls of a log written with `MAESTRO_CALL_LOG`, by who made them. Calls signed by
/// anything but a function or an assumed role (the test harness, the local host acting as a
/// service) are left out.
pub fn read_call_log(path: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read the call log {}: {e}", path.display()));
    let mut by_caller: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let entry: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a call log line is not JSON ({e}): {line}"));
        let field = |name: &str| entry[name].as_str().unwrap_or_default().to_owned();
        let caller = match entry["roleArn"].as_str() {
            Some(role) => role.to_owned(),
            None => match field("accessKey").strip_prefix(FUNCTION_ACCESS_KEY_PREFIX) {
                Some(function) => function.to_owned(),
                None => continue,
            },
        };
        by_caller
            .entry(caller)
            .or_default()
            .insert(iam_action(&field("service"), &field("operation")));
    }
    by_caller
}

/// The IAM action an API operation needs, from the signing name the SDK signed it for. They
/// are the same names but for the operations listed here, as the services' authorization
/// references give them.
pub fn iam_action(signing_name: &str, operation: &str) -> String {
    let action = match (signing_name, operation) {
        ("s3", "ListBuckets") => "ListAllMyBuckets",
        ("s3", "HeadBucket" | "ListObjectsV2") => "ListBucket",
        ("lambda", "Invoke") => "InvokeFunction",
        (_, operation) => operation,
    };
    format!("{signing_name}:{action}")
}

/// Grants the end-to-end tests cannot see used, and why they are needed all the same.
pub struct Unobserved {
    /// A function's logical id, or `*` for every function.
    pub function: &'static str,
    pub actions: &'static [&'static str],
    pub why: &'static str,
}

impl Unobserved {
    /// Whether this exception covers `action` granted to `function`.
    pub fn excuses(&self, function: &str, action: &str) -> bool {
        (self.function == "*" || self.function == function) && self.actions.contains(&action)
    }
}

/// What is wrong with a set of grants, against the calls seen: a line per finding.
pub fn least_privilege_findings(
    grants: &BTreeMap<String, BTreeSet<String>>,
    used: &BTreeMap<String, BTreeSet<String>>,
    unobserved: &[Unobserved],
) -> Vec<String> {
    let mut findings = Vec::new();
    let excused =
        |function: &str, action: &str| unobserved.iter().any(|u| u.excuses(function, action));
    for (function, actions) in used {
        let Some(granted) = grants.get(function) else {
            continue;
        };
        for action in actions {
            if !granted.iter().any(|grant| matches(grant, action)) {
                findings.push(format!(
                    "{function} calls {action}, which its policy does not grant"
                ));
            }
        }
    }
    for (function, granted) in grants {
        let calls = used.get(function).cloned().unwrap_or_default();
        for grant in granted {
            if excused(function, grant) {
                continue;
            }
            if grant.contains('*') {
                findings.push(format!(
                    "{function} is granted the wildcard {grant}; name the actions it calls"
                ));
            } else if !calls.iter().any(|action| matches(grant, action)) {
                findings.push(format!(
                    "{function} is granted {grant}, which no test saw it call (remove it, test the path, or explain it in the allow-list)"
                ));
            }
        }
    }
    findings
}

/// Whether an IAM action pattern (`service:Prefix*`) covers an action; IAM compares them
/// without regard to case.
fn matches(pattern: &str, action: &str) -> bool {
    let (pattern, action) = (pattern.to_ascii_lowercase(), action.to_ascii_lowercase());
    match pattern.split_once('*') {
        None => pattern == action,
        Some((prefix, suffix)) => {
            action.len() >= prefix.len() + suffix.len()
                && action.starts_with(prefix)
                && action.ends_with(suffix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_iam_does() {
        assert!(matches("dynamodb:PutItem", "dynamodb:putitem"));
        assert!(matches("sqs:SendMessage*", "sqs:SendMessageBatch"));
        assert!(!matches("sqs:SendMessage", "sqs:SendMessageBatch"));
        assert!(matches("*", "ec2:DescribeVpcs"));
    }
}
