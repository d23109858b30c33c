//! What the end-to-end tests share: one local cloud per test run, a clean stack per test, and
//! small helpers to drive the emulator as a user's event would.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use maestro_localcloud::{LocalCloud, LocalCloudOptions, Stack, Template, moto};

pub use maestro_localcloud;

struct Shared {
    runtime: tokio::runtime::Runtime,
    cloud: LocalCloud,
    /// Tests share one emulator, so they take turns.
    turn: Mutex<()>,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime for the local cloud");
        let cloud = runtime
            .block_on(LocalCloud::start(LocalCloudOptions::default()))
            .unwrap_or_else(|e| panic!("the local cloud does not start: {e}"));
        Shared {
            runtime,
            cloud,
            turn: Mutex::new(()),
        }
    })
}

/// Runs `test` on the local cloud, emptied first; with `template`, its stack is built before.
pub fn on_local_cloud<F, Fut>(template: Option<&Template>, test: F)
where
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
        shared.cloud.reset().await.expect("the local cloud resets");
        let stack = match template {
            Some(template) => Some(
                shared
                    .cloud
                    .deploy(template, "maestro", &fast_polls())
                    .await
                    .unwrap_or_else(|e| panic!("the stack builds: {e}")),
            ),
            None => None,
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
    shared.runtime.block_on(async {
        shared.cloud.reset().await.expect("the local cloud resets");
        shared
            .cloud
            .deploy(template, "maestro", &fast_polls())
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    })
}

/// Poll settings that keep the monitor's waits to a second or two.
pub fn fast_polls() -> BTreeMap<String, String> {
    [
        ("MonitorPollFirstWaitSeconds", "1"),
        ("MonitorPollMaxWaitSeconds", "2"),
        ("MonitorPollMaxPolls", "5"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The template every deployment uses.
pub fn maestro_template() -> Template {
    Template::load(&moto::repository_root().join("infra/template.yaml"))
        .expect("infra/template.yaml loads")
}

/// A queue subscribed to `topic_arn` with raw delivery: what a subscriber of the topic sees.
pub async fn listen_to_topic(cloud: &LocalCloud, topic_arn: &str, name: &str) -> String {
    let sqs = aws_sdk_sqs::Client::new(cloud.sdk_config());
    let sns = aws_sdk_sns::Client::new(cloud.sdk_config());
    let queue_url = sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .expect("the listener queue is created")
        .queue_url
        .expect("a queue URL");
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("the listener queue has attributes")
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .expect("a queue ARN");
    sns.subscribe()
        .topic_arn(topic_arn)
        .protocol("sqs")
        .endpoint(queue_arn)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .expect("the listener subscribes");
    queue_url
}

/// Receives (and deletes) message bodies from `queue_url` until `count` arrived or `patience`
/// ran out; returns what arrived.
pub async fn receive_bodies(
    cloud: &LocalCloud,
    queue_url: &str,
    count: usize,
    patience: Duration,
) -> Vec<String> {
    let sqs = aws_sdk_sqs::Client::new(cloud.sdk_config());
    let deadline = Instant::now() + patience;
    let mut bodies = Vec::new();
    while bodies.len() < count && Instant::now() < deadline {
        let received = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("the queue can be read");
        for message in received.messages.unwrap_or_default() {
            if let Some(handle) = &message.receipt_handle {
                sqs.delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .expect("the message can be deleted");
            }
            bodies.extend(message.body);
        }
    }
    bodies
}
