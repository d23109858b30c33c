//! Least privilege, proven against the end-to-end run: each function's policy in the template
//! grants exactly the actions the tests saw it call, and the member accounts' role grants
//! exactly what discovery called through it.
//!
//! `make test` runs the end-to-end tests with `MAESTRO_CALL_LOG` set, so the emulator logs
//! every call with its caller; then it runs this test (ignored in a plain `cargo test`, which
//! writes no log) against that log.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use maestro_localcloud::{Template, moto};
use maestro_tests::iam::{
    Unobserved, function_grants, granted, least_privilege_findings, read_call_log, scope_findings,
};
use maestro_tests::maestro_template;

/// Grants no end-to-end test can see used, each with why it stays.
const UNOBSERVED: &[Unobserved] = &[
    Unobserved {
        function: "*",
        actions: &["kms:GenerateDataKey*", "kms:Decrypt"],
        why: "SNS and SQS call KMS on the publisher's behalf for encrypted topics and queues, and Secrets Manager on the reader's for a secret under a customer managed key (the approvals' signing key); the emulator does not encrypt, so the call is never made here. AWS documents the wildcard for SNS and SQS publishers.",
    },
    Unobserved {
        function: "SsoAssignmentWorkerFunction",
        actions: &[
            "iam:AttachRolePolicy",
            "iam:CreateRole",
            "iam:CreateSAMLProvider",
            "iam:DeleteRole",
            "iam:DeleteRolePolicy",
            "iam:DetachRolePolicy",
            "iam:GetRole",
            "iam:GetSAMLProvider",
            "iam:ListAttachedRolePolicies",
            "iam:ListRolePolicies",
            "iam:PutRolePolicy",
            "iam:UpdateSAMLProvider",
        ],
        why: "IAM Identity Center creates, updates and deletes the permission set's role (and its SAML provider) in the member account with the caller's permissions, as its CreateAccountAssignment documentation requires; the emulator provisions nothing",
    },
    Unobserved {
        function: "SsoAssignmentWorkerFunction",
        actions: &["dynamodb:UpdateItem"],
        why: "the shared IAM Identity Center quota (maestro_aws::quota) creates a second's counter with PutItem and raises it with UpdateItem; the worker's calls in the tests never share a second, the API's do",
    },
    Unobserved {
        function: "ActionRunnerFunction",
        actions: &["identitystore:ListGroups", "identitystore:ListUsers"],
        why: "an approved delete's account read again names a principal the snapshot does not know only when a group was created since the principals were read; no test creates one between a hold and its approval",
    },
    Unobserved {
        function: "SsoReconcileFunction",
        actions: &[
            "organizations:DescribeAccount",
            "organizations:ListParents",
            "organizations:DescribeOrganizationalUnit",
            "sso:ListPermissionSetsProvisionedToAccount",
        ],
        why: "a full read ends by reading again what events touched while it ran (ReadCursor::Touched, tested in the domain); no test's event lands inside a read of the sample organisation, which takes seconds",
    },
    Unobserved {
        function: "ActionRunnerFunction",
        actions: &["lambda:InvokeFunction"],
        why: "Secrets Manager's RotateSecret requires the caller to be allowed to invoke the secret's rotation function; the emulator does not check it",
    },
    // Deletes over the threshold are held for approval by the reconcile every trigger shares
    // (maestro_domain::sso::reconcile); the tests hold them through the API, whose function is
    // seen starting the approval workflow.
    Unobserved {
        function: "SsoReconcileFunction",
        actions: &["states:StartExecution"],
        why: "held deletes of a scheduled run",
    },
    Unobserved {
        function: "SsoEventHandlerFunction",
        actions: &["states:StartExecution"],
        why: "held deletes of an event's run",
    },
    Unobserved {
        function: "SsoApiFunction",
        actions: &["dynamodb:UpdateItem"],
        why: "a full run whose workflow cannot be started frees the one-run lease it took (maestro_domain::sso::reconcile::begin_full_run); the tests' workflows start",
    },
    Unobserved {
        function: "SsoEventHandlerFunction",
        actions: &["dynamodb:DeleteItem"],
        why: "an event's claim (maestro_aws::idempotency) is released when handling it fails, so the redelivery runs; the tests deliver events that succeed",
    },
    // The event refresh describes one distribution or function by its id; the crawler lists
    // them. No test sends a CloudFront or Lambda event.
    Unobserved {
        function: "DiscoveryEventsFunction",
        actions: &["cloudfront:GetDistribution", "lambda:GetFunction"],
        why: "refresh of one distribution or function named by an event",
    },
    Unobserved {
        function: MEMBER_ROLE,
        actions: &["cloudfront:GetDistribution", "lambda:GetFunction"],
        why: "the event refresh of one distribution or function, in a member account",
    },
    // A change is one transaction; one with more index changes than a transaction's 100
    // actions puts and deletes its index items in batches around it
    // (inventory_races::an_entity_with_more_index_changes_than_a_transaction_holds_is_indexed_whole
    // drives the adapter through it). No resource the functions crawl in the tests has 98 tags
    // and relations.
    Unobserved {
        function: "DiscoveryCrawlerFunction",
        actions: &["dynamodb:BatchWriteItem"],
        why: "the index items of a change too large for one transaction",
    },
    Unobserved {
        function: "DiscoveryEventsFunction",
        actions: &["dynamodb:BatchWriteItem"],
        why: "the index items of a change too large for one transaction",
    },
    Unobserved {
        function: "DiscoverySchedulerFunction",
        actions: &["dynamodb:BatchWriteItem"],
        why: "the relation items of a retired entity with more relations than one transaction holds",
    },
    Unobserved {
        function: "DiscoveryEventsFunction",
        actions: &["sts:AssumeRole"],
        why: "the event refresh of a member account's resource; the tests send events from Maestro's own account",
    },
];

/// A function whose grants for the same calls are held to another function's calls: the same
/// code makes them, and the tests drive only one of the two through every path.
struct Mirror {
    function: &'static str,
    of: &'static str,
    why: &'static str,
}

const MIRRORS: &[Mirror] = &[Mirror {
    function: "DiscoveryEventsFunction",
    of: "DiscoveryCrawlerFunction",
    why: "the event refresh re-describes a resource with the crawler's own provider (maestro-discovery-aws), one family per event type; the tests send an instance event, and the crawler is seen making every other family's calls",
}];

/// The role discovery assumes in member accounts, as `infra/member-role.yaml` names it.
const MEMBER_ROLE: &str = "MemberRole";

fn call_log() -> PathBuf {
    let path = std::env::var_os("MAESTRO_CALL_LOG").unwrap_or_else(|| {
        panic!("MAESTRO_CALL_LOG is not set: `make test` runs the end-to-end tests with it, then this test")
    });
    PathBuf::from(path)
}

/// Calls made through the member accounts' role count against it, under [`MEMBER_ROLE`].
fn by_grantee(
    used: BTreeMap<String, BTreeSet<String>>,
    member_role_name: &str,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut grouped: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (caller, actions) in used {
        let grantee = match caller.split_once(":role/").map(|(_, name)| name) {
            Some(name) if name.starts_with(member_role_name) => MEMBER_ROLE.to_owned(),
            // Any other role is the tests' own, seeding a member account as its administrator.
            Some(_) => continue,
            None => caller,
        };
        grouped.entry(grantee).or_default().extend(actions);
    }
    grouped
}

fn all_grants() -> BTreeMap<String, BTreeSet<String>> {
    let template = maestro_template();
    let mut grants = function_grants(&template.document);
    let member = Template::load(&moto::repository_root().join("infra/member-role.yaml"))
        .expect("infra/member-role.yaml loads");
    grants.insert(
        MEMBER_ROLE.to_owned(),
        granted(
            &member.document["Resources"]["DiscoveryRole"]["Properties"]["Policies"],
            None,
        ),
    );
    grants
}

fn member_role_name() -> String {
    let template = maestro_template();
    template.document["Parameters"]["MemberRoleName"]["Default"]
        .as_str()
        .expect("the template names the member role by default")
        .to_owned()
}

#[test]
#[ignore = "needs the call log of an end-to-end run: `make test` runs it"]
fn every_function_is_granted_exactly_the_actions_the_tests_saw_it_call() {
    let mut used = by_grantee(read_call_log(&call_log()), &member_role_name());
    let grants = all_grants();
    for mirror in MIRRORS {
        let theirs = used.get(mirror.of).cloned().unwrap_or_default();
        let granted = grants.get(mirror.function).cloned().unwrap_or_default();
        used.entry(mirror.function.to_owned())
            .or_default()
            .extend(theirs.into_iter().filter(|action| granted.contains(action)));
    }
    let strangers: Vec<&String> = used.keys().filter(|c| !grants.contains_key(*c)).collect();
    assert!(
        strangers.is_empty(),
        "calls by callers the templates do not define: {strangers:?}"
    );
    assert!(
        used.len() > grants.len() / 2,
        "the call log holds too few callers to judge ({:?}); was it written by a whole end-to-end run?",
        used.keys()
    );
    let findings = least_privilege_findings(&grants, &used, UNOBSERVED);
    assert!(findings.is_empty(), "{}", findings.join("\n"));
}

/// The check above must fail when a permission is removed or widened; shown here on the
/// template's own grants, with calls equal to them.
#[test]
fn the_least_privilege_check_fails_when_a_permission_is_removed_or_widened() {
    let grants = all_grants();
    let used: BTreeMap<_, _> = grants
        .iter()
        .map(|(caller, actions)| {
            let called = actions
                .iter()
                .filter(|a| !a.contains('*') && !UNOBSERVED.iter().any(|u| u.excuses(caller, a)))
                .cloned()
                .collect();
            (caller.clone(), called)
        })
        .collect();
    assert_eq!(
        least_privilege_findings(&grants, &used, UNOBSERVED),
        Vec::<String>::new()
    );

    let mut removed = grants.clone();
    let crawler = removed
        .get_mut("DiscoveryCrawlerFunction")
        .expect("the template has the crawler");
    assert!(crawler.remove("ec2:DescribeInstances"));
    assert_eq!(
        least_privilege_findings(&removed, &used, UNOBSERVED),
        vec![
            "DiscoveryCrawlerFunction calls ec2:DescribeInstances, which its policy does not grant"
        ]
    );

    let mut widened = grants.clone();
    widened
        .get_mut("InventoryApiFunction")
        .expect("the template has the inventory API")
        .insert("dynamodb:*".to_owned());
    widened
        .get_mut("ConnectionsApiFunction")
        .expect("the template has the connections API")
        .insert("dynamodb:DeleteTable".to_owned());
    let findings = least_privilege_findings(&widened, &used, UNOBSERVED);
    assert_eq!(findings.len(), 2, "{findings:?}");
    assert!(findings[0].contains("ConnectionsApiFunction is granted dynamodb:DeleteTable"));
    assert!(findings[1].contains("InventoryApiFunction is granted the wildcard dynamodb:*"));
}

/// Every exception names a caller of the templates and says why it stands.
#[test]
fn every_exception_is_explained_and_names_a_real_caller() {
    let grants = all_grants();
    for u in UNOBSERVED {
        assert!(u.why.len() > 20, "{} {:?}: say why", u.function, u.actions);
        for action in u.actions {
            assert!(
                u.function == "*" || grants.get(u.function).is_some_and(|g| g.contains(*action)),
                "{} is not granted {action}: drop the exception",
                u.function
            );
        }
    }
    for m in MIRRORS {
        assert!(m.why.len() > 20, "{}: say why", m.function);
        assert!(
            grants.contains_key(m.function) && grants.contains_key(m.of),
            "{} mirrors {}",
            m.function,
            m.of
        );
    }
}

/// Actions that could escalate or reach beyond Maestro are granted on Maestro's resources
/// only, with their conditions: the wildcards the security review found (issue 13) are each
/// caught.
#[test]
fn no_function_may_write_iam_assign_access_or_reach_beyond_maestro_on_a_wildcard() {
    let template = maestro_template();
    assert_eq!(scope_findings(&template.document), Vec::<String>::new());

    let mut widened = template.document.clone();
    let statement = |function: &str, sid: &str| {
        (
            format!("/Resources/{function}/Properties/Policies"),
            sid.to_owned(),
        )
    };
    let mut widen = |(pointer, sid): (String, String), change: &dyn Fn(&mut serde_json::Value)| {
        let policies = widened
            .pointer_mut(&pointer)
            .and_then(serde_json::Value::as_array_mut)
            .expect("the function has policies");
        let found = policies
            .iter_mut()
            .filter_map(|p| p["Statement"].as_array_mut())
            .flatten()
            .find(|s| s["Sid"] == sid.as_str())
            .unwrap_or_else(|| panic!("no statement {sid}"));
        change(found);
    };
    widen(
        statement("SsoAssignmentWorkerFunction", "ProvisionRoles"),
        &|s| {
            s["Resource"] = "*".into();
        },
    );
    widen(
        statement("SsoAssignmentWorkerFunction", "ChangeAssignments"),
        &|s| {
            s["Resource"] = "*".into();
        },
    );
    widen(statement("ActionRunnerFunction", "RotateNow"), &|s| {
        s.as_object_mut().unwrap().remove("Condition");
    });
    widen(
        statement("DiscoveryCrawlerFunction", "ReachMemberAccounts"),
        &|s| {
            s.as_object_mut().unwrap().remove("Condition");
        },
    );
    widen(statement("SecretsApiFunction", "RecordActions"), &|s| {
        s.as_object_mut().unwrap().remove("Condition");
    });
    let findings = scope_findings(&widened);
    for expected in [
        "SsoAssignmentWorkerFunction ProvisionRoles: iam:CreateRole on \"*\"",
        "SsoAssignmentWorkerFunction ProvisionRoles: iam:PutRolePolicy on \"*\"",
        "SsoAssignmentWorkerFunction ChangeAssignments: sso:CreateAccountAssignment on \"*\"",
        "ActionRunnerFunction RotateNow: secretsmanager:RotateSecret without a condition",
        "DiscoveryCrawlerFunction ReachMemberAccounts: sts:AssumeRole without a condition",
        "SecretsApiFunction RecordActions: dynamodb:PutItem on any item of ApprovalsTable",
    ] {
        assert!(
            findings.iter().any(|f| f.starts_with(expected)),
            "{expected} is caught: {findings:#?}"
        );
    }
}

/// The approval links' signing key is readable by the two approval functions alone: its own
/// KMS key, a resource policy that denies every other principal, and no other function
/// granted it (issue 13, finding 5).
#[test]
fn the_signing_key_is_read_by_the_two_approval_functions_alone() {
    let template = maestro_template();
    let resources = &template.document["Resources"];
    let readers = ["ApprovalWorkflowFunction", "ApprovalDecisionFunction"];
    assert_eq!(
        resources["ApprovalSigningKey"]["Properties"]["KmsKeyId"],
        serde_json::json!({"Ref": "ApprovalSigningKeyEncryptionKey"})
    );
    let policy = resources
        .as_object()
        .expect("resources")
        .values()
        .find(|r| {
            r["Type"] == "AWS::SecretsManager::ResourcePolicy"
                && r["Properties"]["SecretId"] == serde_json::json!({"Ref": "ApprovalSigningKey"})
        })
        .expect("the signing key has a resource policy");
    let deny = &policy["Properties"]["ResourcePolicy"]["Statement"][0];
    assert_eq!(deny["Effect"], "Deny");
    assert_eq!(deny["Principal"], "*");
    assert_eq!(deny["Action"], "secretsmanager:GetSecretValue");
    let allowed: Vec<serde_json::Value> = readers
        .iter()
        .map(|f| serde_json::json!({"Fn::GetAtt": [format!("{f}Role"), "Arn"]}))
        .collect();
    assert_eq!(
        deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"],
        serde_json::Value::Array(allowed)
    );
    // Granted to those two, with the key's decryption; to no other function.
    for (function, grants) in function_grants(&template.document) {
        let statements = resources[&function]["Properties"]["Policies"].to_string();
        let reads = statements.contains("\"Ref\":\"ApprovalSigningKey\"");
        assert_eq!(
            reads,
            readers.contains(&function.as_str()),
            "{function} and the signing key"
        );
        if reads {
            assert!(grants.contains("kms:Decrypt"), "{function} decrypts it");
        }
    }
}
