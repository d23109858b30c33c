//! A small sample organisation for `make up`: OUs per SDLC environment, tagged accounts (one
//! of them closed, so SUSPENDED), identity-store groups, tagged permission sets and one
//! untagged one with a hand-made assignment, following the SSO model of BRIEF §2.
//! `sample_inventory` adds an estate for discovery in two accounts and two regions, and
//! connects both.

use std::fmt;

use aws_sdk_organizations::types::Tag as AccountTag;
use aws_sdk_ssoadmin::types::Tag as PermissionSetTag;
use maestro_aws::SdkConfig;
use serde::{Deserialize, Serialize};

use crate::error::{LocalCloudError, sdk_error};
use crate::identity_center::{AssignmentTarget, Operation, request_assignment};

/// What the seed created, for the operator to read and for `maestro-localcloud sso-request`
/// to look names up in.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SampleOrganisation {
    pub instance_arn: String,
    pub identity_store_id: String,
    pub accounts: Vec<Named>,
    pub groups: Vec<Named>,
    pub users: Vec<Named>,
    pub permission_sets: Vec<Named>,
}

/// A name and the id (or ARN) the emulator gave it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Named {
    pub name: String,
    pub id: String,
}

impl Named {
    fn new(name: &str, id: String) -> Self {
        Named {
            name: name.to_owned(),
            id,
        }
    }
}

/// Finds `name` among `items`, or says which names there are.
pub fn find<'a>(items: &'a [Named], what: &str, name: &str) -> Result<&'a Named, String> {
    items.iter().find(|item| item.name == name).ok_or_else(|| {
        let known: Vec<&str> = items.iter().map(|item| item.name.as_str()).collect();
        format!("no {what} named {name:?}; the sample organisation has {known:?}")
    })
}

impl fmt::Display for SampleOrganisation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Sample organisation:")?;
        writeln!(f, "  IAM Identity Center instance: {}", self.instance_arn)?;
        writeln!(f, "  identity store: {}", self.identity_store_id)?;
        for (what, items) in [
            ("account", &self.accounts),
            ("group", &self.groups),
            ("user", &self.users),
            ("permission set", &self.permission_sets),
        ] {
            for Named { name, id } in items {
                writeln!(f, "  {what} {name}: {id}")?;
            }
        }
        Ok(())
    }
}

/// (account name, OU path under the root, workload, owner)
const ACCOUNTS: &[(&str, &[&str], &str, Option<&str>)] = &[
    (
        "payments-development",
        &["Workloads", "development"],
        "payments",
        None,
    ),
    (
        "payments-staging",
        &["Workloads", "staging"],
        "payments",
        None,
    ),
    (
        "payments-production",
        &["Workloads", "production"],
        "payments",
        None,
    ),
    (
        "checkout-development",
        &["Workloads", "development"],
        "checkout",
        None,
    ),
    (
        "checkout-production",
        &["Workloads", "production"],
        "checkout",
        None,
    ),
    (
        "sandbox-alice",
        &["Workloads", "sandbox"],
        "sandbox",
        Some("alice"),
    ),
    ("log-archive", &["Security"], "security", None),
    (
        "payments-retired",
        &["Workloads", "production"],
        "payments",
        None,
    ),
];

/// Closed after it is created, so the organisation has a SUSPENDED account.
const CLOSED_ACCOUNT: &str = "payments-retired";

/// An assignment made by hand with the untagged permission set: the model must leave it.
const HAND_MADE: (&str, &str, &str) = (
    "payments-production",
    "BillingReadOnly",
    "developer_workload_payments",
);

const GROUPS: &[&str] = &[
    "developer_workload_payments",
    "developer_workload_checkout",
    "tester_workload_payments",
    "security_auditor_workload_security",
];

/// (name, job_function tag, workloads tag); a set without tags is not managed by the model.
const PERMISSION_SETS: &[(&str, Option<(&str, &str)>)] = &[
    ("Developer", Some(("developer", "workload_match"))),
    ("Tester", Some(("tester", "payments checkout"))),
    (
        "SecurityAuditor",
        Some(("security_auditor", "workload_all")),
    ),
    ("SandboxOwner", Some(("sandbox_owner", "workload_match"))),
    ("BillingReadOnly", None),
];

fn seed_error(what: &str) -> impl Fn(String) -> LocalCloudError + '_ {
    move |detail| LocalCloudError::build(&format!("sample organisation: {what}"), detail)
}

pub async fn sample_organisation(
    config: &SdkConfig,
) -> Result<SampleOrganisation, LocalCloudError> {
    let organizations = aws_sdk_organizations::Client::new(config);
    let identity_store = aws_sdk_identitystore::Client::new(config);
    let sso_admin = aws_sdk_ssoadmin::Client::new(config);

    organizations
        .create_organization()
        .feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All)
        .send()
        .await
        .map_err(|e| seed_error("organization")(sdk_error(e)))?;
    let root_id = organizations
        .list_roots()
        .send()
        .await
        .map_err(|e| seed_error("roots")(sdk_error(e)))?
        .roots
        .unwrap_or_default()
        .into_iter()
        .find_map(|root| root.id)
        .ok_or_else(|| seed_error("roots")("the organisation has no root".into()))?;

    let mut ous: Vec<(Vec<&str>, String)> = Vec::new();
    let mut accounts = Vec::new();
    for (name, path, workload, owner) in ACCOUNTS {
        let mut parent = root_id.clone();
        for depth in 1..=path.len() {
            let prefix = path[..depth].to_vec();
            parent = match ous.iter().find(|(p, _)| *p == prefix) {
                Some((_, id)) => id.clone(),
                None => {
                    let id = organizations
                        .create_organizational_unit()
                        .parent_id(&parent)
                        .name(prefix[depth - 1])
                        .send()
                        .await
                        .map_err(|e| seed_error("OU")(sdk_error(e)))?
                        .organizational_unit
                        .and_then(|ou| ou.id)
                        .ok_or_else(|| seed_error("OU")("no id returned".into()))?;
                    ous.push((prefix, id.clone()));
                    id
                }
            };
        }
        let account_id = organizations
            .create_account()
            .account_name(*name)
            .email(format!("{name}@example.com"))
            .send()
            .await
            .map_err(|e| seed_error(name)(sdk_error(e)))?
            .create_account_status
            .and_then(|status| status.account_id)
            .ok_or_else(|| seed_error(name)("no account id returned".into()))?;
        organizations
            .move_account()
            .account_id(&account_id)
            .source_parent_id(&root_id)
            .destination_parent_id(&parent)
            .send()
            .await
            .map_err(|e| seed_error(name)(sdk_error(e)))?;
        let mut tags = vec![account_tag("workload", workload)?];
        if let Some(owner) = owner {
            tags.push(account_tag("owner", owner)?);
        }
        organizations
            .tag_resource()
            .resource_id(&account_id)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|e| seed_error(name)(sdk_error(e)))?;
        accounts.push(Named::new(name, account_id));
    }

    let instance = sso_admin
        .list_instances()
        .send()
        .await
        .map_err(|e| seed_error("instance")(sdk_error(e)))?
        .instances
        .unwrap_or_default()
        .into_iter()
        .next()
        .ok_or_else(|| seed_error("instance")("no IAM Identity Center instance".into()))?;
    let instance_arn = instance.instance_arn.unwrap_or_default();
    let identity_store_id = instance.identity_store_id.unwrap_or_default();

    let mut groups = Vec::new();
    for name in GROUPS {
        let group_id = identity_store
            .create_group()
            .identity_store_id(&identity_store_id)
            .display_name(*name)
            .send()
            .await
            .map_err(|e| seed_error(name)(sdk_error(e)))?
            .group_id;
        groups.push(Named::new(name, group_id));
    }
    let alice = identity_store
        .create_user()
        .identity_store_id(&identity_store_id)
        .user_name("alice")
        .display_name("Alice Example")
        .name(
            aws_sdk_identitystore::types::Name::builder()
                .given_name("Alice")
                .family_name("Example")
                .build(),
        )
        .send()
        .await
        .map_err(|e| seed_error("alice")(sdk_error(e)))?;
    let users = vec![Named::new("alice", alice.user_id)];

    let mut permission_sets = Vec::new();
    for (name, tags) in PERMISSION_SETS {
        let mut request = sso_admin
            .create_permission_set()
            .instance_arn(&instance_arn)
            .name(*name)
            .session_duration("PT8H");
        if let Some((job_function, workloads)) = tags {
            request = request
                .tags(permission_set_tag("job_function", job_function)?)
                .tags(permission_set_tag("workloads", workloads)?);
        }
        let arn = request
            .send()
            .await
            .map_err(|e| seed_error(name)(sdk_error(e)))?
            .permission_set
            .and_then(|set| set.permission_set_arn)
            .unwrap_or_default();
        permission_sets.push(Named::new(name, arn));
    }

    let closed =
        find(&accounts, "account", CLOSED_ACCOUNT).map_err(seed_error("closed account"))?;
    organizations
        .close_account()
        .account_id(&closed.id)
        .send()
        .await
        .map_err(|e| seed_error(CLOSED_ACCOUNT)(sdk_error(e)))?;

    let (account, set, group) = HAND_MADE;
    let target = AssignmentTarget {
        instance_arn: instance_arn.clone(),
        account_id: find(&accounts, "account", account)
            .map_err(seed_error("hand-made assignment"))?
            .id
            .clone(),
        permission_set_arn: find(&permission_sets, "permission set", set)
            .map_err(seed_error("hand-made assignment"))?
            .id
            .clone(),
        principal_id: find(&groups, "group", group)
            .map_err(seed_error("hand-made assignment"))?
            .id
            .clone(),
        principal_type: aws_sdk_ssoadmin::types::PrincipalType::Group,
    };
    request_assignment(config, &target, Operation::Create).await?;

    Ok(SampleOrganisation {
        instance_arn,
        identity_store_id,
        accounts,
        groups,
        users,
        permission_sets,
    })
}

fn account_tag(key: &str, value: &str) -> Result<AccountTag, LocalCloudError> {
    AccountTag::builder()
        .key(key)
        .value(value)
        .build()
        .map_err(|e| seed_error("tag")(e.to_string()))
}

fn permission_set_tag(key: &str, value: &str) -> Result<PermissionSetTag, LocalCloudError> {
    PermissionSetTag::builder()
        .key(key)
        .value(value)
        .build()
        .map_err(|e| seed_error("tag")(e.to_string()))
}

/// Two accounts for the sample estate in tests: the one Maestro runs in, and a member reached
/// through `MaestroDiscovery` with the ExternalId `maestro-sample`.
pub const SAMPLE_ACCOUNTS: [&str; 2] = ["123456789012", "222222222222"];
pub const SAMPLE_REGIONS: [&str; 2] = ["eu-west-1", "us-east-1"];

/// Runs `localcloud/moto/sample_inventory.py` (`seed` or `expected`) against the emulator and
/// answers what it printed.
pub fn sample_inventory_script(
    moto_endpoint: &str,
    command: &str,
    accounts: &[&str],
    regions: &[&str],
) -> Result<serde_json::Value, LocalCloudError> {
    let mut run = std::process::Command::new(crate::moto::default_python());
    run.arg(crate::moto::repository_root().join("localcloud/moto/sample_inventory.py"))
        .arg(command)
        .arg("--endpoint")
        .arg(moto_endpoint);
    for account in accounts {
        run.arg("--account").arg(account);
    }
    for region in regions {
        run.arg("--region").arg(region);
    }
    let output = run.output()?;
    if !output.status.success() {
        return Err(LocalCloudError::build(
            &format!("sample inventory ({command})"),
            String::from_utf8_lossy(&output.stderr),
        ));
    }
    serde_json::from_slice(&output.stdout)
        .map_err(|e| LocalCloudError::build("sample inventory output", e))
}

/// Seeds the sample estate in the account Maestro runs in and in the organisation's
/// `payments-production`, in both regions; connects both accounts over the management API (the
/// member through its role) and starts their first sync. Answers what to read.
pub async fn sample_inventory(
    organisation: &SampleOrganisation,
    moto_endpoint: &str,
    http_endpoint: &str,
    authorization: &str,
) -> Result<String, LocalCloudError> {
    let member = find(&organisation.accounts, "account", "payments-production")
        .map_err(|e| LocalCloudError::build("sample inventory", e))?
        .id
        .clone();
    let accounts = [SAMPLE_ACCOUNTS[0], member.as_str()];
    sample_inventory_script(moto_endpoint, "seed", &accounts, &SAMPLE_REGIONS)?;
    let client = reqwest::Client::new();
    for (id, account) in [
        ("sample-own", accounts[0]),
        ("payments-production", accounts[1]),
    ] {
        let mut connection = serde_json::json!({
            "id": id,
            "name": format!("Sample account {account}"),
            "accountId": account,
            "regions": SAMPLE_REGIONS,
        });
        if account != SAMPLE_ACCOUNTS[0] {
            connection["roleArn"] = format!("arn:aws:iam::{account}:role/MaestroDiscovery").into();
            connection["externalId"] = "maestro-sample".into();
        }
        for (path, body) in [
            ("/connections".to_owned(), connection.to_string()),
            (format!("/connections/{id}/sync"), String::new()),
        ] {
            let response = client
                .post(format!("{http_endpoint}{path}"))
                .header("authorization", authorization)
                .body(body)
                .send()
                .await
                .map_err(|e| LocalCloudError::build("sample inventory", e))?;
            if !response.status().is_success() {
                let answer = response.text().await.unwrap_or_default();
                return Err(LocalCloudError::build(
                    &format!("sample inventory: POST {path}"),
                    answer,
                ));
            }
        }
    }
    Ok(format!(
        "Sample inventory: connections sample-own and payments-production ({member}) are crawling two regions (about a minute).\n  Read it: curl -H \"Authorization: Bearer $TOKEN\" {http_endpoint}/inventory/summary (TOKEN: see below)"
    ))
}
