//! What a rotated secret holds, and which strategy rotates it.
//!
//! A credential secret is JSON in the shape RDS and Amazon MQ use (`host`, `port`, `username`,
//! `password`, `dbname`, and `masterarn` for the alternating-users strategy), plus
//! `rotationStrategy`. A secret of the generic strategy holds the value itself (an API key, a
//! signing key) and names its strategy with the tag `maestro:rotation-strategy`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

/// The tag that names a secret's strategy when its value cannot (a plain value).
pub const STRATEGY_TAG: &str = "maestro:rotation-strategy";

/// How a secret is rotated: one module per target behind one trait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// The user changes its own password.
    PostgresqlSingleUser,
    /// A master secret changes the password of the other of two users, so the previous
    /// credentials keep working during cutover.
    PostgresqlAlternatingUsers,
    /// A RabbitMQ (Amazon MQ) user, through the management HTTP API.
    RabbitmqUser,
    /// A new random value and no target: API keys, the approval links' signing key.
    RandomValue,
}

impl Strategy {
    pub fn parse(text: &str) -> Result<Strategy, CredentialError> {
        serde_json::from_value(Value::String(text.to_owned())).map_err(|_| {
            CredentialError::Invalid {
                field: "rotationStrategy",
                problem: format!(
                    "{text:?} is not one of postgresql-single-user, postgresql-alternating-users, rabbitmq-user, random-value"
                ),
            }
        })
    }

    /// The strategy a secret names: its JSON's `rotationStrategy`, else its tag.
    pub fn of_secret(
        value: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<Strategy, CredentialError> {
        let named = serde_json::from_str::<Value>(value)
            .ok()
            .and_then(|v| v.get("rotationStrategy")?.as_str().map(str::to_owned));
        match named.or_else(|| tags.get(STRATEGY_TAG).cloned()) {
            Some(name) => Strategy::parse(&name),
            None => Err(CredentialError::Invalid {
                field: "rotationStrategy",
                problem: format!(
                    "the secret names no strategy (a rotationStrategy field or the {STRATEGY_TAG} tag)"
                ),
            }),
        }
    }

    pub fn uses_credentials(self) -> bool {
        !matches!(self, Strategy::RandomValue)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CredentialError {
    #[error("the secret's {field}: {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
}

/// The field of a master secret that lists the prefixes of the names of the secrets it
/// serves.
pub const SERVES_FIELD: &str = "maestroServes";

/// A user's credentials at a target, with every other field of the secret kept as it was.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: String,
    /// The database (PostgreSQL) or virtual host (RabbitMQ), when the target has one.
    pub dbname: Option<String>,
    /// The secret of the user who changes the others' passwords (alternating users).
    pub master_arn: Option<String>,
    fields: Map<String, Value>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &"…")
            .finish_non_exhaustive()
    }
}

impl Credentials {
    pub fn parse(value: &str) -> Result<Credentials, CredentialError> {
        let invalid = |field, problem: &str| CredentialError::Invalid {
            field,
            problem: problem.to_owned(),
        };
        let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(value) else {
            return Err(invalid("value", "is not a JSON object"));
        };
        let text = |name: &'static str| -> Result<String, CredentialError> {
            fields
                .get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| invalid(name, "is missing or not a string"))
        };
        let optional = |name: &str| {
            fields
                .get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let port = match fields.get("port") {
            Some(Value::Number(n)) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        }
        .filter(|p| *p > 0)
        .ok_or_else(|| invalid("port", "is missing or not a port number"))?;
        Ok(Credentials {
            host: text("host")?,
            port,
            username: text("username")?,
            password: text("password")?,
            dbname: optional("dbname"),
            master_arn: optional("masterarn"),
            fields,
        })
    }

    /// Another text field of the secret (`vhost`, `managementScheme`).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    /// The secret's JSON: every field it came with, the user and password as they are now.
    pub fn to_value(&self) -> String {
        let mut fields = self.fields.clone();
        fields.insert("username".into(), Value::String(self.username.clone()));
        fields.insert("password".into(), Value::String(self.password.clone()));
        Value::Object(fields).to_string()
    }

    /// The same credentials with another password (and, for alternating users, the other user).
    pub fn with(&self, username: String, password: String) -> Credentials {
        Credentials {
            username,
            password,
            ..self.clone()
        }
    }

    /// Whether `other` is the same account at the same target (what setSecret checks before
    /// it changes anything).
    pub fn same_target(&self, other: &Credentials) -> bool {
        self.host == other.host
            && self.port == other.port
            && self.dbname == other.dbname
            && self.master_arn == other.master_arn
    }

    /// Whether these (a master's) credentials may change the password of the secret named
    /// `secret_name`: its `maestroServes` lists a prefix of the name. Only those who may write
    /// the master secret can change what it serves.
    pub fn serves(&self, secret_name: &str) -> bool {
        self.fields
            .get(SERVES_FIELD)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .any(|prefix| !prefix.is_empty() && secret_name.starts_with(prefix))
    }
}

/// The two users the alternating strategy switches between: `name` and `name_clone`.
pub fn alternate_user(username: &str) -> String {
    match username.strip_suffix("_clone") {
        Some(original) => original.to_owned(),
        None => format!("{username}_clone"),
    }
}

/// How new passwords are made (`GetRandomPassword`'s options), read from the secret's
/// optional `passwordPolicy` field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct PasswordPolicy {
    pub length: u32,
    pub exclude_characters: String,
    pub exclude_punctuation: bool,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        PasswordPolicy {
            length: 32,
            // Characters that break connection strings, shells and URLs.
            exclude_characters: "/@\"'\\:?#%&=+ ".into(),
            exclude_punctuation: false,
        }
    }
}

impl PasswordPolicy {
    pub fn of_secret(value: &str) -> Result<PasswordPolicy, CredentialError> {
        let policy = match serde_json::from_str::<Value>(value)
            .ok()
            .and_then(|v| v.get("passwordPolicy").cloned())
        {
            None => PasswordPolicy::default(),
            Some(policy) => {
                serde_json::from_value(policy).map_err(|e| CredentialError::Invalid {
                    field: "passwordPolicy",
                    problem: e.to_string(),
                })?
            }
        };
        if !(16..=4096).contains(&policy.length) {
            return Err(CredentialError::Invalid {
                field: "passwordPolicy.length",
                problem: "must be 16 to 4096".into(),
            });
        }
        Ok(policy)
    }

    /// Whether `password` could have come from this policy.
    pub fn admits(&self, password: &str) -> bool {
        password.chars().count() == self.length as usize
            && !password
                .chars()
                .any(|c| self.exclude_characters.contains(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = r#"{"engine": "postgres", "host": "db.internal", "port": 5432,
        "username": "app", "password": "old", "dbname": "payments",
        "rotationStrategy": "postgresql-single-user"}"#;

    #[test]
    fn credentials_keep_every_other_field_when_the_password_changes() {
        let credentials = Credentials::parse(SECRET).unwrap();
        assert_eq!(credentials.port, 5432);
        let rotated = credentials.with("app".into(), "new".into());
        let value: Value = serde_json::from_str(&rotated.to_value()).unwrap();
        assert_eq!(value["password"], "new");
        assert_eq!(value["engine"], "postgres");
        assert_eq!(value["rotationStrategy"], "postgresql-single-user");
        assert!(
            !format!("{rotated:?}").contains("new"),
            "no password in Debug"
        );
    }

    #[test]
    fn a_secret_names_its_strategy_by_field_or_tag() {
        assert_eq!(
            Strategy::of_secret(SECRET, &BTreeMap::new()),
            Ok(Strategy::PostgresqlSingleUser)
        );
        let tags = BTreeMap::from([(STRATEGY_TAG.to_owned(), "random-value".to_owned())]);
        assert_eq!(
            Strategy::of_secret("plain-api-key", &tags),
            Ok(Strategy::RandomValue)
        );
        assert!(Strategy::of_secret("plain", &BTreeMap::new()).is_err());
        assert!(Strategy::parse("mysql-single-user").is_err());
    }

    #[test]
    fn malformed_credentials_name_the_field() {
        let no_port = r#"{"host": "db", "username": "app", "password": "x"}"#;
        assert_eq!(
            Credentials::parse(no_port).unwrap_err(),
            CredentialError::Invalid {
                field: "port",
                problem: "is missing or not a port number".into()
            }
        );
        assert!(Credentials::parse("not json").is_err());
    }

    #[test]
    fn alternating_users_switch_between_a_user_and_its_clone() {
        assert_eq!(alternate_user("app"), "app_clone");
        assert_eq!(alternate_user("app_clone"), "app");
    }

    #[test]
    fn the_password_policy_comes_from_the_secret_or_safe_defaults() {
        let policy = PasswordPolicy::of_secret(SECRET).unwrap();
        assert_eq!(policy.length, 32);
        assert!(policy.exclude_characters.contains('@'));
        let short = r#"{"passwordPolicy": {"length": 8}}"#;
        assert!(PasswordPolicy::of_secret(short).is_err());
        assert!(policy.admits(&"a".repeat(32)));
        assert!(!policy.admits(&format!("{}@", "a".repeat(31))));
    }
}
