//! A real RabbitMQ broker with its management plugin on loopback, started for one test and
//! stopped with it. `make test` installs Debian's `rabbitmq-server`; the package's own node is
//! not used.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

pub struct RabbitMq {
    /// The management API's port (`http://127.0.0.1:<port>/api`).
    pub management_port: u16,
    server: Child,
    dir: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl RabbitMq {
    pub async fn start() -> RabbitMq {
        let server_script = [
            "/usr/lib/rabbitmq/bin/rabbitmq-server",
            "/usr/sbin/rabbitmq-server",
        ]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("no rabbitmq-server: apt-get install rabbitmq-server");
        let name = format!(
            "maestro-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis())
        );
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir).expect("a broker folder");
        let (amqp, management, distribution) = (free_port(), free_port(), free_port());
        std::fs::write(dir.join("enabled_plugins"), "[rabbitmq_management].\n")
            .expect("the plugins file");
        std::fs::write(
            dir.join("rabbitmq.conf"),
            format!(
                "listeners.tcp.default = 127.0.0.1:{amqp}\nmanagement.tcp.port = {management}\n\
                 management.tcp.ip = 127.0.0.1\n"
            ),
        )
        .expect("the configuration");
        let server = Command::new(server_script)
            .current_dir(&dir)
            .env("HOME", &dir)
            .env("RABBITMQ_NODENAME", format!("{name}@localhost"))
            .env("RABBITMQ_DIST_PORT", distribution.to_string())
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq"))
            .env("RABBITMQ_PID_FILE", dir.join("pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("rabbitmq-server starts");
        let broker = RabbitMq {
            management_port: management,
            server,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !broker.logs_in("guest", "guest").await {
            assert!(Instant::now() < deadline, "RabbitMQ did not come up");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        broker
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/api{path}", self.management_port)
    }

    /// Whether `user` logs in to the management API with `password`.
    pub async fn logs_in(&self, user: &str, password: &str) -> bool {
        reqwest::Client::new()
            .get(self.url("/whoami"))
            .basic_auth(user, Some(password))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    /// Calls the management API as the `guest` administrator.
    pub async fn admin_put(&self, path: &str, body: serde_json::Value) {
        let answer = reqwest::Client::new()
            .put(self.url(path))
            .basic_auth("guest", Some("guest"))
            .json(&body)
            .send()
            .await
            .expect("the management API answers");
        assert!(
            answer.status().is_success(),
            "PUT {path}: {}",
            answer.status()
        );
    }
}

impl Drop for RabbitMq {
    fn drop(&mut self) {
        // The script starts the Erlang VM in its process group: stop them all.
        if let Some(pid) = self.server.id() {
            // `--` matters: without it, some kill(1)s read `-<pid>` as an option.
            let _ = std::process::Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{pid}")])
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
