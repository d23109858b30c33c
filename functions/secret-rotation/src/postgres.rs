//! PostgreSQL users as rotation targets: the single-user strategy (the user changes its own
//! password) and the alternating-users strategy (the master changes the other user's, and
//! creates it on the first rotation as a member of the original, so it holds the same rights).

use std::time::Duration;

use async_trait::async_trait;
use maestro_domain::rotation::credentials::Credentials;
use maestro_domain::rotation::protocol::{Target, TargetError};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to the databases the secrets name.
pub struct Postgres;

fn config(credentials: &Credentials) -> Config {
    let mut config = Config::new();
    config
        .host(&credentials.host)
        .port(credentials.port)
        .user(&credentials.username)
        .password(&credentials.password)
        .dbname(credentials.dbname.as_deref().unwrap_or("postgres"))
        .application_name("maestro-secret-rotation")
        .connect_timeout(CONNECT_TIMEOUT);
    config
}

/// A login that the server refused for its credentials, as opposed to one it never answered.
fn refused_login(error: &tokio_postgres::Error) -> bool {
    matches!(
        error.code(),
        Some(&SqlState::INVALID_PASSWORD | &SqlState::INVALID_AUTHORIZATION_SPECIFICATION)
    )
}

async fn connect(credentials: &Credentials) -> Result<Option<Client>, TargetError> {
    match config(credentials).connect(NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "a PostgreSQL connection ended");
                }
            });
            Ok(Some(client))
        }
        Err(e) if refused_login(&e) => Ok(None),
        Err(e) => Err(TargetError::Unreachable(format!(
            "PostgreSQL at {}:{}: {e}",
            credentials.host, credentials.port
        ))),
    }
}

/// `name` as an SQL identifier.
fn identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `text` as an SQL string literal (standard_conforming_strings is on since PostgreSQL 9.1).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn refused(error: tokio_postgres::Error) -> TargetError {
    // The statement carries a password: only the server's message is kept.
    let message = error
        .as_db_error()
        .map_or_else(|| error.to_string(), |db| db.message().to_owned());
    TargetError::Refused(message)
}

#[async_trait]
impl Target for Postgres {
    async fn logs_in(&self, credentials: &Credentials) -> Result<bool, TargetError> {
        Ok(connect(credentials).await?.is_some())
    }

    async fn set(&self, acting: &Credentials, pending: &Credentials) -> Result<(), TargetError> {
        let client = connect(acting)
            .await?
            .ok_or_else(|| TargetError::Refused(format!("{} cannot log in", acting.username)))?;
        let user = identifier(&pending.username);
        let password = literal(&pending.password);
        if acting.username != pending.username {
            let exists = client
                .query_opt(
                    "SELECT 1 FROM pg_roles WHERE rolname = $1",
                    &[&pending.username],
                )
                .await
                .map_err(refused)?
                .is_some();
            if !exists {
                let original =
                    identifier(pending.username.strip_suffix("_clone").unwrap_or_default());
                client
                    .batch_execute(&format!(
                        "CREATE ROLE {user} WITH LOGIN PASSWORD {password} IN ROLE {original}"
                    ))
                    .await
                    .map_err(refused)?;
                return Ok(());
            }
        }
        client
            .batch_execute(&format!("ALTER ROLE {user} WITH PASSWORD {password}"))
            .await
            .map_err(refused)
    }

    async fn test(&self, pending: &Credentials) -> Result<(), TargetError> {
        let client = connect(pending).await?.ok_or_else(|| {
            TargetError::Refused(format!(
                "the pending password of {} does not log in",
                pending.username
            ))
        })?;
        // What an application does first: read as itself in its database.
        let row = client
            .query_one("SELECT current_user::text, current_database()::text", &[])
            .await
            .map_err(refused)?;
        let user: String = row.get(0);
        if user != pending.username {
            return Err(TargetError::Refused(format!(
                "logged in as {user}, not {}",
                pending.username
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(identifier(r#"app"; DROP"#), r#""app""; DROP""#);
        assert_eq!(literal("it's"), "'it''s'");
    }
}
