//! The rotation function protocol. Secrets Manager calls the function once per step with the
//! secret, the `ClientRequestToken` (the id of the version being made) and the step. Every
//! step is idempotent on the token: a replay, or a retry after a failure, changes nothing
//! that was already done.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::credentials::{CredentialError, Credentials, PasswordPolicy, Strategy, alternate_user};
use crate::port::PortError;

pub const CURRENT: &str = "AWSCURRENT";
pub const PENDING: &str = "AWSPENDING";
pub const PREVIOUS: &str = "AWSPREVIOUS";

/// What Secrets Manager sends the rotation function. Fields AWS adds later (as it added
/// `RotationToken`) are ignored: refusing them would fail every rotation the day they appear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationEvent {
    #[serde(rename = "SecretId")]
    pub secret_id: String,
    #[serde(rename = "ClientRequestToken")]
    pub token: String,
    #[serde(rename = "Step")]
    pub step: Step,
    /// Sent by Secrets Manager to functions that rotate in a rotation window; not used.
    #[serde(rename = "RotationToken", default, skip_serializing)]
    pub rotation_token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    #[serde(rename = "createSecret")]
    Create,
    #[serde(rename = "setSecret")]
    Set,
    #[serde(rename = "testSecret")]
    Test,
    #[serde(rename = "finishSecret")]
    Finish,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Create => "createSecret",
            Step::Set => "setSecret",
            Step::Test => "testSecret",
            Step::Finish => "finishSecret",
        }
    }
}

/// A secret's rotation state, as `DescribeSecret` tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretDescription {
    pub arn: String,
    pub name: String,
    pub rotation_enabled: bool,
    /// Version id → its staging labels.
    pub versions: BTreeMap<String, Vec<String>>,
    pub tags: BTreeMap<String, String>,
}

impl SecretDescription {
    pub fn version_with(&self, stage: &str) -> Option<&str> {
        self.versions
            .iter()
            .find(|(_, stages)| stages.iter().any(|s| s == stage))
            .map(|(id, _)| id.as_str())
    }
}

/// Which version to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version<'a> {
    Stage(&'a str),
    Id(&'a str),
}

/// Secrets Manager, as rotation uses it.
#[async_trait]
pub trait SecretStore: Send + Sync {
    async fn describe(&self, secret_id: &str) -> Result<SecretDescription, PortError>;
    /// The version's value, or `None` when there is no such version (or it holds no value).
    async fn value(
        &self,
        secret_id: &str,
        version: Version<'_>,
    ) -> Result<Option<String>, PortError>;
    async fn random_password(&self, policy: &PasswordPolicy) -> Result<String, PortError>;
    /// Stores `value` as version `token`, staged AWSPENDING.
    async fn put_pending(&self, secret_id: &str, token: &str, value: &str)
    -> Result<(), PortError>;
    /// Moves AWSCURRENT from version `from` to `token` (AWSPREVIOUS follows `from`).
    async fn make_current(&self, secret_id: &str, token: &str, from: &str)
    -> Result<(), PortError>;
}

/// Why a target refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TargetError {
    /// The target could not be reached or was busy: a later retry may succeed.
    #[error("cannot reach the target: {0}")]
    Unreachable(String),
    /// The target refused the credentials or the change.
    #[error("the target refused: {0}")]
    Refused(String),
}

/// A target whose credentials rotate: changes the password there, and proves the new one
/// does what the application needs.
#[async_trait]
pub trait Target: Send + Sync {
    /// Whether `credentials` log in (setSecret returns early when the pending ones already do).
    async fn logs_in(&self, credentials: &Credentials) -> Result<bool, TargetError>;
    /// Makes `pending` valid, logging in as `acting` (the user itself, or the master).
    async fn set(&self, acting: &Credentials, pending: &Credentials) -> Result<(), TargetError>;
    /// Logs in with `pending` and exercises what the application needs (a query, a channel).
    async fn test(&self, pending: &Credentials) -> Result<(), TargetError>;
}

/// The targets, by strategy (the random-value strategy has none).
pub trait Targets: Send + Sync {
    fn target(&self, strategy: Strategy) -> Option<&dyn Target>;
}

#[derive(Debug, Error)]
pub enum RotationError {
    #[error("rotation is not enabled on {0}")]
    RotationDisabled(String),
    #[error("{token} is not a version of {secret}")]
    NotAVersion { secret: String, token: String },
    #[error("version {token} of {secret} is not staged AWSPENDING")]
    NotPending { secret: String, token: String },
    #[error("{secret} has no AWSCURRENT version")]
    NoCurrent { secret: String },
    #[error("the pending version {token} of {secret} has no value: run createSecret first")]
    NoPendingValue { secret: String, token: String },
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    #[error("the pending credentials are for another host, port or database than the current ones")]
    TargetMismatch,
    #[error("{0:?} needs a target this function does not have")]
    NoTarget(Strategy),
    #[error("the alternating-users strategy needs masterarn, the master user's secret")]
    NoMaster,
    /// A master only changes passwords on its own server: a user secret that names a master
    /// and another host would have the master's password sent there.
    #[error("the master secret {master} is for another host or port than the user's")]
    MasterElsewhere { master: String },
    /// Whoever may write a user secret may name any master in it; the master says which
    /// secrets it serves.
    #[error(
        "the master secret {master} does not serve {secret}: list a prefix of its name in the master's maestroServes"
    )]
    MasterNotBound { master: String, secret: String },
    #[error("neither the current nor the previous credentials log in")]
    NoWorkingCredentials,
    #[error("testSecret: the generated value does not follow the secret's password policy")]
    PolicyNotMet,
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Store(#[from] PortError),
}

impl RotationError {
    /// Whether running the step again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            RotationError::Store(e) => e.is_retryable(),
            RotationError::Target(TargetError::Unreachable(_)) => true,
            _ => false,
        }
    }
}

/// What a step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StepOutcome {
    /// The token's version is already current: the rotation finished before.
    AlreadyCurrent,
    /// The step had been done already (a pending value exists, the pending password works).
    AlreadyDone,
    Done,
}

/// Runs one step of the protocol.
pub async fn rotate(
    store: &dyn SecretStore,
    targets: &dyn Targets,
    event: &RotationEvent,
) -> Result<StepOutcome, RotationError> {
    let secret = event.secret_id.as_str();
    let token = event.token.as_str();
    let description = store.describe(secret).await?;
    if !description.rotation_enabled {
        return Err(RotationError::RotationDisabled(secret.to_owned()));
    }
    let Some(stages) = description.versions.get(token) else {
        return Err(RotationError::NotAVersion {
            secret: secret.to_owned(),
            token: token.to_owned(),
        });
    };
    if stages.iter().any(|s| s == CURRENT) {
        return Ok(StepOutcome::AlreadyCurrent);
    }
    if !stages.iter().any(|s| s == PENDING) {
        return Err(RotationError::NotPending {
            secret: secret.to_owned(),
            token: token.to_owned(),
        });
    }
    let current = store
        .value(secret, Version::Stage(CURRENT))
        .await?
        .ok_or_else(|| RotationError::NoCurrent {
            secret: secret.to_owned(),
        })?;
    let strategy = Strategy::of_secret(&current, &description.tags)?;
    match event.step {
        Step::Create => create(store, secret, token, &current, strategy).await,
        Step::Set => {
            let pending = pending_value(store, secret, token).await?;
            let user = User {
                id: secret,
                name: &description.name,
                current: &current,
                pending: &pending,
            };
            set(store, targets, user, strategy).await
        }
        Step::Test => {
            let pending = pending_value(store, secret, token).await?;
            test(targets, &current, &pending, strategy).await
        }
        Step::Finish => {
            let from =
                description
                    .version_with(CURRENT)
                    .ok_or_else(|| RotationError::NoCurrent {
                        secret: secret.to_owned(),
                    })?;
            store.make_current(secret, token, from).await?;
            Ok(StepOutcome::Done)
        }
    }
}

async fn pending_value(
    store: &dyn SecretStore,
    secret: &str,
    token: &str,
) -> Result<String, RotationError> {
    store
        .value(secret, Version::Id(token))
        .await?
        .ok_or_else(|| RotationError::NoPendingValue {
            secret: secret.to_owned(),
            token: token.to_owned(),
        })
}

async fn create(
    store: &dyn SecretStore,
    secret: &str,
    token: &str,
    current: &str,
    strategy: Strategy,
) -> Result<StepOutcome, RotationError> {
    // A pending value for this token is never overwritten: setSecret may have used it.
    if store.value(secret, Version::Id(token)).await?.is_some() {
        return Ok(StepOutcome::AlreadyDone);
    }
    let policy = PasswordPolicy::of_secret(current)?;
    let password = store.random_password(&policy).await?;
    let value = match strategy {
        Strategy::RandomValue => password,
        Strategy::PostgresqlAlternatingUsers => {
            let credentials = Credentials::parse(current)?;
            let other = alternate_user(&credentials.username);
            credentials.with(other, password).to_value()
        }
        Strategy::PostgresqlSingleUser | Strategy::RabbitmqUser => {
            let credentials = Credentials::parse(current)?;
            credentials
                .with(credentials.username.clone(), password)
                .to_value()
        }
    };
    store.put_pending(secret, token, &value).await?;
    Ok(StepOutcome::Done)
}

/// The secret setSecret works on.
struct User<'a> {
    id: &'a str,
    name: &'a str,
    current: &'a str,
    pending: &'a str,
}

/// The master's credentials, if they may change `user`'s password: the same server, and
/// a master that lists the user secret's name in `maestroServes`.
async fn master_for(
    store: &dyn SecretStore,
    master_arn: &str,
    user: &Credentials,
    user_name: &str,
) -> Result<Credentials, RotationError> {
    let master = store
        .value(master_arn, Version::Stage(CURRENT))
        .await?
        .ok_or(RotationError::NoMaster)?;
    let master = Credentials::parse(&master)?;
    if master.host != user.host || master.port != user.port {
        return Err(RotationError::MasterElsewhere {
            master: master_arn.to_owned(),
        });
    }
    if !master.serves(user_name) {
        return Err(RotationError::MasterNotBound {
            master: master_arn.to_owned(),
            secret: user_name.to_owned(),
        });
    }
    Ok(master)
}

async fn set(
    store: &dyn SecretStore,
    targets: &dyn Targets,
    user: User<'_>,
    strategy: Strategy,
) -> Result<StepOutcome, RotationError> {
    let (secret, current, pending) = (user.id, user.current, user.pending);
    if !strategy.uses_credentials() {
        return Ok(StepOutcome::Done);
    }
    let target = targets
        .target(strategy)
        .ok_or(RotationError::NoTarget(strategy))?;
    let current = Credentials::parse(current)?;
    let pending = Credentials::parse(pending)?;
    if !current.same_target(&pending) {
        return Err(RotationError::TargetMismatch);
    }
    if target.logs_in(&pending).await? {
        return Ok(StepOutcome::AlreadyDone);
    }
    // The alternating strategy always acts as the master; a RabbitMQ user that is not an
    // administrator cannot change its own password, so a master may act for it too.
    let master_arn = match strategy {
        Strategy::PostgresqlAlternatingUsers => {
            Some(current.master_arn.clone().ok_or(RotationError::NoMaster)?)
        }
        Strategy::RabbitmqUser => current.master_arn.clone(),
        Strategy::PostgresqlSingleUser | Strategy::RandomValue => None,
    };
    let acting = match master_arn.as_deref() {
        Some(master_arn) => master_for(store, master_arn, &current, user.name).await?,
        None => {
            if target.logs_in(&current).await? {
                current
            } else {
                // A rotation that failed after setSecret leaves the target on the previous
                // password's successor; the previous version may be the one that works.
                let previous = store.value(secret, Version::Stage(PREVIOUS)).await?;
                match previous.map(|p| Credentials::parse(&p)).transpose()? {
                    Some(previous) if target.logs_in(&previous).await? => previous,
                    _ => return Err(RotationError::NoWorkingCredentials),
                }
            }
        }
    };
    target.set(&acting, &pending).await?;
    Ok(StepOutcome::Done)
}

async fn test(
    targets: &dyn Targets,
    current: &str,
    pending: &str,
    strategy: Strategy,
) -> Result<StepOutcome, RotationError> {
    if !strategy.uses_credentials() {
        let policy = PasswordPolicy::of_secret(current)?;
        return if policy.admits(pending) {
            Ok(StepOutcome::Done)
        } else {
            Err(RotationError::PolicyNotMet)
        };
    }
    let target = targets
        .target(strategy)
        .ok_or(RotationError::NoTarget(strategy))?;
    target.test(&Credentials::parse(pending)?).await?;
    Ok(StepOutcome::Done)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A version's value (none before createSecret) and its staging labels.
    type StoredVersion = (Option<String>, Vec<String>);

    /// Secrets Manager in memory: versions with values and stages.
    #[derive(Default)]
    struct Store {
        rotation_enabled: bool,
        versions: Mutex<BTreeMap<String, StoredVersion>>,
        other_secrets: BTreeMap<String, String>,
        puts: Mutex<usize>,
    }

    impl Store {
        fn with_current(value: &str) -> Store {
            let store = Store {
                rotation_enabled: true,
                ..Store::default()
            };
            store.versions.lock().unwrap().insert(
                "v1".into(),
                (Some(value.to_owned()), vec![CURRENT.to_owned()]),
            );
            store
        }

        /// What RotateSecret does before the first step: a version staged AWSPENDING.
        fn start(&self, token: &str) {
            self.versions
                .lock()
                .unwrap()
                .insert(token.into(), (None, vec![PENDING.to_owned()]));
        }

        fn current_value(&self) -> String {
            let versions = self.versions.lock().unwrap();
            versions
                .values()
                .find(|(_, stages)| stages.iter().any(|s| s == CURRENT))
                .and_then(|(v, _)| v.clone())
                .unwrap()
        }
    }

    #[async_trait]
    impl SecretStore for Store {
        async fn describe(&self, secret_id: &str) -> Result<SecretDescription, PortError> {
            Ok(SecretDescription {
                arn: format!("arn:aws:secretsmanager:::secret:{secret_id}"),
                name: secret_id.to_owned(),
                rotation_enabled: self.rotation_enabled,
                versions: self
                    .versions
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|(id, (_, stages))| (id.clone(), stages.clone()))
                    .collect(),
                tags: BTreeMap::new(),
            })
        }
        async fn value(
            &self,
            secret_id: &str,
            version: Version<'_>,
        ) -> Result<Option<String>, PortError> {
            if let Some(other) = self.other_secrets.get(secret_id) {
                return Ok(Some(other.clone()));
            }
            let versions = self.versions.lock().unwrap();
            Ok(match version {
                Version::Id(id) => versions.get(id).and_then(|(v, _)| v.clone()),
                Version::Stage(stage) => versions
                    .values()
                    .find(|(_, stages)| stages.iter().any(|s| s == stage))
                    .and_then(|(v, _)| v.clone()),
            })
        }
        async fn random_password(&self, policy: &PasswordPolicy) -> Result<String, PortError> {
            Ok("n".repeat(policy.length as usize))
        }
        async fn put_pending(&self, _: &str, token: &str, value: &str) -> Result<(), PortError> {
            *self.puts.lock().unwrap() += 1;
            self.versions
                .lock()
                .unwrap()
                .insert(token.into(), (Some(value.into()), vec![PENDING.into()]));
            Ok(())
        }
        async fn make_current(&self, _: &str, token: &str, from: &str) -> Result<(), PortError> {
            let mut versions = self.versions.lock().unwrap();
            for (_, stages) in versions.values_mut() {
                stages.retain(|s| s != PREVIOUS);
            }
            if let Some((_, stages)) = versions.get_mut(from) {
                stages.retain(|s| s != CURRENT);
                stages.push(PREVIOUS.into());
            }
            if let Some((_, stages)) = versions.get_mut(token) {
                stages.retain(|s| s != PENDING);
                stages.push(CURRENT.into());
            }
            Ok(())
        }
    }

    /// A database in memory: user → password; `fail_set` refuses password changes.
    #[derive(Default)]
    struct Database {
        users: Mutex<BTreeMap<String, String>>,
        fail_set: Mutex<bool>,
    }

    #[async_trait]
    impl Target for Database {
        async fn logs_in(&self, c: &Credentials) -> Result<bool, TargetError> {
            Ok(self.users.lock().unwrap().get(&c.username) == Some(&c.password))
        }
        async fn set(
            &self,
            acting: &Credentials,
            pending: &Credentials,
        ) -> Result<(), TargetError> {
            if *self.fail_set.lock().unwrap() {
                return Err(TargetError::Unreachable("connection reset".into()));
            }
            if !self.logs_in(acting).await? {
                return Err(TargetError::Refused("bad password".into()));
            }
            self.users
                .lock()
                .unwrap()
                .insert(pending.username.clone(), pending.password.clone());
            Ok(())
        }
        async fn test(&self, pending: &Credentials) -> Result<(), TargetError> {
            match self.logs_in(pending).await? {
                true => Ok(()),
                false => Err(TargetError::Refused("login failed".into())),
            }
        }
    }

    impl Targets for Database {
        fn target(&self, strategy: Strategy) -> Option<&dyn Target> {
            strategy.uses_credentials().then_some(self as &dyn Target)
        }
    }

    const APP: &str = r#"{"host": "db", "port": 5432, "username": "app", "password": "old",
        "dbname": "payments", "rotationStrategy": "postgresql-single-user"}"#;

    fn event(step: Step) -> RotationEvent {
        RotationEvent {
            secret_id: "prod/app".into(),
            token: "t-2".into(),
            step,
            rotation_token: None,
        }
    }

    fn database(users: &[(&str, &str)]) -> Database {
        let database = Database::default();
        for (user, password) in users {
            database
                .users
                .lock()
                .unwrap()
                .insert((*user).into(), (*password).into());
        }
        database
    }

    async fn run_all(store: &Store, db: &Database) -> Result<(), RotationError> {
        for step in [Step::Create, Step::Set, Step::Test, Step::Finish] {
            rotate(store, db, &event(step)).await?;
        }
        Ok(())
    }

    #[tokio::test]
    async fn a_full_rotation_changes_the_password_and_moves_the_stages() {
        let store = Store::with_current(APP);
        let db = database(&[("app", "old")]);
        store.start("t-2");
        run_all(&store, &db).await.unwrap();
        let current = Credentials::parse(&store.current_value()).unwrap();
        assert_eq!(current.password, "n".repeat(32));
        assert_eq!(db.users.lock().unwrap()["app"], current.password);
        let description = store.describe("prod/app").await.unwrap();
        assert_eq!(description.version_with(CURRENT), Some("t-2"));
        assert_eq!(description.version_with(PREVIOUS), Some("v1"));
    }

    #[tokio::test]
    async fn every_step_replayed_changes_nothing() {
        let store = Store::with_current(APP);
        let db = database(&[("app", "old")]);
        store.start("t-2");
        for step in [Step::Create, Step::Set, Step::Test, Step::Finish] {
            assert_eq!(
                rotate(&store, &db, &event(step)).await.unwrap(),
                StepOutcome::Done
            );
            let again = rotate(&store, &db, &event(step)).await.unwrap();
            if step != Step::Test {
                assert_ne!(again, StepOutcome::Done, "{step:?} replayed did something");
            }
        }
        assert_eq!(
            *store.puts.lock().unwrap(),
            1,
            "the pending value was made once"
        );
        let description = store.describe("prod/app").await.unwrap();
        assert_eq!(description.version_with(CURRENT), Some("t-2"));
        assert_eq!(description.version_with(PREVIOUS), Some("v1"));
    }

    #[tokio::test]
    async fn a_failed_set_leaves_current_intact_and_a_rerun_completes() {
        let store = Store::with_current(APP);
        let db = database(&[("app", "old")]);
        *db.fail_set.lock().unwrap() = true;
        store.start("t-2");
        rotate(&store, &db, &event(Step::Create)).await.unwrap();
        let failed = rotate(&store, &db, &event(Step::Set)).await;
        assert!(
            failed.as_ref().is_err_and(RotationError::is_retryable),
            "{failed:?}"
        );
        assert_eq!(
            Credentials::parse(&store.current_value()).unwrap().password,
            "old"
        );
        assert_eq!(db.users.lock().unwrap()["app"], "old");
        *db.fail_set.lock().unwrap() = false;
        run_all(&store, &db).await.unwrap();
        assert_eq!(db.users.lock().unwrap()["app"], "n".repeat(32));
    }

    #[tokio::test]
    async fn alternating_users_change_the_other_user_as_the_master() {
        let app = r#"{"host": "db", "port": 5432, "username": "app", "password": "old",
            "masterarn": "prod/master", "rotationStrategy": "postgresql-alternating-users"}"#;
        let mut store = Store::with_current(app);
        store.other_secrets.insert(
            "prod/master".into(),
            r#"{"host": "db", "port": 5432, "username": "master", "password": "m",
                "maestroServes": ["prod/"]}"#
                .into(),
        );
        let db = database(&[("master", "m"), ("app", "old"), ("app_clone", "older")]);
        store.start("t-2");
        run_all(&store, &db).await.unwrap();
        let current = Credentials::parse(&store.current_value()).unwrap();
        assert_eq!(current.username, "app_clone");
        let users = db.users.lock().unwrap();
        assert_eq!(users["app"], "old", "the previous user keeps working");
        assert_eq!(users["app_clone"], current.password);
        assert_eq!(users["master"], "m");
    }

    #[tokio::test]
    async fn a_master_serves_only_its_own_server_and_the_secrets_bound_to_it() {
        let app = r#"{"host": "db", "port": 5432, "username": "app", "password": "old",
            "masterarn": "prod/master", "rotationStrategy": "postgresql-alternating-users"}"#;
        for (master, refusal) in [
            // The user secret names the production master and a host of its writer's choosing.
            (
                r#"{"host": "attacker.example.com", "port": 5432, "username": "master",
                    "password": "m", "maestroServes": ["prod/"]}"#,
                "another host",
            ),
            (
                r#"{"host": "db", "port": 5433, "username": "master", "password": "m",
                    "maestroServes": ["prod/"]}"#,
                "another host",
            ),
            // A master that lists nothing serves nothing.
            (
                r#"{"host": "db", "port": 5432, "username": "master", "password": "m"}"#,
                "does not serve prod/app",
            ),
            (
                r#"{"host": "db", "port": 5432, "username": "master", "password": "m",
                    "maestroServes": ["dev/"]}"#,
                "does not serve prod/app",
            ),
        ] {
            let mut store = Store::with_current(app);
            store
                .other_secrets
                .insert("prod/master".into(), master.into());
            let db = database(&[("master", "m"), ("app", "old"), ("app_clone", "older")]);
            store.start("t-2");
            rotate(&store, &db, &event(Step::Create)).await.unwrap();
            let refused = rotate(&store, &db, &event(Step::Set)).await.unwrap_err();
            assert!(refused.to_string().contains(refusal), "{refused}");
            assert!(!refused.is_retryable());
            assert_eq!(db.users.lock().unwrap()["app_clone"], "older", "{master}");
        }
    }

    #[tokio::test]
    async fn unexpected_input_fails_clearly_and_changes_nothing() {
        let store = Store::with_current(APP);
        let db = database(&[("app", "old")]);
        let not_a_version = rotate(&store, &db, &event(Step::Create)).await;
        assert!(matches!(
            not_a_version,
            Err(RotationError::NotAVersion { .. })
        ));
        store
            .versions
            .lock()
            .unwrap()
            .insert("t-2".into(), (None, vec![]));
        let not_pending = rotate(&store, &db, &event(Step::Create)).await;
        assert!(matches!(not_pending, Err(RotationError::NotPending { .. })));
        let disabled = Store {
            rotation_enabled: false,
            ..Store::with_current(APP)
        };
        disabled.start("t-2");
        let refused = rotate(&disabled, &db, &event(Step::Create)).await;
        assert!(matches!(refused, Err(RotationError::RotationDisabled(_))));
        assert_eq!(*store.puts.lock().unwrap(), 0);
        let unknown_step = serde_json::from_str::<RotationEvent>(
            r#"{"SecretId": "s", "ClientRequestToken": "t", "Step": "dropSecret"}"#,
        );
        assert!(unknown_step.is_err());
        let with_a_new_field = serde_json::from_str::<RotationEvent>(
            r#"{"SecretId": "s", "ClientRequestToken": "t", "Step": "setSecret",
                "RotationToken": "r", "SomethingAwsAddsLater": {"a": 1}}"#,
        )
        .expect("a field AWS adds is no reason to fail a rotation");
        assert_eq!(with_a_new_field.step, Step::Set);
    }

    #[tokio::test]
    async fn a_random_value_needs_no_target_and_is_tested_against_its_policy() {
        let store = Store::with_current("the-old-api-key-0123456789abcdef");
        let tags = BTreeMap::from([(
            super::super::credentials::STRATEGY_TAG.to_owned(),
            "random-value".to_owned(),
        )]);
        struct Tagged<'a>(&'a Store, BTreeMap<String, String>);
        #[async_trait]
        impl SecretStore for Tagged<'_> {
            async fn describe(&self, id: &str) -> Result<SecretDescription, PortError> {
                let mut d = self.0.describe(id).await?;
                d.tags = self.1.clone();
                Ok(d)
            }
            async fn value(&self, id: &str, v: Version<'_>) -> Result<Option<String>, PortError> {
                self.0.value(id, v).await
            }
            async fn random_password(&self, p: &PasswordPolicy) -> Result<String, PortError> {
                self.0.random_password(p).await
            }
            async fn put_pending(&self, id: &str, t: &str, v: &str) -> Result<(), PortError> {
                self.0.put_pending(id, t, v).await
            }
            async fn make_current(&self, id: &str, t: &str, f: &str) -> Result<(), PortError> {
                self.0.make_current(id, t, f).await
            }
        }
        let tagged = Tagged(&store, tags);
        store.start("t-2");
        let db = Database::default();
        for step in [Step::Create, Step::Set, Step::Test, Step::Finish] {
            rotate(&tagged, &db, &event(step)).await.unwrap();
        }
        assert_eq!(store.current_value(), "n".repeat(32));
    }
}
