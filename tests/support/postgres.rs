//! A real PostgreSQL server on loopback, started for one test and stopped with it: the target
//! the rotation strategies change passwords on. `make test` installs Debian's `postgresql`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tokio_postgres::{Client, NoTls};

/// The superuser's password on these throwaway servers.
const SUPERUSER_PASSWORD: &str = "local-superuser";

pub struct Postgres {
    pub port: u16,
    /// The certificate of the CA that signed the server's (PEM), when it was started with TLS.
    pub certificate: Option<String>,
    server: Child,
    dir: PathBuf,
}

fn bindir() -> PathBuf {
    if let Ok(dir) = std::env::var("MAESTRO_PG_BINDIR") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|e| Some(e.ok()?.path().join("bin")))
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().unwrap_or_else(|| {
        panic!("no PostgreSQL under /usr/lib/postgresql: apt-get install postgresql (or set MAESTRO_PG_BINDIR)")
    })
}

/// A command as the server's owner: `postgres` when the tests run as root (initdb refuses
/// root), the current user otherwise.
fn as_owner(program: &Path) -> Command {
    let root = std::env::var("USER").is_ok_and(|u| u == "root")
        || std::fs::metadata("/proc/self").is_ok_and(|m| {
            use std::os::unix::fs::MetadataExt;
            m.uid() == 0
        });
    if root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Postgres {
    pub async fn start() -> Postgres {
        Postgres::start_with(false).await
    }

    /// A server that accepts `app` only over TLS, with a self-signed certificate for
    /// 127.0.0.1 (the superuser may still connect in the clear, for the test's own setup).
    pub async fn start_requiring_tls() -> Postgres {
        Postgres::start_with(true).await
    }

    async fn start_with(tls: bool) -> Postgres {
        let bin = bindir();
        let dir = std::env::temp_dir().join(format!("maestro-pg-{}", uuid_like()));
        std::fs::create_dir_all(&dir).expect("a data folder");
        let password_file = dir.join("superuser-password");
        std::fs::write(&password_file, SUPERUSER_PASSWORD).expect("the password file");
        let _ = std::process::Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status();
        let data = dir.join("data");
        let init = as_owner(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", password_file.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .await
            .expect("initdb runs");
        assert!(
            init.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let mut certificate = None;
        let mut settings = vec!["listen_addresses=127.0.0.1".to_owned()];
        if tls {
            // A CA of its own signs the server's certificate, as the RDS CA signs RDS's.
            let openssl = |args: &[&str]| {
                let made = std::process::Command::new("openssl")
                    .current_dir(&data)
                    .args(args)
                    .output()
                    .expect("openssl runs");
                assert!(
                    made.status.success(),
                    "openssl {args:?}: {}",
                    String::from_utf8_lossy(&made.stderr)
                );
            };
            openssl(&[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=maestro-test-ca",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
            ]);
            openssl(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ]);
            std::fs::write(
                data.join("server.ext"),
                "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
            )
            .expect("the extensions");
            openssl(&[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "server.ext",
                "-out",
                "server.crt",
            ]);
            let _ = std::process::Command::new("chown")
                .args(["postgres:postgres"])
                .arg(data.join("server.key"))
                .arg(data.join("server.crt"))
                .status();
            let _ = std::process::Command::new("chmod")
                .arg("600")
                .arg(data.join("server.key"))
                .status();
            certificate =
                Some(std::fs::read_to_string(data.join("ca.crt")).expect("the CA certificate"));
            // app over TLS only; everyone else as initdb set them up.
            let hba = data.join("pg_hba.conf");
            let rules = std::fs::read_to_string(&hba).expect("pg_hba.conf");
            std::fs::write(
                &hba,
                format!(
                    "hostssl all app 127.0.0.1/32 scram-sha-256\nhost all app 0.0.0.0/0 reject\n{rules}"
                ),
            )
            .expect("pg_hba.conf is written");
            settings.push("ssl=on".to_owned());
        }
        let port = free_port();
        let mut server = as_owner(&bin.join("postgres"));
        server.arg("-D").arg(&data).args(["-p", &port.to_string()]);
        for setting in &settings {
            server.args(["-c", setting]);
        }
        let server = server
            .arg("-k")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("postgres starts");
        let postgres = Postgres {
            port,
            certificate,
            server,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while postgres.superuser().await.is_err() {
            assert!(Instant::now() < deadline, "PostgreSQL did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        postgres
    }

    /// A connection as `user` with `password` to `dbname`.
    pub async fn connect(
        &self,
        user: &str,
        password: &str,
        dbname: &str,
    ) -> Result<Client, tokio_postgres::Error> {
        let (client, connection) = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user(user)
            .password(password)
            .dbname(dbname)
            .connect_timeout(Duration::from_secs(5))
            .connect(NoTls)
            .await?;
        tokio::spawn(connection);
        Ok(client)
    }

    pub async fn superuser(&self) -> Result<Client, tokio_postgres::Error> {
        self.connect("postgres", SUPERUSER_PASSWORD, "postgres")
            .await
    }

    /// Runs each statement of `sql` as the superuser, one at a time (`CREATE DATABASE` may
    /// not share a transaction).
    pub async fn admin(&self, sql: &str) {
        let client = self.superuser().await.expect("the superuser connects");
        for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            client.batch_execute(statement).await.unwrap_or_else(|e| {
                let detail = e.as_db_error().map(|d| d.message().to_owned());
                panic!("{statement}: {e} {detail:?}")
            });
        }
    }

    /// Whether `user` logs in with `password` and can run a query.
    pub async fn logs_in(&self, user: &str, password: &str, dbname: &str) -> bool {
        match self.connect(user, password, dbname).await {
            Ok(client) => client.query_one("SELECT 1", &[]).await.is_ok(),
            Err(_) => false,
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.server.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{nanos}", std::process::id())
}
