//! The SSO model's configuration (BRIEF §2): how group names, tags and OUs are read, which
//! job-functions exist and where they may work, and the deletion guardrails.
//!
//! The configuration is one JSON document (the `SsoModelConfig` template parameter). Every key
//! is optional; what is left out takes the convention of the "AWS SSO Operator" post:
//!
//! ```json
//! {
//!   "groupSeparator": "_workload_",
//!   "tagKeys": {"jobFunction": "job_function", "workloads": "workloads",
//!               "accountWorkload": "workload", "accountOwner": "owner"},
//!   "environmentOus": {"sandbox": "SANDBOX", "development": "DEVELOPMENT",
//!                      "staging": "STAGING", "production": "PRODUCTION"},
//!   "jobFunctions": {"developer": ["DEVELOPMENT", "STAGING", "PRODUCTION"],
//!                    "tester": ["DEVELOPMENT", "STAGING"]},
//!   "sandboxJobFunction": "sandbox_owner",
//!   "protectedEnvironments": ["PRODUCTION"],
//!   "deleteThreshold": 10
//! }
//! ```
//!
//! A job-function listed without environments may work in every environment but sandbox.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// An SDLC environment. Which OU names mean which environment is configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Environment {
    Sandbox,
    Development,
    Staging,
    Production,
}

impl Environment {
    pub const ALL: [Environment; 4] = [
        Environment::Sandbox,
        Environment::Development,
        Environment::Staging,
        Environment::Production,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Sandbox => "SANDBOX",
            Environment::Development => "DEVELOPMENT",
            Environment::Staging => "STAGING",
            Environment::Production => "PRODUCTION",
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The tag keys the model reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TagKeys {
    pub job_function: String,
    pub workloads: String,
    pub account_workload: String,
    pub account_owner: String,
}

impl Default for TagKeys {
    fn default() -> Self {
        TagKeys {
            job_function: "job_function".into(),
            workloads: "workloads".into(),
            account_workload: "workload".into(),
            account_owner: "owner".into(),
        }
    }
}

/// The configuration as written; [`SsoModel::from_config`] checks it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SsoModelConfig {
    #[serde(default = "default_separator")]
    pub group_separator: String,
    #[serde(default)]
    pub tag_keys: TagKeys,
    #[serde(default = "default_environment_ous")]
    pub environment_ous: BTreeMap<String, Environment>,
    #[serde(default = "default_job_functions")]
    pub job_functions: BTreeMap<String, Option<BTreeSet<Environment>>>,
    #[serde(default = "default_sandbox_job_function")]
    pub sandbox_job_function: String,
    #[serde(default = "default_protected")]
    pub protected_environments: BTreeSet<Environment>,
    #[serde(default = "default_delete_threshold")]
    pub delete_threshold: usize,
    #[serde(default = "default_delete_window_minutes")]
    pub delete_window_minutes: u32,
    #[serde(default)]
    pub foreign_assignments: ForeignAssignments,
}

fn default_delete_window_minutes() -> u32 {
    60
}

/// What becomes of an assignment on a managed permission set whose principal the model could
/// not have made (a user, a group outside the naming convention).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ForeignAssignments {
    /// Listed as unmanaged and left alone.
    #[default]
    Keep,
    /// Deleted like any assignment the model does not want.
    Prune,
}

fn default_separator() -> String {
    "_workload_".into()
}

fn default_environment_ous() -> BTreeMap<String, Environment> {
    Environment::ALL
        .iter()
        .map(|e| (e.as_str().to_lowercase(), *e))
        .collect()
}

fn default_job_functions() -> BTreeMap<String, Option<BTreeSet<Environment>>> {
    use Environment::*;
    [
        ("developer", None),
        ("tester", Some(BTreeSet::from([Development, Staging]))),
        ("operator", Some(BTreeSet::from([Staging, Production]))),
        ("security_auditor", None),
        ("secops", None),
        ("finops", None),
    ]
    .into_iter()
    .map(|(name, environments)| (name.to_owned(), environments))
    .collect()
}

fn default_sandbox_job_function() -> String {
    "sandbox_owner".into()
}

fn default_protected() -> BTreeSet<Environment> {
    BTreeSet::from([Environment::Production])
}

fn default_delete_threshold() -> usize {
    10
}

impl Default for SsoModelConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("every key has a default")
    }
}

/// A configuration that cannot be used, naming the offending key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("SSO model configuration: {key}: {problem}")]
pub struct InvalidModel {
    pub key: String,
    pub problem: String,
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> InvalidModel {
    InvalidModel {
        key: key.into(),
        problem: problem.into(),
    }
}

/// The checked model the planner uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoModel {
    pub group_separator: String,
    pub tag_keys: TagKeys,
    /// OU name, lowercase → environment.
    pub environment_ous: BTreeMap<String, Environment>,
    /// Job-function → the environments its groups may be assigned in.
    pub job_functions: BTreeMap<String, BTreeSet<Environment>>,
    pub sandbox_job_function: String,
    pub protected_environments: BTreeSet<Environment>,
    pub delete_threshold: usize,
    /// The window over which the deletes of every run count towards the threshold.
    pub delete_window_minutes: u32,
    pub foreign_assignments: ForeignAssignments,
}

impl Default for SsoModel {
    fn default() -> Self {
        SsoModel::from_config(SsoModelConfig::default()).expect("the defaults are valid")
    }
}

impl SsoModel {
    /// Parses and checks a JSON configuration; an empty text means the defaults.
    pub fn from_json(text: &str) -> Result<Self, InvalidModel> {
        let text = if text.trim().is_empty() { "{}" } else { text };
        let config: SsoModelConfig = serde_json::from_str(text).map_err(|e| {
            // serde names unknown keys and wrong types in its message.
            invalid("(document)", e.to_string())
        })?;
        SsoModel::from_config(config)
    }

    pub fn from_config(config: SsoModelConfig) -> Result<Self, InvalidModel> {
        if config.group_separator.trim().is_empty() {
            return Err(invalid("groupSeparator", "must not be empty"));
        }
        let keys = &config.tag_keys;
        for (key, value) in [
            ("tagKeys.jobFunction", &keys.job_function),
            ("tagKeys.workloads", &keys.workloads),
            ("tagKeys.accountWorkload", &keys.account_workload),
            ("tagKeys.accountOwner", &keys.account_owner),
        ] {
            if value.trim().is_empty() {
                return Err(invalid(key, "must not be empty"));
            }
        }
        // OU names match without regard to case (Control Tower names its OU `Sandbox`);
        // two spellings of one name must not name two environments.
        let mut environment_ous: BTreeMap<String, Environment> = BTreeMap::new();
        for (name, environment) in &config.environment_ous {
            let key = name.trim().to_lowercase();
            match environment_ous.insert(key, *environment) {
                Some(other) if other != *environment => {
                    return Err(invalid(
                        format!("environmentOus.{name}"),
                        format!(
                            "OU names match without regard to case, and another spelling maps to {other}"
                        ),
                    ));
                }
                _ => {}
            }
        }
        if config.environment_ous.is_empty() {
            return Err(invalid(
                "environmentOus",
                "must map at least one OU name to an environment",
            ));
        }
        if config.job_functions.is_empty() {
            return Err(invalid(
                "jobFunctions",
                "must name at least one job-function",
            ));
        }
        let mut job_functions = BTreeMap::new();
        for (name, environments) in config.job_functions {
            if name.trim().is_empty() || name.contains(&config.group_separator) {
                return Err(invalid(
                    format!("jobFunctions.{name}"),
                    "a job-function name must be non-empty and not contain the group separator",
                ));
            }
            if name == config.sandbox_job_function {
                return Err(invalid(
                    format!("jobFunctions.{name}"),
                    "the sandbox job-function is assigned to owners only; do not list it",
                ));
            }
            let environments = environments.unwrap_or_else(|| {
                Environment::ALL
                    .into_iter()
                    .filter(|e| *e != Environment::Sandbox)
                    .collect()
            });
            if environments.is_empty() {
                return Err(invalid(
                    format!("jobFunctions.{name}"),
                    "lists no environment; remove the job-function instead",
                ));
            }
            job_functions.insert(name, environments);
        }
        if config.delete_window_minutes == 0 {
            return Err(invalid(
                "deleteWindowMinutes",
                "must be at least 1: the deletes of recent runs count towards deleteThreshold over it",
            ));
        }
        if config.sandbox_job_function.trim().is_empty() {
            return Err(invalid("sandboxJobFunction", "must not be empty"));
        }
        Ok(SsoModel {
            group_separator: config.group_separator,
            tag_keys: config.tag_keys,
            environment_ous,
            job_functions,
            sandbox_job_function: config.sandbox_job_function,
            protected_environments: config.protected_environments,
            delete_threshold: config.delete_threshold,
            delete_window_minutes: config.delete_window_minutes,
            foreign_assignments: config.foreign_assignments,
        })
    }

    /// `(job_function, workload)` of a group name, split on the last separator; `None` when
    /// the name does not fit the syntax (the group is not managed).
    pub fn group_parts<'a>(&self, group_name: &'a str) -> Option<(&'a str, &'a str)> {
        let (job_function, workload) = group_name.rsplit_once(&self.group_separator)?;
        (!job_function.is_empty() && !workload.is_empty()).then_some((job_function, workload))
    }

    /// The environment of an account: the nearest ancestor OU (last in `ou_path`, which runs
    /// from the root down) whose name the configuration maps.
    pub fn environment_of(&self, ou_path: &[String]) -> Option<Environment> {
        ou_path.iter().rev().find_map(|name| {
            self.environment_ous
                .get(&name.trim().to_lowercase())
                .copied()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ou_names_match_without_regard_to_case() {
        // Issue 14, finding 7: Control Tower's `Sandbox` OU matched nothing.
        let model = SsoModel::default();
        let path = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            model.environment_of(&path(&["Workloads", "Sandbox"])),
            Some(Environment::Sandbox)
        );
        assert_eq!(
            model.environment_of(&path(&["PRODUCTION"])),
            Some(Environment::Production)
        );
        let clash =
            SsoModel::from_json(r#"{"environmentOus": {"Prod": "PRODUCTION", "prod": "STAGING"}}"#)
                .unwrap_err();
        assert!(clash.problem.contains("without regard to case"), "{clash}");
    }

    #[test]
    fn the_defaults_follow_the_posts_conventions() {
        let model = SsoModel::default();
        assert_eq!(
            model.group_parts("security_auditor_workload_myapp"),
            Some(("security_auditor", "myapp"))
        );
        assert_eq!(
            model.group_parts("a_workload_b_workload_c"),
            Some(("a_workload_b", "c"))
        );
        assert_eq!(model.group_parts("Administrators"), None);
        assert_eq!(model.group_parts("developer_workload_"), None);
        assert!(!model.job_functions["developer"].contains(&Environment::Sandbox));
        assert_eq!(
            model.job_functions["tester"],
            BTreeSet::from([Environment::Development, Environment::Staging])
        );
        assert_eq!(model.delete_threshold, 10);
    }

    #[test]
    fn the_nearest_mapped_ou_names_the_environment() {
        let model = SsoModel::default();
        let path = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(
            model.environment_of(&path(&["Workloads", "production", "payments"])),
            Some(Environment::Production)
        );
        assert_eq!(model.environment_of(&path(&["Security"])), None);
    }

    #[test]
    fn invalid_configuration_names_the_offending_key() {
        let error = SsoModel::from_json(r#"{"jobFunctions": {"tester": []}}"#).unwrap_err();
        assert_eq!(error.key, "jobFunctions.tester");

        let error = SsoModel::from_json(r#"{"groupSeperator": "_w_"}"#).unwrap_err();
        assert!(error.to_string().contains("groupSeperator"), "{error}");

        let error = SsoModel::from_json(r#"{"environmentOus": {"prod": "LIVE"}}"#).unwrap_err();
        assert!(error.to_string().contains("LIVE"), "{error}");

        let error =
            SsoModel::from_json(r#"{"jobFunctions": {"sandbox_owner": null}}"#).unwrap_err();
        assert_eq!(error.key, "jobFunctions.sandbox_owner");
    }

    #[test]
    fn an_empty_configuration_means_the_defaults() {
        assert_eq!(SsoModel::from_json("").unwrap(), SsoModel::default());
        assert_eq!(SsoModel::from_json("{}").unwrap(), SsoModel::default());
    }
}
