use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::sso::synthetic;

/// A small organisation, built by name.
struct Org {
    inputs: PlanInputs,
}

fn id_of(name: &str) -> String {
    // Stable, valid-looking ids derived from names, so tests can speak in names.
    let hash = name
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    format!("{:012}", hash % 1_000_000_000_000)
}

impl Org {
    fn new() -> Self {
        Org {
            inputs: PlanInputs::default(),
        }
    }

    fn account(mut self, name: &str, ou_path: &[&str], tags: &[(&str, &str)]) -> Self {
        self.inputs.accounts.push(OrgAccount {
            id: AccountId::try_from(id_of(name)).unwrap(),
            name: name.into(),
            status: AccountStatus::Active,
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            ou_path: Some(ou_path.iter().map(|s| (*s).to_owned()).collect()),
        });
        self
    }

    fn set(mut self, name: &str, tags: &[(&str, &str)]) -> Self {
        self.inputs.permission_sets.push(PermissionSetInfo {
            arn: arn(name),
            name: name.into(),
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        });
        self
    }

    fn group(mut self, name: &str) -> Self {
        self.inputs.groups.push(Principal {
            id: PrincipalId::try_from(format!("g-{}", id_of(name))).unwrap(),
            name: name.into(),
        });
        self
    }

    fn user(mut self, name: &str) -> Self {
        self.inputs.users.push(Principal {
            id: PrincipalId::try_from(format!("u-{}", id_of(name))).unwrap(),
            name: name.into(),
        });
        self
    }

    fn assigned(mut self, account: &str, set: &str, group: &str) -> Self {
        self.inputs
            .assignments
            .push(group_assignment(account, set, group));
        self
    }

    fn plan(&self) -> Plan {
        plan(&SsoModel::default(), &self.inputs).expect("the inputs are complete")
    }
}

fn arn(set: &str) -> PermissionSetArn {
    PermissionSetArn::try_from(format!(
        "arn:aws:sso:::permissionSet/ssoins-0000000000000000/ps-{}",
        id_of(set)
    ))
    .unwrap()
}

fn group_assignment(account: &str, set: &str, group: &str) -> Assignment {
    Assignment {
        account_id: AccountId::try_from(id_of(account)).unwrap(),
        permission_set_arn: arn(set),
        principal_type: PrincipalType::Group,
        principal_id: PrincipalId::try_from(format!("g-{}", id_of(group))).unwrap(),
    }
}

/// The organisation of the post: two workloads over three environments, a sandbox, a
/// security account outside the environments.
fn organisation() -> Org {
    Org::new()
        .account(
            "payments-dev",
            &["Workloads", "development"],
            &[("workload", "payments")],
        )
        .account(
            "payments-prod",
            &["Workloads", "production"],
            &[("workload", "payments")],
        )
        .account(
            "checkout-dev",
            &["Workloads", "development"],
            &[("workload", "checkout")],
        )
        .account(
            "checkout-stg",
            &["Workloads", "staging"],
            &[("workload", "checkout")],
        )
        .account(
            "sandbox-alice",
            &["Workloads", "sandbox"],
            &[("workload", "sandbox"), ("owner", "alice")],
        )
        .account("log-archive", &["Security"], &[("workload", "security")])
        .set(
            "Developer",
            &[
                ("job_function", "developer"),
                ("workloads", "workload_match"),
            ],
        )
        .set(
            "Tester",
            &[
                ("job_function", "tester"),
                ("workloads", "payments, checkout"),
            ],
        )
        .set(
            "PaymentsOnlyTester",
            &[("job_function", "tester"), ("workloads", "payments")],
        )
        .set(
            "SecurityAudit",
            &[
                ("job_function", "security_auditor"),
                ("workloads", "workload_all"),
            ],
        )
        .set("SandboxOwner", &[("job_function", "sandbox_owner")])
        .set("BillingReadOnly", &[])
        .group("developer_workload_payments")
        .group("developer_workload_checkout")
        .group("tester_workload_checkout")
        .group("security_auditor_workload_central")
        .group("Administrators")
        .user("alice")
}

fn creates(plan: &Plan) -> BTreeSet<Assignment> {
    plan.create.iter().map(|c| c.assignment.clone()).collect()
}

#[test]
fn workload_match_assigns_a_group_to_the_accounts_of_its_workload() {
    let plan = organisation().plan();
    let created = creates(&plan);
    assert!(created.contains(&group_assignment(
        "payments-dev",
        "Developer",
        "developer_workload_payments"
    )));
    assert!(created.contains(&group_assignment(
        "payments-prod",
        "Developer",
        "developer_workload_payments"
    )));
    assert!(!created.contains(&group_assignment(
        "checkout-dev",
        "Developer",
        "developer_workload_payments"
    )));
}

#[test]
fn an_explicit_list_needs_the_workload_listed_and_an_allowed_environment() {
    let created = creates(&organisation().plan());
    assert!(created.contains(&group_assignment(
        "checkout-dev",
        "Tester",
        "tester_workload_checkout"
    )));
    assert!(created.contains(&group_assignment(
        "checkout-stg",
        "Tester",
        "tester_workload_checkout"
    )));
    // The list does not hold checkout.
    assert!(!created.contains(&group_assignment(
        "checkout-dev",
        "PaymentsOnlyTester",
        "tester_workload_checkout"
    )));
}

#[test]
fn workload_all_reaches_every_managed_account_of_an_allowed_environment() {
    let plan = organisation().plan();
    let audited: BTreeSet<String> = plan
        .create
        .iter()
        .filter(|c| c.assignment.permission_set_arn == arn("SecurityAudit"))
        .map(|c| c.assignment.account_id.to_string())
        .collect();
    let expected: BTreeSet<String> = [
        "payments-dev",
        "payments-prod",
        "checkout-dev",
        "checkout-stg",
    ]
    .iter()
    .map(|a| id_of(a))
    .collect();
    assert_eq!(audited, expected, "not the sandbox, not the Security OU");
}

#[test]
fn a_sandbox_gets_exactly_its_owner() {
    let plan = organisation().plan();
    let sandbox = AccountId::try_from(id_of("sandbox-alice")).unwrap();
    let on_sandbox: Vec<&PlannedCreate> = plan
        .create
        .iter()
        .filter(|c| c.assignment.account_id == sandbox)
        .collect();
    assert_eq!(on_sandbox.len(), 1, "{on_sandbox:?}");
    assert_eq!(on_sandbox[0].assignment.principal_type, PrincipalType::User);
    assert_eq!(
        on_sandbox[0].assignment.permission_set_arn,
        arn("SandboxOwner")
    );
    assert_eq!(
        on_sandbox[0].rule,
        Rule::SandboxOwner {
            owner: "alice".into()
        }
    );
}

#[test]
fn a_sandbox_owner_tag_differing_only_in_case_still_names_its_owner() {
    // Issue 14, finding 7: `Alice` for the user `alice` deleted the owner's assignment.
    let mut org = organisation().assigned("sandbox-alice", "SandboxOwner", "alice");
    org.inputs.assignments.last_mut().unwrap().principal_type = PrincipalType::User;
    org.inputs.assignments.last_mut().unwrap().principal_id =
        PrincipalId::try_from(format!("u-{}", id_of("alice"))).unwrap();
    let sandbox = org
        .inputs
        .accounts
        .iter_mut()
        .find(|a| a.name == "sandbox-alice")
        .unwrap();
    sandbox.tags.insert("owner".into(), "Alice".into());
    let plan = org.plan();
    assert!(plan.delete.is_empty(), "{:?}", plan.delete);
    assert!(plan.sandboxes_without_owner.is_empty());
    assert_eq!(plan.unchanged, 1);

    // Two names that differ only in case are ambiguous: listed, not guessed.
    let ambiguous = organisation().user("ALICE");
    let plan = ambiguous.plan();
    assert!(
        plan.sandboxes_without_owner.is_empty(),
        "the exact name wins"
    );
    let mut ambiguous = organisation().user("ALICE").user("Alice2");
    ambiguous
        .inputs
        .accounts
        .iter_mut()
        .find(|a| a.name == "sandbox-alice")
        .unwrap()
        .tags
        .insert("owner".into(), "aLiCe".into());
    let plan = ambiguous.plan();
    assert_eq!(plan.sandboxes_without_owner.len(), 1, "{plan:?}");
    assert!(
        plan.sandboxes_without_owner[0]
            .problem
            .contains("differ only in case")
    );
}

#[test]
fn a_sandbox_handed_to_someone_else_loses_its_old_owner() {
    // The old owner is no longer named by any sandbox, yet the model made the assignment.
    let mut org = organisation().user("bob");
    org.inputs.assignments.push(Assignment {
        account_id: AccountId::try_from(id_of("sandbox-alice")).unwrap(),
        permission_set_arn: arn("SandboxOwner"),
        principal_type: PrincipalType::User,
        principal_id: PrincipalId::try_from(format!("u-{}", id_of("alice"))).unwrap(),
    });
    org.inputs
        .accounts
        .iter_mut()
        .find(|a| a.name == "sandbox-alice")
        .unwrap()
        .tags
        .insert("owner".into(), "bob".into());
    let plan = org.plan();
    let deleted: Vec<&str> = plan
        .delete
        .iter()
        .map(|d| d.assignment.principal_id.as_str())
        .collect();
    assert_eq!(deleted, vec![format!("u-{}", id_of("alice")).as_str()]);
    assert!(
        plan.unmanaged
            .iter()
            .all(|u| u.reason != UnmanagedReason::ForeignPrincipal)
    );
}

#[test]
fn a_sandbox_without_a_resolvable_owner_is_listed_not_assigned() {
    let org = organisation().account(
        "sandbox-bob",
        &["Workloads", "sandbox"],
        &[("owner", "bob")],
    );
    let plan = org.plan();
    assert_eq!(plan.sandboxes_without_owner.len(), 1);
    assert!(plan.sandboxes_without_owner[0].problem.contains("bob"));
}

#[test]
fn excluded_accounts_are_listed_and_their_assignments_left_alone() {
    let mut org = organisation()
        .account(
            "old",
            &["Workloads", "production"],
            &[("workload", "payments")],
        )
        .assigned("log-archive", "Developer", "developer_workload_payments")
        .assigned("old", "Developer", "developer_workload_payments");
    org.inputs.accounts.last_mut().unwrap().status = AccountStatus::Suspended;
    org.inputs.management_account_id = Some(AccountId::try_from(id_of("payments-prod")).unwrap());
    let plan = org.plan();

    let excluded: BTreeMap<String, Exclusion> = plan
        .excluded_accounts
        .iter()
        .map(|e| (e.name.clone(), e.reason.clone()))
        .collect();
    assert_eq!(excluded["log-archive"], Exclusion::NoEnvironment);
    assert_eq!(excluded["payments-prod"], Exclusion::ManagementAccount);
    assert_eq!(
        excluded["old"],
        Exclusion::NotActive {
            status: AccountStatus::Suspended
        }
    );
    assert!(plan.delete.is_empty());
    assert_eq!(plan.unmanaged.len(), 2);
    assert!(
        plan.unmanaged
            .iter()
            .all(|u| u.reason == UnmanagedReason::ExcludedAccount)
    );
}

#[test]
fn assignments_of_untagged_permission_sets_are_never_touched() {
    let plan = organisation()
        .assigned("payments-dev", "BillingReadOnly", "Administrators")
        .plan();
    assert!(plan.delete.is_empty());
    assert_eq!(plan.unmanaged.len(), 1);
    assert_eq!(
        plan.unmanaged[0].reason,
        UnmanagedReason::UnmanagedPermissionSet
    );
    assert_eq!(plan.unmanaged_permission_sets, vec![arn("BillingReadOnly")]);
    assert_eq!(plan.unmanaged_groups, vec!["Administrators".to_owned()]);
}

#[test]
fn existing_desired_assignments_are_unchanged_and_undesired_managed_ones_deleted() {
    let plan = organisation()
        .assigned("payments-dev", "Developer", "developer_workload_payments")
        .assigned("checkout-dev", "Developer", "developer_workload_payments")
        .plan();
    assert_eq!(plan.unchanged, 1);
    assert_eq!(plan.desired, plan.unchanged + plan.create.len());
    let deleted: Vec<&Assignment> = plan.delete.iter().map(|d| &d.assignment).collect();
    assert_eq!(
        deleted,
        vec![&group_assignment(
            "checkout-dev",
            "Developer",
            "developer_workload_payments"
        )]
    );
    assert_eq!(plan.delete[0].held, None, "development is not protected");
}

#[test]
fn a_recreated_group_gets_its_assignments_back_under_its_new_id() {
    let mut org =
        organisation().assigned("payments-dev", "Developer", "developer_workload_payments");
    // The group was deleted and created again: same name, new id.
    let group = org
        .inputs
        .groups
        .iter_mut()
        .find(|g| g.name == "developer_workload_payments")
        .unwrap();
    group.id = PrincipalId::try_from("g-recreated").unwrap();
    let plan = org.plan();
    assert_eq!(plan.delete.len(), 1, "the old id's assignment goes");
    assert!(plan.create.iter().any(|c| {
        c.assignment.principal_id.as_str() == "g-recreated"
            && c.assignment.account_id.as_str() == id_of("payments-dev")
            && c.assignment.permission_set_arn == arn("Developer")
    }));
}

#[test]
fn deletes_over_the_threshold_or_in_production_are_held_and_creates_proceed() {
    let plan = organisation()
        .assigned("payments-prod", "Tester", "tester_workload_checkout")
        .plan();
    assert_eq!(
        plan.delete[0].held,
        Some(HoldReason::ProtectedEnvironment {
            environment: Environment::Production
        })
    );
    assert!(plan.deletes_to_run().next().is_none());
    assert!(!plan.create.is_empty());

    let mut org = organisation();
    for i in 0..11 {
        let group = format!("developer_workload_temp{i}");
        org = org
            .group(&group)
            .assigned("checkout-dev", "Developer", &group);
    }
    let plan = org.plan();
    assert_eq!(plan.delete.len(), 11);
    assert!(plan.delete.iter().all(|d| d.held
        == Some(HoldReason::OverThreshold {
            deletes: 11,
            threshold: 10
        })));
}

#[test]
fn partial_or_unknown_inputs_abort_with_every_reason() {
    let mut org = organisation().set(
        "Marketing",
        &[("job_function", "marketer"), ("workloads", "x")],
    );
    org.inputs.accounts[0].ou_path = None;
    org.inputs.groups.clear();
    org = org.set("Broken", &[("job_function", "developer")]);
    let aborted = plan(&SsoModel::default(), &org.inputs).unwrap_err();
    assert!(aborted.reasons.contains(&AbortReason::NoGroups));
    assert!(
        aborted
            .reasons
            .iter()
            .any(|r| matches!(r, AbortReason::ParentsUnreadable { .. }))
    );
    assert!(aborted.reasons.iter().any(|r| matches!(
        r,
        AbortReason::UnknownJobFunction { job_function, .. } if job_function == "marketer"
    )));
    assert!(aborted.reasons.iter().any(|r| matches!(
        r,
        AbortReason::InvalidWorkloads { name, .. } if name == "Broken"
    )));
}

#[test]
fn a_group_with_an_unknown_job_function_is_listed_unmanaged_and_the_sync_goes_on() {
    // Issue 14, finding 7: one such group in the identity provider stopped every run.
    let org = organisation().group("marketer_workload_payments").assigned(
        "payments-dev",
        "Developer",
        "marketer_workload_payments",
    );
    let plan = org.plan();
    assert!(
        plan.unmanaged_groups
            .contains(&"marketer_workload_payments".to_owned())
    );
    assert!(!plan.create.is_empty(), "the rest of the model is applied");
    assert!(plan.delete.is_empty(), "nor is its assignment deleted");
    assert_eq!(plan.unmanaged[0].reason, UnmanagedReason::ForeignPrincipal);
}

#[test]
fn a_workloads_tag_that_is_not_a_list_of_workload_names_stops_the_run() {
    // Issue 14, finding 7: each of these became a list that matched nothing, and every
    // assignment of the set was deleted.
    for tag in [
        "Workload_All",
        "workload-all",
        "WORKLOAD_MATCH",
        "workload match",
        "payments:checkout",
        "payments/checkout",
    ] {
        let org = organisation()
            .set(
                "Mistyped",
                &[("job_function", "developer"), ("workloads", tag)],
            )
            .assigned("payments-dev", "Mistyped", "developer_workload_payments");
        let aborted =
            plan(&SsoModel::default(), &org.inputs).expect_err(&format!("{tag:?} stops the run"));
        assert!(
            aborted.reasons.iter().any(|r| matches!(
                r,
                AbortReason::InvalidWorkloads { name, problem } if name == "Mistyped" && problem.contains(tag.split(' ').next().unwrap())
            )),
            "{tag:?}: {aborted}"
        );
    }
    assert_eq!(
        WorkloadSelector::parse(Some("payments app.v2 check-out")),
        Ok(WorkloadSelector::Listed(vec![
            "payments".into(),
            "app.v2".into(),
            "check-out".into()
        ]))
    );
}

#[test]
fn removing_an_accounts_workload_tag_holds_its_deletes_for_approval() {
    // Issue 14, finding 7: the tag removed by mistake deleted the account's assignments.
    let mut org = organisation()
        .assigned("payments-dev", "Developer", "developer_workload_payments")
        .assigned(
            "payments-dev",
            "SecurityAudit",
            "developer_workload_payments",
        );
    org.inputs.accounts[0].tags.remove("workload");
    let plan = org.plan();
    let held: BTreeMap<PermissionSetArn, Option<HoldReason>> = plan
        .delete
        .iter()
        .map(|d| (d.assignment.permission_set_arn.clone(), d.held.clone()))
        .collect();
    assert_eq!(
        held[&arn("Developer")],
        Some(HoldReason::AccountWithoutWorkload),
        "workload_match needs the account's workload"
    );
    assert_eq!(
        held[&arn("SecurityAudit")],
        None,
        "workload_all does not: a wrong group there goes at once"
    );
}

#[test]
fn assignments_of_principals_the_model_cannot_make_are_kept_unless_pruned() {
    // Issue 14, finding 8: tagging a Control Tower set removed AWSControlTowerAdmins.
    let mut org = organisation()
        .group("AWSControlTowerAdmins")
        .user("breakglass")
        .assigned("payments-dev", "Developer", "AWSControlTowerAdmins")
        .assigned("checkout-dev", "Developer", "developer_workload_payments");
    org.inputs.assignments.push(Assignment {
        account_id: AccountId::try_from(id_of("payments-dev")).unwrap(),
        permission_set_arn: arn("Developer"),
        principal_type: PrincipalType::User,
        principal_id: PrincipalId::try_from(format!("u-{}", id_of("breakglass"))).unwrap(),
    });
    // Alice owns a sandbox: her assignment on another account is the model's to remove.
    org.inputs.assignments.push(Assignment {
        account_id: AccountId::try_from(id_of("checkout-dev")).unwrap(),
        permission_set_arn: arn("SandboxOwner"),
        principal_type: PrincipalType::User,
        principal_id: PrincipalId::try_from(format!("u-{}", id_of("alice"))).unwrap(),
    });
    let plan = org.plan();
    let foreign: BTreeSet<&str> = plan
        .unmanaged
        .iter()
        .filter(|u| u.reason == UnmanagedReason::ForeignPrincipal)
        .map(|u| u.assignment.principal_id.as_str())
        .collect();
    let control_tower = format!("g-{}", id_of("AWSControlTowerAdmins"));
    let breakglass = format!("u-{}", id_of("breakglass"));
    assert_eq!(
        foreign,
        BTreeSet::from([control_tower.as_str(), breakglass.as_str()])
    );
    let deleted: BTreeSet<String> = plan
        .delete
        .iter()
        .map(|d| d.assignment.principal_id.as_str().to_owned())
        .collect();
    assert_eq!(
        deleted,
        BTreeSet::from([
            format!("g-{}", id_of("developer_workload_payments")),
            format!("u-{}", id_of("alice")),
        ])
    );

    let pruning = SsoModel::from_json(r#"{"foreignAssignments": "PRUNE"}"#).unwrap();
    let pruned = plan_with(&pruning, &org.inputs);
    assert_eq!(pruned.delete.len(), 4, "{:?}", pruned.delete);
    assert!(
        pruned
            .unmanaged
            .iter()
            .all(|u| u.reason != UnmanagedReason::ForeignPrincipal)
    );
}

fn plan_with(model: &SsoModel, inputs: &PlanInputs) -> Plan {
    plan(model, inputs).expect("the inputs are complete")
}

#[test]
fn workload_tags_parse_into_selectors() {
    assert_eq!(
        WorkloadSelector::parse(Some("workload_all")),
        Ok(WorkloadSelector::All)
    );
    assert_eq!(
        WorkloadSelector::parse(Some(" workload_match ")),
        Ok(WorkloadSelector::Match)
    );
    assert_eq!(
        WorkloadSelector::parse(Some("a, b c")),
        Ok(WorkloadSelector::Listed(vec![
            "a".into(),
            "b".into(),
            "c".into()
        ]))
    );
    assert!(WorkloadSelector::parse(Some("a workload_all")).is_err());
    assert!(WorkloadSelector::parse(Some(" , ")).is_err());
    assert!(WorkloadSelector::parse(None).is_err());
}

#[test]
fn explain_cites_the_facts_and_the_rule() {
    let org = organisation();
    let model = SsoModel::default();
    let yes = explain(
        &model,
        &org.inputs,
        "developer_workload_payments",
        "payments-dev",
        "Developer",
    )
    .unwrap();
    assert!(yes.desired);
    assert_eq!(
        yes.rule,
        Some(Rule::WorkloadMatch {
            job_function: "developer".into(),
            workload: "payments".into()
        })
    );
    assert!(
        yes.facts
            .iter()
            .any(|f| f.contains("Workloads/development")),
        "{yes:?}"
    );

    let no = explain(
        &model,
        &org.inputs,
        "tester_workload_checkout",
        "checkout-dev",
        "PaymentsOnlyTester",
    )
    .unwrap();
    assert!(!no.desired);
    assert!(
        no.verdict.contains("not in the permission set's workloads"),
        "{}",
        no.verdict
    );

    let env = explain(
        &model,
        &org.inputs,
        "tester_workload_checkout",
        "checkout-stg",
        "Tester",
    )
    .unwrap();
    assert!(env.desired, "tester may work in staging");

    let unmanaged = explain(
        &model,
        &org.inputs,
        "Administrators",
        "payments-dev",
        "BillingReadOnly",
    )
    .unwrap();
    assert!(unmanaged.verdict.contains("not managed"));

    let missing = explain(&model, &org.inputs, "nobody", "payments-dev", "Developer");
    assert!(matches!(
        missing,
        Err(ExplainError::NotFound { what: "group", .. })
    ));
}

/// The rule of BRIEF §2 written as plainly as possible, over every combination: the oracle
/// the indexed planner must agree with.
fn desired_by_brute_force(model: &SsoModel, inputs: &PlanInputs) -> BTreeSet<Assignment> {
    let mut desired = BTreeSet::new();
    for account in &inputs.accounts {
        if inputs.management_account_id.as_ref() == Some(&account.id)
            || account.status != AccountStatus::Active
        {
            continue;
        }
        let Some(environment) = model.environment_of(account.ou_path.as_deref().unwrap_or(&[]))
        else {
            continue;
        };
        for set in &inputs.permission_sets {
            let Some(job_function) = set.tags.get("job_function") else {
                continue;
            };
            if environment == Environment::Sandbox {
                if *job_function != model.sandbox_job_function {
                    continue;
                }
                let owner = account.tags.get("owner");
                let principal = inputs
                    .groups
                    .iter()
                    .find(|g| Some(&g.name) == owner)
                    .map(|g| (PrincipalType::Group, g.id.clone()))
                    .or_else(|| {
                        inputs
                            .users
                            .iter()
                            .find(|u| Some(&u.name) == owner)
                            .map(|u| (PrincipalType::User, u.id.clone()))
                    });
                if let Some((principal_type, principal_id)) = principal {
                    desired.insert(Assignment {
                        account_id: account.id.clone(),
                        permission_set_arn: set.arn.clone(),
                        principal_type,
                        principal_id,
                    });
                }
                continue;
            }
            for group in &inputs.groups {
                let Some((group_job, group_workload)) = group.name.rsplit_once("_workload_") else {
                    continue;
                };
                if group_job != job_function
                    || !model.job_functions[group_job.to_owned().as_str()].contains(&environment)
                {
                    continue;
                }
                let account_workload = account.tags.get("workload").map(String::as_str);
                let workloads = set.tags["workloads"].as_str();
                let ok = match workloads {
                    "workload_all" => true,
                    "workload_match" => account_workload == Some(group_workload),
                    list => {
                        let listed: Vec<&str> =
                            list.split([',', ' ']).filter(|w| !w.is_empty()).collect();
                        account_workload.is_some_and(|w| listed.contains(&w))
                            && account_workload == Some(group_workload)
                    }
                };
                if ok {
                    desired.insert(Assignment {
                        account_id: account.id.clone(),
                        permission_set_arn: set.arn.clone(),
                        principal_type: PrincipalType::Group,
                        principal_id: group.id.clone(),
                    });
                }
            }
        }
    }
    desired
}

#[test]
fn the_planner_agrees_with_the_rule_applied_to_every_combination() {
    let model = SsoModel::default();
    let inputs = synthetic::organisation(synthetic::Size {
        accounts: 120,
        permission_sets: 40,
        groups: 90,
        workloads: 12,
    });
    let expected = desired_by_brute_force(&model, &inputs);
    let plan = plan(&model, &inputs).unwrap();
    assert!(
        expected.len() > 100,
        "the organisation exercises the rules: {}",
        expected.len()
    );
    assert_eq!(creates(&plan), expected);
    assert!(
        plan.create
            .iter()
            .any(|c| matches!(c.rule, Rule::WorkloadAll { .. }))
    );
    assert!(
        plan.create
            .iter()
            .any(|c| matches!(c.rule, Rule::WorkloadMatch { .. }))
    );
    assert!(
        plan.create
            .iter()
            .any(|c| matches!(c.rule, Rule::WorkloadListed { .. }))
    );
    assert!(
        plan.create
            .iter()
            .any(|c| matches!(c.rule, Rule::SandboxOwner { .. }))
    );

    // Applying the plan and planning again changes nothing.
    let mut applied = inputs.clone();
    applied.assignments = expected.into_iter().collect();
    let again = super::plan(&model, &applied).unwrap();
    assert!(!again.has_changes(), "{:?}", again.create.first());
    assert_eq!(again.unchanged, again.desired);
}
