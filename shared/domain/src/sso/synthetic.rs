//! Synthetic organisations that follow the SSO model's conventions, for tests and the planner
//! benchmark: deterministic, any size, with every kind of rule represented.

use std::collections::BTreeMap;

use super::assignment_monitor::{AccountId, PermissionSetArn, PrincipalId, PrincipalType};
use super::plan::{
    AccountStatus, Assignment, OrgAccount, PermissionSetInfo, PlanInputs, Principal,
};

/// How big an organisation to make.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    pub accounts: usize,
    pub permission_sets: usize,
    pub groups: usize,
    /// Distinct workloads; accounts and groups are spread over them.
    pub workloads: usize,
}

/// The job-functions the synthetic organisation uses; all are in the default model.
/// `security_auditor` and `finops` work across workloads (`workload_all`).
const JOB_FUNCTIONS: [&str; 5] = [
    "developer",
    "tester",
    "operator",
    "security_auditor",
    "finops",
];
const ENVIRONMENT_OUS: [&str; 4] = ["development", "staging", "production", "sandbox"];

pub fn account_id(i: usize) -> AccountId {
    AccountId::try_from(format!("{:012}", 100_000_000_000u64 + i as u64)).expect("twelve digits")
}

pub fn permission_set_arn(i: usize) -> PermissionSetArn {
    PermissionSetArn::try_from(format!(
        "arn:aws:sso:::permissionSet/ssoins-0000000000000000/ps-{i:016x}"
    ))
    .expect("a permission set ARN")
}

pub fn principal_id(kind: &str, i: usize) -> PrincipalId {
    PrincipalId::try_from(format!("{kind}-{i:08}")).expect("a principal id")
}

fn tags(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// An organisation of `size`, with no assignments yet, shaped like a real one:
///
/// - Accounts cycle through development, staging and production (one in 20 is a sandbox owned
///   by a user), one in 50 is suspended, and one in 100 sits in a Security OU with no
///   environment; three accounts per workload.
/// - Groups are `<job_function>_workload_<workload>`, one per job-function and workload, plus
///   one central group in 500 for the cross-workload job-functions.
/// - Permission sets: one sandbox set, one `workload_all` set per cross-workload job-function,
///   one `workload_match` set per per-workload job-function, one in 25 untagged, and the rest
///   team sets listing one to three workloads.
pub fn organisation(size: Size) -> PlanInputs {
    let workload = |i: usize| format!("w{}", i % size.workloads.max(1));
    let accounts = (0..size.accounts)
        .map(|i| {
            let (status, path) = if i % 100 == 99 {
                (AccountStatus::Active, vec!["Security".to_owned()])
            } else if i % 50 == 49 {
                (
                    AccountStatus::Suspended,
                    vec!["Workloads".to_owned(), "production".to_owned()],
                )
            } else if i % 20 == 19 {
                (
                    AccountStatus::Active,
                    vec!["Workloads".to_owned(), "sandbox".to_owned()],
                )
            } else {
                let ou = ENVIRONMENT_OUS[i % 3];
                (
                    AccountStatus::Active,
                    vec!["Workloads".to_owned(), ou.to_owned()],
                )
            };
            let mut account_tags = vec![("workload", workload(i / 3))];
            if path.last().is_some_and(|ou| ou == "sandbox") {
                account_tags.push(("owner", format!("user{}", i % 97)));
            }
            OrgAccount {
                id: account_id(i),
                name: format!("account-{i}"),
                status,
                tags: tags(&account_tags),
                ou_path: Some(path),
            }
        })
        .collect();

    let per_workload = ["developer", "tester", "operator"];
    let groups = (0..size.groups)
        .map(|i| {
            let name = if i % 500 == 0 {
                let job_function = JOB_FUNCTIONS[3 + (i / 500) % 2];
                format!("{job_function}_workload_central{}", i / 500)
            } else {
                format!("{}_workload_{}", per_workload[i % 3], workload(i / 3))
            };
            Principal {
                id: principal_id("group", i),
                name,
            }
        })
        .collect();
    let users = (0..97)
        .map(|i| Principal {
            id: principal_id("user", i),
            name: format!("user{i}"),
        })
        .collect();

    let permission_sets = (0..size.permission_sets)
        .map(|i| {
            let set_tags = match i {
                0 => tags(&[("job_function", "sandbox_owner".to_owned())]),
                1 | 2 => tags(&[
                    ("job_function", JOB_FUNCTIONS[2 + i].to_owned()),
                    ("workloads", "workload_all".to_owned()),
                ]),
                3..=5 => tags(&[
                    ("job_function", per_workload[i - 3].to_owned()),
                    ("workloads", "workload_match".to_owned()),
                ]),
                _ if i % 25 == 0 => BTreeMap::new(),
                _ => {
                    let listed: Vec<String> =
                        (0..1 + i % 3).map(|k| workload(i * 3 + k * 7)).collect();
                    tags(&[
                        ("job_function", per_workload[i % 3].to_owned()),
                        ("workloads", listed.join(", ")),
                    ])
                }
            };
            PermissionSetInfo {
                arn: permission_set_arn(i),
                name: format!("set-{i}"),
                tags: set_tags,
            }
        })
        .collect();

    PlanInputs {
        management_account_id: Some(account_id(0)),
        accounts,
        permission_sets,
        groups,
        users,
        assignments: Vec::new(),
    }
}

/// An assignment of group `group` to account `account` with permission set `set`.
pub fn group_assignment(account: usize, set: usize, group: usize) -> Assignment {
    Assignment {
        account_id: account_id(account),
        permission_set_arn: permission_set_arn(set),
        principal_type: PrincipalType::Group,
        principal_id: principal_id("group", group),
    }
}
