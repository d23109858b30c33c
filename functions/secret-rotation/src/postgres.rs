//! PostgreSQL users as rotation targets: the single-user strategy (the user changes its own
//! password) and the alternating-users strategy (the master changes the other user's, and
//! creates it on the first rotation as a member of the original, so it holds the same rights).
//!
//! Connections follow the secret's `sslmode`, as libpq does: `prefer` (the default: TLS when
//! the server offers it, as Amazon RDS requires), `require` (TLS or nothing), both without
//! checking the server's certificate, like libpq; `verify-full` (TLS with the certificate
//! checked against the system's roots and the PEM certificates of `sslrootcert`, such as
//! the RDS CA bundle, and the host name); or `disable`.

use std::time::Duration;

use async_trait::async_trait;
use maestro_domain::rotation::credentials::Credentials;
use maestro_domain::rotation::protocol::{Target, TargetError};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config};
use tokio_postgres_rustls::MakeRustlsConnect;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to the databases the secrets name.
pub struct Postgres;

/// Accepts any certificate: what libpq's `prefer` and `require` do (encryption against
/// eavesdropping, not identity). The handshake's signatures are still checked.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS mode and connector the secret asks for.
fn tls(credentials: &Credentials) -> Result<(SslMode, MakeRustlsConnect), TargetError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| TargetError::Refused(format!("TLS: {e}")))?;
    let invalid =
        |problem: String| TargetError::Refused(format!("the secret's sslmode: {problem}"));
    let (mode, config) = match credentials.field("sslmode").unwrap_or("prefer") {
        "disable" => (
            SslMode::Disable,
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth(),
        ),
        mode @ ("prefer" | "require") => (
            if mode == "prefer" {
                SslMode::Prefer
            } else {
                SslMode::Require
            },
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth(),
        ),
        "verify-full" => {
            let mut roots = RootCertStore::empty();
            for certificate in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(certificate);
            }
            if let Some(pem) = credentials.field("sslrootcert") {
                for certificate in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                    let certificate =
                        certificate.map_err(|e| invalid(format!("sslrootcert: {e}")))?;
                    roots
                        .add(certificate)
                        .map_err(|e| invalid(format!("sslrootcert: {e}")))?;
                }
            }
            (
                SslMode::Require,
                builder.with_root_certificates(roots).with_no_client_auth(),
            )
        }
        other => {
            return Err(invalid(format!(
                "{other:?} is not disable, prefer, require or verify-full"
            )));
        }
    };
    Ok((mode, MakeRustlsConnect::new(config)))
}

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
    let (mode, connector) = tls(credentials)?;
    let mut config = config(credentials);
    config.ssl_mode(mode);
    match config.connect(connector).await {
        Ok((client, connection)) => {
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "a PostgreSQL connection ended");
                }
            });
            Ok(Some(client))
        }
        Err(e) if refused_login(&e) => Ok(None),
        Err(e) => {
            // tokio-postgres says "error performing TLS handshake"; the why is in the sources.
            let mut reason = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                reason.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            Err(TargetError::Unreachable(format!(
                "PostgreSQL at {}:{}: {reason}",
                credentials.host, credentials.port
            )))
        }
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
