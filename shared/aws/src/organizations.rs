//! AWS Organizations: the accounts, their tags and their OU paths.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_organizations::types::{AccountState, ParentType};
use maestro_domain::port::PortError;
use maestro_domain::sso::assignment_monitor::AccountId;
use maestro_domain::sso::plan::{AccountStatus, OrgAccount};
use maestro_domain::sso::snapshot::OrganisationReader;

use crate::SdkConfig;
use crate::sdk_error::port_error;

const SERVICE: &str = "organizations";

/// How long an OU's name is trusted once read. `UpdateOrganizationalUnit` re-plans everything
/// at once; a container that read the old name a moment before uses it for this long at most.
const OU_NAME_TTL: Duration = Duration::from_secs(60);

pub struct OrganizationsReader {
    client: aws_sdk_organizations::Client,
    /// OU names by id (OUs are few and shared by many accounts).
    ou_names: Mutex<OuNames>,
}

/// OU names, each trusted for [`OU_NAME_TTL`] after it was read: a warm container must not
/// serve a renamed OU's old name (and so the wrong environment) for its whole life.
#[derive(Default)]
struct OuNames(HashMap<String, (String, Instant)>);

impl OuNames {
    fn get(&self, ou_id: &str, now: Instant) -> Option<String> {
        self.0
            .get(ou_id)
            .filter(|(_, read)| now.saturating_duration_since(*read) < OU_NAME_TTL)
            .map(|(name, _)| name.clone())
    }

    fn insert(&mut self, ou_id: &str, name: &str, now: Instant) {
        self.0.insert(ou_id.to_owned(), (name.to_owned(), now));
    }
}

impl OrganizationsReader {
    pub fn new(config: &SdkConfig) -> Self {
        OrganizationsReader {
            client: aws_sdk_organizations::Client::new(config),
            ou_names: Mutex::new(OuNames::default()),
        }
    }

    async fn tags_of(&self, account_id: &str) -> Result<BTreeMap<String, String>, PortError> {
        let mut tags = BTreeMap::new();
        let mut pages = self
            .client
            .list_tags_for_resource()
            .resource_id(account_id)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| port_error(SERVICE, account_id, e))?;
            for tag in page.tags.unwrap_or_default() {
                tags.insert(tag.key, tag.value);
            }
        }
        Ok(tags)
    }

    /// OU names from the root down to the account's parent; `None` when any parent cannot be
    /// read, which the planner treats as a partial input.
    async fn ou_path(&self, account_id: &str) -> Option<Vec<String>> {
        let mut path = Vec::new();
        let mut child = account_id.to_owned();
        // Organizations nests OUs at most five deep; the bound guards against a cycle.
        for _ in 0..8 {
            let parents = self
                .client
                .list_parents()
                .child_id(&child)
                .send()
                .await
                .map_err(|e| tracing::warn!(account_id, error = %e, "cannot read a parent"))
                .ok()?;
            let parent = parents.parents.unwrap_or_default().into_iter().next()?;
            let id = parent.id?;
            if parent.r#type == Some(ParentType::Root) {
                path.reverse();
                return Some(path);
            }
            path.push(self.ou_name(&id).await?);
            child = id;
        }
        None
    }

    async fn ou_name(&self, ou_id: &str) -> Option<String> {
        let known = self
            .ou_names
            .lock()
            .expect("the OU cache lock is never poisoned")
            .get(ou_id, Instant::now());
        if known.is_some() {
            return known;
        }
        let name = self
            .client
            .describe_organizational_unit()
            .organizational_unit_id(ou_id)
            .send()
            .await
            .map_err(|e| tracing::warn!(ou_id, error = %e, "cannot read an OU"))
            .ok()?
            .organizational_unit?
            .name?;
        self.ou_names
            .lock()
            .expect("the OU cache lock is never poisoned")
            .insert(ou_id, &name, Instant::now());
        Some(name)
    }
}

impl OrganizationsReader {
    /// The ACTIVE accounts, id and name, without tags or OUs: what discovery's organisation
    /// mode needs, at one call per page.
    pub async fn active_accounts(&self) -> Result<Vec<(String, String)>, PortError> {
        let mut accounts = Vec::new();
        let mut pages = self.client.list_accounts().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| port_error(SERVICE, "the accounts", e))?;
            for account in page.accounts.unwrap_or_default() {
                if account.state() == Some(&AccountState::Active)
                    && let Some(id) = account.id
                {
                    accounts.push((id, account.name.unwrap_or_default()));
                }
            }
        }
        Ok(accounts)
    }
}

fn status_of(state: Option<&AccountState>) -> AccountStatus {
    // `State`: Organizations retired `Status` on 2026-09-09.
    match state {
        Some(AccountState::PendingActivation) => AccountStatus::PendingActivation,
        Some(AccountState::Active) => AccountStatus::Active,
        Some(AccountState::Suspended) => AccountStatus::Suspended,
        Some(AccountState::PendingClosure) => AccountStatus::PendingClosure,
        Some(AccountState::Closed) => AccountStatus::Closed,
        other => AccountStatus::Other(format!("{other:?}")),
    }
}

fn org_account(
    account: aws_sdk_organizations::types::Account,
    ou_path: Option<Vec<String>>,
) -> Result<OrgAccount, PortError> {
    let id = account
        .id
        .clone()
        .ok_or_else(|| rejected("an account without id".into()))?;
    Ok(OrgAccount {
        status: status_of(account.state()),
        id: AccountId::try_from(id).map_err(|e| rejected(e.to_string()))?,
        name: account.name.unwrap_or_default(),
        tags: BTreeMap::new(),
        ou_path,
    })
}

impl OrganizationsReader {
    /// The OUs directly under `parent`, id and name.
    async fn ous_under(&self, parent: &str) -> Result<Vec<(String, String)>, PortError> {
        let mut ous = Vec::new();
        let mut pages = self
            .client
            .list_organizational_units_for_parent()
            .parent_id(parent)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| port_error(SERVICE, parent, e))?;
            for ou in page.organizational_units.unwrap_or_default() {
                let id = ou.id.ok_or_else(|| rejected("an OU without id".into()))?;
                ous.push((id, ou.name.unwrap_or_default()));
            }
        }
        Ok(ous)
    }

    /// The accounts directly under `parent`.
    async fn accounts_under(
        &self,
        parent: &str,
        path: &[String],
    ) -> Result<Vec<OrgAccount>, PortError> {
        let mut accounts = Vec::new();
        let mut pages = self
            .client
            .list_accounts_for_parent()
            .parent_id(parent)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| port_error(SERVICE, parent, e))?;
            for account in page.accounts.unwrap_or_default() {
                accounts.push(org_account(account, Some(path.to_vec()))?);
            }
        }
        Ok(accounts)
    }
}

/// Organizations nests OUs at most five levels below the root.
const MAX_OU_DEPTH: usize = 5;

#[async_trait]
impl OrganisationReader for OrganizationsReader {
    async fn management_account(&self) -> Result<Option<AccountId>, PortError> {
        let organization = self
            .client
            .describe_organization()
            .send()
            .await
            .map_err(|e| port_error(SERVICE, "the organization", e))?
            .organization;
        organization
            .and_then(|o| o.master_account_id)
            .map(|id| AccountId::try_from(id).map_err(|e| rejected(e.to_string())))
            .transpose()
    }

    /// Walks the tree from the root: per parent, its OUs and its accounts (two listings), so
    /// a 2,000-account organisation in 200 OUs costs about 400 calls, not a `ListParents`
    /// walk per account.
    async fn tree(&self) -> Result<Vec<OrgAccount>, PortError> {
        let roots = self
            .client
            .list_roots()
            .send()
            .await
            .map_err(|e| port_error(SERVICE, "the roots", e))?
            .roots
            .unwrap_or_default();
        let mut accounts = Vec::new();
        let mut parents: Vec<(String, Vec<String>)> = roots
            .into_iter()
            .filter_map(|root| root.id)
            .map(|id| (id, Vec::new()))
            .collect();
        while let Some((parent, path)) = parents.pop() {
            accounts.extend(self.accounts_under(&parent, &path).await?);
            if path.len() >= MAX_OU_DEPTH {
                continue;
            }
            for (id, name) in self.ous_under(&parent).await? {
                let mut below = path.clone();
                below.push(name);
                parents.push((id, below));
            }
        }
        Ok(accounts)
    }

    async fn tags(&self, account: &AccountId) -> Result<BTreeMap<String, String>, PortError> {
        self.tags_of(account.as_str()).await
    }

    async fn account(&self, account: &AccountId) -> Result<Option<OrgAccount>, PortError> {
        let described = self
            .client
            .describe_account()
            .account_id(account.as_str())
            .send()
            .await;
        let described = match described {
            Ok(output) => output.account,
            Err(e) => match port_error(SERVICE, account.as_str(), e) {
                PortError::NotFound { .. } => None,
                other => return Err(other),
            },
        };
        let Some(described) = described else {
            return Ok(None);
        };
        let ou_path = self.ou_path(account.as_str()).await;
        let mut found = org_account(described, ou_path)?;
        found.tags = self.tags_of(account.as_str()).await?;
        Ok(Some(found))
    }
}

fn rejected(detail: String) -> PortError {
    PortError::Rejected {
        service: SERVICE,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ou_name_is_read_again_a_minute_after_it_was_read() {
        // Issue 14, finding 4: a warm container served a renamed OU's old name for its life.
        let mut names = OuNames::default();
        let read = Instant::now();
        names.insert("ou-ab12-cdef3456", "development", read);
        assert_eq!(
            names.get("ou-ab12-cdef3456", read + Duration::from_secs(59)),
            Some("development".to_owned())
        );
        assert_eq!(names.get("ou-ab12-cdef3456", read + OU_NAME_TTL), None);
    }
}
