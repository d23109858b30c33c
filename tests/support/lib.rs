//! What the end-to-end tests share: one local cloud per test run, a clean stack per test, and
//! small helpers to drive the emulator as a user's event would.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use lambda_runtime::LambdaEvent;
use maestro_aws::SdkConfig;
use maestro_aws::env::{EnvError, FunctionEnv};
use maestro_aws::lambda::LambdaFunction;
use maestro_localcloud::functions::Registration;
use maestro_localcloud::{LocalCloud, LocalCloudOptions, Stack, Template, moto};
use serde_json::{Value, json};

pub use maestro_localcloud;

pub mod approver;
pub mod iam;
pub mod postgres;
pub mod rabbitmq;

struct Shared {
    runtime: tokio::runtime::Runtime,
    cloud: LocalCloud,
    /// Tests share one emulator, so they take turns.
    turn: Mutex<()>,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        capture_logs();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime for the local cloud");
        let cloud = runtime
            .block_on(LocalCloud::start(LocalCloudOptions::default()))
            .unwrap_or_else(|e| panic!("the local cloud does not start: {e}"));
        cloud.register(Registration::of::<Recorder>("test-recorder"));
        Shared {
            runtime,
            cloud,
            turn: Mutex::new(()),
        }
    })
}

/// Maestro's operators' team, as the template's `OperatorsTeam` names it by default.
pub const OPERATORS: &str = "maestro-operators";

/// A client signed in to the stack's user pool as `email`, a member of `teams`: each of its
/// requests carries the token.
pub async fn signed_in(cloud: &LocalCloud, email: &str, teams: &[&str]) -> reqwest::Client {
    let bearer = cloud
        .bearer(email, teams)
        .await
        .unwrap_or_else(|e| panic!("{email} signs in: {e}"));
    bearer_client(&bearer)
}

/// A client that sends `bearer` (an `Authorization` header value) with every request.
pub fn bearer_client(bearer: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "authorization",
        bearer.parse().expect("a token is a valid header value"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("an HTTP client")
}

/// A client signed in as one of Maestro's operators, who may do anything.
pub async fn operator(cloud: &LocalCloud) -> reqwest::Client {
    signed_in(cloud, "ops@example.com", &[OPERATORS]).await
}

/// `method path` on the management API as `client`: the status, and the body as JSON (a
/// JSON string when it is not JSON).
pub async fn call_as(
    client: &reqwest::Client,
    cloud: &LocalCloud,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let url = format!("{}{path}", cloud.http_endpoint());
    let mut request = match method {
        "GET" => client.get(url),
        "POST" => client.post(url),
        "PUT" => client.put(url),
        "DELETE" => client.delete(url),
        other => panic!("no method {other}"),
    };
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    let response = request.send().await.expect("the management API answers");
    let status = response.status().as_u16();
    let text = response.text().await.expect("a body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// Runs `test` on the local cloud, emptied first; with `template`, its stack is built before.
pub fn on_local_cloud<F, Fut>(template: Option<&Template>, test: F)
where
    F: FnOnce(&'static LocalCloud, Option<Stack>) -> Fut,
    Fut: Future<Output = ()>,
{
    on_local_cloud_with(template, &[], test)
}

/// [`on_local_cloud`] with some of the template's parameters set.
pub fn on_local_cloud_with<F, Fut>(
    template: Option<&Template>,
    parameters: &[(&str, &str)],
    test: F,
) where
    F: FnOnce(&'static LocalCloud, Option<Stack>) -> Fut,
    Fut: Future<Output = ()>,
{
    let shared = shared();
    // A failed test poisons the lock; the next test resets the cloud anyway.
    let _turn = shared
        .turn
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    shared.runtime.block_on(async {
        let stack = match template {
            Some(template) => Some(
                fresh_deploy(&shared.cloud, template, parameters)
                    .await
                    .unwrap_or_else(|e| panic!("the stack builds: {e}")),
            ),
            None => {
                empty(&shared.cloud).await;
                None
            }
        };
        test(&shared.cloud, stack).await;
    });
}

/// Builds `template` on an emptied cloud and returns the outcome, for tests of broken wiring.
pub fn deploy_outcome(template: &Template) -> Result<(), String> {
    let shared = shared();
    let _turn = shared
        .turn
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    shared
        .runtime
        .block_on(fresh_deploy(&shared.cloud, template, &[]))
        .map(drop)
}

/// Empties the cloud and what the recorders kept.
async fn empty(cloud: &LocalCloud) {
    cloud.reset().await.expect("the local cloud resets");
    recorded_events().clear();
}

async fn fresh_deploy(
    cloud: &LocalCloud,
    template: &Template,
    extra: &[(&str, &str)],
) -> Result<Stack, String> {
    empty(cloud).await;
    let mut parameters = cloud
        .local_parameters(template)
        .await
        .map_err(|e| e.to_string())?;
    parameters.extend(fast_polls(template));
    parameters.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    cloud
        .deploy(template, "maestro", &parameters)
        .await
        .map_err(|e| e.to_string())
}

/// Poll settings that keep the monitor's waits to a second or two, and a crawl page budget
/// small enough that crawls continue across calls, for the templates that have them.
pub fn fast_polls(template: &Template) -> BTreeMap<String, String> {
    [
        ("MonitorPollFirstWaitSeconds", "1"),
        ("MonitorPollMaxWaitSeconds", "2"),
        ("MonitorPollMaxPolls", "5"),
        // Crawls continue across calls after two pages, so the tests cross that boundary.
        ("DiscoveryPagesPerCall", "2"),
    ]
    .into_iter()
    .filter(|(name, _)| template.document["Parameters"].get(name).is_some())
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// A template of `tests/fixtures/`.
pub fn fixture_template(name: &str) -> Template {
    Template::load(&moto::repository_root().join("tests/fixtures").join(name))
        .unwrap_or_else(|e| panic!("tests/fixtures/{name} loads: {e}"))
}

/// What the recorder functions received, by function name, since the test began.
pub fn recorded_events() -> MutexGuard<'static, Vec<(String, Value)>> {
    static RECORDED: Mutex<Vec<(String, Value)>> = Mutex::new(Vec::new());
    RECORDED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Waits until a recorder received `count` events, and returns them.
pub async fn wait_for_recorded(count: usize, patience: Duration) -> Vec<Value> {
    let deadline = std::time::Instant::now() + patience;
    loop {
        let events: Vec<Value> = recorded_events().iter().map(|(_, e)| e.clone()).collect();
        if events.len() >= count || std::time::Instant::now() >= deadline {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A function that records every event it gets and answers with its `RESPONSE` variable (or
/// null): a stand-in for a Maestro function when the test is about the wiring.
pub struct Recorder {
    name: String,
    response: Value,
}

impl LambdaFunction for Recorder {
    type Event = Value;
    type Response = Value;
    type Error = std::convert::Infallible;

    fn from_parts(_: &SdkConfig, env: &FunctionEnv) -> Result<Self, EnvError> {
        let mut vars = env.reader();
        let name = vars.required("AWS_LAMBDA_FUNCTION_NAME");
        vars.finish()?;
        let response = env
            .get("RESPONSE")
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or(Value::Null);
        Ok(Recorder { name, response })
    }

    async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, Self::Error> {
        recorded_events().push((self.name.clone(), event.payload));
        Ok(self.response.clone())
    }
}

/// Makes every request the emulator matches with `fault` answer an AWS error
/// (localcloud/README.md, fault injection) until [`clear_faults`].
pub async fn inject_fault(cloud: &LocalCloud, fault: Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/moto-api/maestro/faults", cloud.moto_endpoint()))
        .body(fault.to_string())
        .send()
        .await
        .expect("the fault is set");
    assert_eq!(response.status(), 200);
}

pub async fn clear_faults(cloud: &LocalCloud) {
    reqwest::Client::new()
        .delete(format!("{}/moto-api/maestro/faults", cloud.moto_endpoint()))
        .send()
        .await
        .expect("the faults are cleared");
}

/// Makes the emulator's eventually consistent DynamoDB reads (those without `ConsistentRead`,
/// and every read of a global secondary index) answer as the table stood `window` before, as
/// DynamoDB may, until the next reset (localcloud/README.md). The harness's own reads stay
/// consistent.
pub async fn reads_may_be_stale(cloud: &LocalCloud, window: Duration) {
    let response = reqwest::Client::new()
        .post(format!(
            "{}/moto-api/maestro/eventual-consistency",
            cloud.moto_endpoint()
        ))
        .body(json!({ "staleMs": window.as_millis() as u64 }).to_string())
        .send()
        .await
        .expect("the emulator takes the setting");
    assert_eq!(response.status(), 200, "the emulator takes the setting");
}

/// The template every deployment uses.
pub fn maestro_template() -> Template {
    Template::load(&moto::repository_root().join("infra/template.yaml"))
        .expect("infra/template.yaml loads")
}

/// A queue subscribed to `topic_arn` with raw delivery: what a subscriber of the topic sees.
pub async fn listen_to_topic(cloud: &LocalCloud, topic_arn: &str, name: &str) -> String {
    maestro_localcloud::listen::subscribe_queue(cloud.sdk_config(), topic_arn, name)
        .await
        .unwrap_or_else(|e| panic!("the listener subscribes: {e}"))
}

/// Receives (and deletes) message bodies from `queue_url` until `count` arrived or `patience`
/// ran out; returns what arrived.
pub async fn receive_bodies(
    cloud: &LocalCloud,
    queue_url: &str,
    count: usize,
    patience: Duration,
) -> Vec<String> {
    maestro_localcloud::listen::receive_bodies(cloud.sdk_config(), queue_url, count, patience)
        .await
        .unwrap_or_else(|e| panic!("the queue can be read: {e}"))
}

fn log_buffer() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    LOGS.get_or_init(|| Mutex::new(Vec::new()))
}

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        log_buffer()
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every line Maestro's functions log in this test process, down to debug: the functions
/// run in-process, so tests can assert what their logs never hold.
fn capture_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "debug,aws_config=warn,aws_smithy_runtime=warn,aws_smithy_runtime_api=warn,hyper=warn,hyper_util=warn,reqwest=warn,h2=warn,rustls=warn",
        ))
        .with_writer(|| LogWriter)
        .with_ansi(false)
        .try_init();
}

/// What the functions have logged so far.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(
        &log_buffer()
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()),
    )
    .into_owned()
}
