//! The emulator: moto, started through our launcher (localcloud/moto/launcher.py).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use crate::error::LocalCloudError;

/// A running moto server. Dropping it (or the process ending) closes the launcher's stdin,
/// which stops the server.
pub struct Moto {
    endpoint: String,
    _child: Child,
    _stdin: ChildStdin,
    http: reqwest::Client,
}

pub struct MotoOptions {
    pub python: PathBuf,
    pub launcher: PathBuf,
    pub lambda_endpoint: String,
    pub sso_polls_in_progress: u32,
}

impl Moto {
    pub async fn start(options: &MotoOptions) -> Result<Self, LocalCloudError> {
        let mut child = Command::new(&options.python)
            .arg(&options.launcher)
            .arg("--lambda-endpoint")
            .arg(&options.lambda_endpoint)
            .arg("--sso-polls-in-progress")
            .arg(options.sso_polls_in_progress.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                LocalCloudError::Emulator(format!(
                    "cannot run {} (run `make venv`, or set MAESTRO_PYTHON): {e}",
                    options.python.display()
                ))
            })?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(port) = line.strip_prefix("MOTO_READY ") {
                    return Ok(Some(port.trim().to_owned()));
                }
            }
            Ok::<_, std::io::Error>(None)
        })
        .await;
        let port = match ready {
            Ok(Ok(Some(port))) => port,
            Ok(Ok(None)) => {
                return Err(LocalCloudError::Emulator(
                    "the moto launcher exited before it was ready (see its output above)".into(),
                ));
            }
            Ok(Err(e)) => return Err(LocalCloudError::Emulator(e.to_string())),
            Err(_) => {
                return Err(LocalCloudError::Emulator(
                    "the moto launcher was not ready within 60 s".into(),
                ));
            }
        };
        // Keep draining stdout so the launcher never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
            _child: child,
            _stdin: stdin,
            http: reqwest::Client::new(),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Forgets every resource and every piece of data (`POST /moto-api/reset`).
    pub async fn reset(&self) -> Result<(), LocalCloudError> {
        let response = self
            .http
            .post(format!("{}/moto-api/reset", self.endpoint))
            .send()
            .await
            .map_err(|e| LocalCloudError::Emulator(format!("reset: {e}")))?;
        if !response.status().is_success() {
            return Err(LocalCloudError::Emulator(format!(
                "reset answered {}",
                response.status()
            )));
        }
        Ok(())
    }
}

/// The repository: where `infra/`, `statemachines/` and the launcher are. It is found from
/// the working directory upwards (cargo runs tests in their crate's folder, `make` in the
/// root), because a build cache shared by several clones can hold this crate compiled in
/// another clone, whose path the compile-time one would be; the compile-time path is the
/// last resort.
pub fn repository_root() -> PathBuf {
    let is_root = |dir: &Path| {
        dir.join("infra/template.yaml").is_file()
            && dir.join("localcloud/moto/launcher.py").is_file()
    };
    if let Ok(cwd) = std::env::current_dir()
        && let Some(root) = cwd.ancestors().find(|dir| is_root(dir))
    {
        return root.to_path_buf();
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate lives in the repository")
        .to_path_buf()
}

/// The Python that has moto: `MAESTRO_PYTHON`, else the project's virtualenv.
pub fn default_python() -> PathBuf {
    std::env::var_os("MAESTRO_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repository_root().join(".venv/bin/python"))
}
