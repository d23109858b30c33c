//! Secret rotation against a real PostgreSQL server on loopback, with Secrets Manager on the
//! local cloud calling `SecretRotationFunction` through the template's wiring.

use std::time::Duration;

use aws_sdk_secretsmanager::types::RotationRulesType;
use maestro_localcloud::{LocalCloud, Stack};
use maestro_tests::postgres::Postgres;
use maestro_tests::{
    clear_faults, inject_fault, listen_to_topic, maestro_template, on_local_cloud, operator,
    receive_bodies, signed_in,
};
use serde_json::{Value, json};

fn secrets(cloud: &LocalCloud) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(cloud.sdk_config())
}

async fn create(cloud: &LocalCloud, name: &str, value: &Value) {
    secrets(cloud)
        .create_secret()
        .name(name)
        .secret_string(value.to_string())
        .send()
        .await
        .expect("the secret is created");
}

/// Starts a rotation as Secrets Manager's schedule (or `aws secretsmanager rotate-secret`) does.
async fn rotate(cloud: &LocalCloud, stack: &Stack, name: &str) {
    secrets(cloud)
        .rotate_secret()
        .secret_id(name)
        .rotation_lambda_arn(
            stack
                .output("SecretRotationFunctionArn")
                .expect("the rotation function"),
        )
        .rotation_rules(
            RotationRulesType::builder()
                .automatically_after_days(30)
                .build(),
        )
        .rotate_immediately(true)
        .send()
        .await
        .expect("RotateSecret is accepted");
}

async fn current(cloud: &LocalCloud, name: &str) -> (String, Value) {
    let value = secrets(cloud)
        .get_secret_value()
        .secret_id(name)
        .send()
        .await
        .expect("the secret reads");
    let parsed = serde_json::from_str(value.secret_string().expect("a string")).expect("JSON");
    (value.version_id.expect("a version"), parsed)
}

async fn stage_of(cloud: &LocalCloud, name: &str, version: &str) -> Vec<String> {
    secrets(cloud)
        .describe_secret()
        .secret_id(name)
        .send()
        .await
        .expect("the secret is described")
        .version_ids_to_stages
        .unwrap_or_default()
        .remove(version)
        .unwrap_or_default()
}

fn password(value: &Value) -> &str {
    value["password"].as_str().expect("a password")
}

fn credentials(postgres: &Postgres, user: &str, password: &str, strategy: &str) -> Value {
    json!({
        "engine": "postgres",
        "host": "127.0.0.1",
        "port": postgres.port,
        "username": user,
        "password": password,
        "dbname": "payments",
        "rotationStrategy": strategy,
    })
}

#[test]
fn a_rotated_single_user_logs_in_with_the_new_password_only_and_consumers_hear_of_it() {
    on_local_cloud(Some(&maestro_template()), |cloud, stack| async move {
        let stack = stack.expect("the stack");
        let postgres = Postgres::start().await;
        postgres
            .admin("CREATE ROLE app LOGIN PASSWORD 'first-password'; CREATE DATABASE payments OWNER app;")
            .await;
        let name = "prod/payments/app";
        create(
            cloud,
            name,
            &credentials(&postgres, "app", "first-password", "postgresql-single-user"),
        )
        .await;
        let (first_version, _) = current(cloud, name).await;
        let notices = listen_to_topic(
            cloud,
            stack.output("SecretRotatedTopicArn").expect("the topic"),
            "rotated-listener",
        )
        .await;

        rotate(cloud, &stack, name).await;

        let (version, value) = current(cloud, name).await;
        assert_ne!(version, first_version);
        assert_eq!(value["username"], "app");
        assert_eq!(value["engine"], "postgres", "other fields are kept");
        assert_ne!(password(&value), "first-password");
        assert_eq!(password(&value).len(), 32);
        assert!(postgres.logs_in("app", password(&value), "payments").await);
        assert!(!postgres.logs_in("app", "first-password", "payments").await);
        assert_eq!(stage_of(cloud, name, &first_version).await, ["AWSPREVIOUS"]);
        assert_eq!(stage_of(cloud, name, &version).await, ["AWSCURRENT"]);

        let heard = receive_bodies(cloud, &notices, 1, Duration::from_secs(10)).await;
        assert_eq!(heard.len(), 1, "one notice");
        let notice: Value = serde_json::from_str(&heard[0]).expect("JSON");
        assert_eq!(notice["versionId"], version.as_str());
        assert!(
            notice["secretArn"]
                .as_str()
                .unwrap()
                .contains("prod/payments/app")
        );

        // Secrets Manager may call any step again: nothing changes.
        for step in ["createSecret", "setSecret", "testSecret", "finishSecret"] {
            let answer = cloud
                .invoke(
                    "maestro-secret-rotation",
                    json!({"SecretId": name, "ClientRequestToken": version, "Step": step}),
                )
                .await
                .expect("a replayed step succeeds");
            assert_eq!(answer["outcome"], "ALREADY_CURRENT", "{step}: {answer}");
        }
        assert_eq!(current(cloud, name).await, (version, value.clone()));
        assert!(postgres.logs_in("app", password(&value), "payments").await);
    });
}

#[test]
fn alternating_users_keep_the_previous_user_working_and_never_expose_the_master() {
    on_local_cloud(Some(&maestro_template()), |cloud, stack| async move {
        let stack = stack.expect("the stack");
        let postgres = Postgres::start().await;
        postgres
            .admin(
                "CREATE ROLE maestro_master LOGIN CREATEROLE PASSWORD 'master-password';
                 CREATE ROLE app LOGIN PASSWORD 'first-password';
                 GRANT app TO maestro_master WITH ADMIN OPTION;
                 CREATE DATABASE payments OWNER app;",
            )
            .await;
        let master = json!({
            "engine": "postgres", "host": "127.0.0.1", "port": postgres.port,
            "username": "maestro_master", "password": "master-password", "dbname": "payments",
            "maestroServes": ["prod/payments/"],
        });
        create(cloud, "prod/payments/master", &master).await;
        let mut app = credentials(
            &postgres,
            "app",
            "first-password",
            "postgresql-alternating-users",
        );
        app["masterarn"] = json!("prod/payments/master");
        create(cloud, "prod/payments/app", &app).await;

        rotate(cloud, &stack, "prod/payments/app").await;
        let (_, first) = current(cloud, "prod/payments/app").await;
        assert_eq!(first["username"], "app_clone");
        assert!(
            postgres
                .logs_in("app_clone", password(&first), "payments")
                .await
        );
        assert!(
            postgres.logs_in("app", "first-password", "payments").await,
            "the previous user keeps working through the cutover"
        );
        // The clone holds the original's rights.
        let clone = postgres
            .connect("app_clone", password(&first), "payments")
            .await
            .expect("the clone connects");
        clone
            .batch_execute("CREATE TABLE orders (id int); DROP TABLE orders;")
            .await
            .expect("the clone may do what app may");

        rotate(cloud, &stack, "prod/payments/app").await;
        let (_, second) = current(cloud, "prod/payments/app").await;
        assert_eq!(second["username"], "app");
        assert!(postgres.logs_in("app", password(&second), "payments").await);
        assert!(
            postgres
                .logs_in("app_clone", password(&first), "payments")
                .await
        );
        assert!(!postgres.logs_in("app", "first-password", "payments").await);

        let (_, master_now) = current(cloud, "prod/payments/master").await;
        assert_eq!(master_now, master, "the master secret is untouched");
        for value in [&first, &second] {
            assert!(!value.to_string().contains("master-password"));
        }

        // An insider who may write secrets under dev/ names the production master in one of
        // theirs, to have Maestro change a password on it: the master serves prod/payments/
        // only, so nothing changes.
        let alerts = listen_to_topic(
            cloud,
            stack.output("AlertsTopicArn").expect("the alerts topic"),
            "alerts-listener",
        )
        .await;
        let mut borrowed = credentials(
            &postgres,
            "app",
            password(&second),
            "postgresql-alternating-users",
        );
        borrowed["masterarn"] = json!("prod/payments/master");
        create(cloud, "dev/mine/app", &borrowed).await;
        rotate(cloud, &stack, "dev/mine/app").await;
        assert_eq!(
            current(cloud, "dev/mine/app").await.1,
            borrowed,
            "AWSCURRENT is intact"
        );
        assert!(
            postgres
                .logs_in("app_clone", password(&first), "payments")
                .await,
            "the production users are untouched"
        );
        let heard = receive_bodies(cloud, &alerts, 2, Duration::from_secs(15)).await;
        assert!(
            heard
                .iter()
                .any(|alert| alert.contains("does not serve dev/mine/app")),
            "{heard:?}"
        );
    });
}

#[test]
fn a_failed_set_leaves_the_current_password_and_a_rerun_completes() {
    on_local_cloud(Some(&maestro_template()), |cloud, stack| async move {
        let stack = stack.expect("the stack");
        let postgres = Postgres::start().await;
        postgres
            .admin("CREATE ROLE app LOGIN PASSWORD 'first-password'; CREATE DATABASE payments OWNER app;")
            .await;
        let name = "prod/payments/app";
        create(
            cloud,
            name,
            &credentials(&postgres, "app", "first-password", "postgresql-single-user"),
        )
        .await;
        let before = current(cloud, name).await;
        let alerts = listen_to_topic(
            cloud,
            stack.output("AlertsTopicArn").expect("the alerts topic"),
            "alerts-listener",
        )
        .await;
        // The user cannot log in for now: setSecret cannot change the password.
        postgres.admin("ALTER ROLE app NOLOGIN;").await;
        rotate(cloud, &stack, name).await;
        assert_eq!(current(cloud, name).await, before, "AWSCURRENT is intact");

        // The function says which step failed and why; Secrets Manager's RotationFailed
        // event, through its rule, says the rotation failed.
        let heard: Vec<Value> = receive_bodies(cloud, &alerts, 2, Duration::from_secs(15))
            .await
            .iter()
            .map(|body| serde_json::from_str(body).expect("JSON"))
            .collect();
        let step_failed = heard
            .iter()
            .find(|a| a["problem"] == "STEP_FAILED")
            .unwrap_or_else(|| panic!("a step alert: {heard:?}"));
        assert_eq!(step_failed["step"], "setSecret");
        assert!(
            step_failed["reason"]
                .as_str()
                .unwrap()
                .contains("neither the current nor the previous credentials log in"),
            "{step_failed}"
        );
        let rotation_failed = heard
            .iter()
            .find(|a| a["problem"] == "ROTATION_FAILED")
            .unwrap_or_else(|| panic!("a RotationFailed alert: {heard:?}"));
        assert!(
            rotation_failed["secret"]
                .as_str()
                .unwrap()
                .contains("prod/payments/app")
        );
        for alert in &heard {
            assert!(!alert.to_string().contains("first-password"), "{alert}");
        }
        postgres.admin("ALTER ROLE app LOGIN;").await;
        assert!(postgres.logs_in("app", "first-password", "payments").await);

        rotate(cloud, &stack, name).await;
        let (version, value) = current(cloud, name).await;
        assert_ne!(version, before.0);
        assert!(postgres.logs_in("app", password(&value), "payments").await);
        assert!(!postgres.logs_in("app", "first-password", "payments").await);
    });
}

async fn create_tagged(cloud: &LocalCloud, name: &str, value: &str, tags: &[(&str, &str)]) {
    let mut request = secrets(cloud)
        .create_secret()
        .name(name)
        .secret_string(value);
    for (key, value) in tags {
        request = request.tags(
            aws_sdk_secretsmanager::types::Tag::builder()
                .key(*key)
                .value(*value)
                .build(),
        );
    }
    request.send().await.expect("the secret is created");
}

/// Runs the deadline monitor as its schedule would at `time`.
/// Runs the rotation monitor as its schedule would at `time`.
async fn run_monitor_at(
    cloud: &LocalCloud,
    time: chrono::DateTime<chrono::Utc>,
) -> Result<Value, lambda_runtime::Diagnostic> {
    cloud
        .invoke(
            "maestro-SecretRotationMonitorFunction",
            json!({
                "version": "0", "id": "tick", "detail-type": "Scheduled Event",
                "source": "aws.events", "account": "123456789012", "region": "us-east-1",
                "resources": [], "detail": {}, "time": time.to_rfc3339(),
            }),
        )
        .await
}

async fn monitor_at(cloud: &LocalCloud, time: chrono::DateTime<chrono::Utc>) -> Value {
    run_monitor_at(cloud, time).await.expect("the monitor runs")
}

#[test]
fn a_secret_rotated_by_hand_is_alerted_before_and_after_its_deadline_once_a_day() {
    on_local_cloud(Some(&maestro_template()), |cloud, stack| async move {
        let stack = stack.expect("the stack");
        let alerts = listen_to_topic(
            cloud,
            stack.output("AlertsTopicArn").expect("the alerts topic"),
            "deadline-listener",
        )
        .await;
        create_tagged(
            cloud,
            "prod/partner-api-key",
            "issued-by-the-partner",
            &[
                ("maestro:rotation", "manual"),
                ("maestro:max-age-days", "90"),
                ("maestro:warn-days", "10"),
            ],
        )
        .await;
        create_tagged(cloud, "prod/unwatched", "x", &[]).await;
        create_tagged(
            cloud,
            "prod/half-tagged",
            "x",
            &[("maestro:rotation", "manual")],
        )
        .await;
        // Days count from the midnight (UTC) before the secret was made, so that "two runs on
        // the same day" stay on one day whatever the hour the test runs at.
        let created = chrono::Utc::now();
        let midnight = created
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc();
        let day = |d: i64, hours: i64| {
            midnight + chrono::Duration::days(d) + chrono::Duration::hours(hours)
        };
        let heard = |count| {
            let alerts = alerts.clone();
            async move {
                receive_bodies(cloud, &alerts, count, Duration::from_secs(3))
                    .await
                    .iter()
                    .map(|b| serde_json::from_str::<Value>(b).expect("JSON"))
                    .collect::<Vec<Value>>()
            }
        };
        let problems = |alerts: &[Value], secret: &str| -> Vec<String> {
            alerts
                .iter()
                .filter(|a| a["secret"].as_str().unwrap_or_default().contains(secret))
                .map(|a| a["problem"].as_str().unwrap_or_default().to_owned())
                .collect()
        };

        monitor_at(cloud, day(70, 0)).await;
        let first = heard(5).await;
        assert!(problems(&first, "partner-api-key").is_empty(), "{first:?}");
        assert_eq!(problems(&first, "half-tagged"), ["ROTATION_POLICY_INVALID"]);
        assert!(problems(&first, "unwatched").is_empty());

        monitor_at(cloud, day(81, 0)).await;
        monitor_at(cloud, day(81, 2)).await;
        let due_soon = heard(5).await;
        assert_eq!(
            problems(&due_soon, "partner-api-key"),
            ["MANUAL_ROTATION_DUE_SOON"],
            "once on the day: {due_soon:?}"
        );

        monitor_at(cloud, day(95, 0)).await;
        monitor_at(cloud, day(95, 1)).await;
        monitor_at(cloud, day(96, 0)).await;
        let overdue = heard(10).await;
        assert_eq!(
            problems(&overdue, "partner-api-key"),
            ["ROTATION_OVERDUE", "ROTATION_OVERDUE"],
            "once a day: {overdue:?}"
        );
        let reason = overdue
            .iter()
            .find(|a| a["problem"] == "ROTATION_OVERDUE")
            .and_then(|a| a["reason"].as_str())
            .unwrap_or_default()
            .to_owned();
        assert!(reason.contains("was due on"), "{reason}");
        assert!(
            !overdue
                .iter()
                .any(|a| a.to_string().contains("issued-by-the-partner"))
        );

        // An alert that cannot be published is not counted as sent: the day's next run sends it.
        inject_fault(
            cloud,
            json!({"service": "sns", "action": "Publish", "code": "InternalError", "status": 500}),
        )
        .await;
        let failed = run_monitor_at(cloud, day(97, 0)).await;
        assert!(failed.is_err(), "the run fails while SNS does: {failed:?}");
        clear_faults(cloud).await;
        monitor_at(cloud, day(97, 1)).await;
        assert_eq!(
            problems(&heard(5).await, "partner-api-key"),
            ["ROTATION_OVERDUE"],
            "the alert is sent once SNS answers"
        );
    });
}

#[test]
fn rotate_now_follows_the_approval_policy_and_the_status_lists_every_secret() {
    on_local_cloud(Some(&maestro_template()), |cloud, stack| async move {
        let stack = stack.expect("the stack");
        for (name, environment) in [
            ("prod/api-key", "production"),
            ("dev/api-key", "development"),
        ] {
            create_tagged(
                cloud,
                name,
                "the-first-key-0123456789abcdefgh",
                &[
                    ("maestro:rotation-strategy", "random-value"),
                    ("maestro:environment", environment),
                ],
            )
            .await;
            // Rotation is configured (and a first rotation runs) as an operator would.
            rotate(cloud, &stack, name).await;
        }
        let versions_before = [
            current_version_id(cloud, "prod/api-key").await,
            current_version_id(cloud, "dev/api-key").await,
        ];
        let ask = |name: &str| {
            let url = format!(
                "{}/secrets/{}/rotate",
                cloud.http_endpoint(),
                name.replace('/', "%2F")
            );
            async move {
                // Team payments owns prod/ and dev/ (localcloud/sample-secret-owners.json).
                let response = signed_in(cloud, "dave@example.com", &["payments"])
                    .await
                    .post(url)
                    .body(json!({"reason": "the key was pasted in a ticket"}).to_string())
                    .send()
                    .await
                    .expect("the API answers");
                let status = response.status().as_u16();
                (status, response.json::<Value>().await.expect("JSON"))
            }
        };

        // Development runs at once.
        let (status, dev) = ask("dev/api-key").await;
        assert_eq!(status, 202, "{dev}");
        assert_eq!(dev["status"], "RUNNING");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while current_version_id(cloud, "dev/api-key").await == versions_before[1] {
            assert!(std::time::Instant::now() < deadline, "dev/api-key rotated");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        // Production waits for two approvers.
        let (status, prod) = ask("prod/api-key").await;
        assert_eq!(status, 202, "{prod}");
        assert_eq!(prod["status"], "AWAITING_APPROVAL");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            current_version_id(cloud, "prod/api-key").await,
            versions_before[0]
        );
        for approver in ["bob@example.com", "carol@example.com"] {
            let (status, page) = maestro_tests::approver::decide_by_email(
                cloud,
                "Rotate a secret now",
                approver,
                "approve",
                "",
            )
            .await;
            assert_eq!(status, 200, "{page}");
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while current_version_id(cloud, "prod/api-key").await == versions_before[0] {
            assert!(
                std::time::Instant::now() < deadline,
                "prod/api-key rotated once approved"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let key = secrets(cloud)
            .get_secret_value()
            .secret_id("prod/api-key")
            .send()
            .await
            .expect("the key reads")
            .secret_string
            .unwrap_or_default();
        assert_eq!(key.len(), 32);
        assert_ne!(key, "the-first-key-0123456789abcdefgh");

        let (status, missing) = ask("prod/no-such-secret").await;
        assert_eq!(status, 404, "{missing}");

        let listed: Value = operator(cloud)
            .await
            .get(format!("{}/secrets/rotation-status", cloud.http_endpoint()))
            .send()
            .await
            .expect("the API answers")
            .json()
            .await
            .expect("JSON");
        let secrets_listed = listed["secrets"].as_array().expect("a list");
        let entry = |name: &str| {
            secrets_listed
                .iter()
                .find(|s| s["name"] == name)
                .unwrap_or_else(|| panic!("{name} is listed: {listed}"))
        };
        assert_eq!(entry("prod/api-key")["mode"], "AUTOMATIC");
        assert_eq!(entry("prod/api-key")["state"], "CURRENT");
        assert!(entry("prod/api-key")["lastRotated"].is_string());
        assert!(entry("dev/api-key")["nextDue"].is_string(), "{listed}");
    });
}

async fn current_version_id(cloud: &LocalCloud, name: &str) -> String {
    secrets(cloud)
        .get_secret_value()
        .secret_id(name)
        .send()
        .await
        .expect("the secret reads")
        .version_id
        .expect("a version")
}

#[test]
fn a_rabbitmq_user_rotated_through_the_management_api_uses_a_channel_with_the_new_password_only() {
    on_local_cloud(Some(&maestro_template()), |cloud, stack| async move {
        let stack = stack.expect("the stack");
        let broker = maestro_tests::rabbitmq::RabbitMq::start().await;
        broker
            .admin_put(
                "/users/app",
                json!({"password": "first-password", "tags": "management"}),
            )
            .await;
        broker
            .admin_put(
                "/permissions/%2F/app",
                json!({"configure": ".*", "write": ".*", "read": ".*"}),
            )
            .await;
        let endpoint = |user: &str, password: &str| {
            json!({
                "engine": "rabbitmq", "host": "127.0.0.1", "port": broker.management_port,
                "managementScheme": "http", "username": user, "password": password,
            })
        };
        let mut admin = endpoint("guest", "guest");
        admin["maestroServes"] = json!(["prod/orders/"]);
        create(cloud, "prod/orders/mq-admin", &admin).await;
        let mut app = endpoint("app", "first-password");
        app["vhost"] = json!("/");
        app["masterarn"] = json!("prod/orders/mq-admin");
        app["rotationStrategy"] = json!("rabbitmq-user");
        create(cloud, "prod/orders/mq", &app).await;

        rotate(cloud, &stack, "prod/orders/mq").await;
        let (_, value) = current(cloud, "prod/orders/mq").await;
        assert_ne!(password(&value), "first-password");
        assert!(broker.logs_in("app", password(&value)).await);
        assert!(!broker.logs_in("app", "first-password").await);
        assert_eq!(value["vhost"], "/", "other fields are kept");
        assert_eq!(current(cloud, "prod/orders/mq-admin").await.1, admin);
        assert!(
            broker.logs_in("guest", "guest").await,
            "the admin is untouched"
        );
    });
}

#[test]
fn steps_replayed_mid_rotation_and_create_over_a_pending_value_change_nothing() {
    on_local_cloud(Some(&maestro_template()), |cloud, stack| async move {
        let stack = stack.expect("the stack");
        let postgres = Postgres::start().await;
        postgres
            .admin("CREATE ROLE app LOGIN PASSWORD 'first-password'; CREATE DATABASE payments OWNER app;")
            .await;
        let name = "prod/payments/app";
        create(
            cloud,
            name,
            &credentials(&postgres, "app", "first-password", "postgresql-single-user"),
        )
        .await;
        // A first rotation turns rotation on; the second is driven step by step.
        rotate(cloud, &stack, name).await;
        let (_, rotated) = current(cloud, name).await;
        let token = "0b8d6a3e-9c4f-4f1e-8a52-6d2b7c1e9f30";
        let mut pending = rotated.clone();
        pending["password"] = json!("a-pending-password-made-earlier-01");
        secrets(cloud)
            .put_secret_value()
            .secret_id(name)
            .client_request_token(token)
            .secret_string(pending.to_string())
            .version_stages("AWSPENDING")
            .send()
            .await
            .expect("a pending version");
        let step = |step: &'static str| async move {
            cloud
                .invoke(
                    "maestro-secret-rotation",
                    json!({"SecretId": name, "ClientRequestToken": token, "Step": step}),
                )
                .await
                .unwrap_or_else(|e| panic!("{step}: {e:?}"))["outcome"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(
            step("createSecret").await,
            "ALREADY_DONE",
            "the pending value is kept"
        );
        assert_eq!(step("setSecret").await, "DONE");
        assert_eq!(step("setSecret").await, "ALREADY_DONE");
        assert_eq!(step("testSecret").await, "DONE");
        assert_eq!(step("testSecret").await, "DONE");
        assert_eq!(
            current(cloud, name).await.1,
            rotated,
            "AWSCURRENT waits for finish"
        );
        assert_eq!(step("finishSecret").await, "DONE");
        assert_eq!(step("finishSecret").await, "ALREADY_CURRENT");
        let (version, value) = current(cloud, name).await;
        assert_eq!(version, token);
        assert_eq!(value, pending);
        assert!(
            postgres
                .logs_in("app", "a-pending-password-made-earlier-01", "payments")
                .await
        );
        assert!(
            !postgres
                .logs_in("app", password(&rotated), "payments")
                .await
        );
    });
}

#[test]
fn a_database_that_requires_tls_is_rotated_over_a_verified_connection() {
    on_local_cloud(Some(&maestro_template()), |cloud, stack| async move {
        let stack = stack.expect("the stack");
        let postgres = Postgres::start_requiring_tls().await;
        postgres
            .admin("CREATE ROLE app LOGIN PASSWORD 'first-password'; CREATE DATABASE payments OWNER app;")
            .await;
        assert!(
            !postgres.logs_in("app", "first-password", "payments").await,
            "app may not connect in the clear"
        );
        let name = "prod/payments/app";
        let mut secret = credentials(&postgres, "app", "first-password", "postgresql-single-user");
        secret["sslmode"] = json!("verify-full");
        secret["sslrootcert"] = json!(postgres.certificate.clone().expect("a certificate"));
        create(cloud, name, &secret).await;

        rotate(cloud, &stack, name).await;

        let (_, value) = current(cloud, name).await;
        assert_ne!(
            password(&value),
            "first-password",
            "the rotation went through"
        );
        let over_tls = |password: &str| {
            let mut credentials = value.clone();
            credentials["password"] = json!(password);
            maestro_domain::rotation::credentials::Credentials::parse(&credentials.to_string())
                .expect("credentials")
        };
        use maestro_domain::rotation::protocol::Target;
        let target = secret_rotation::Postgres;
        assert!(target.logs_in(&over_tls(password(&value))).await.unwrap());
        assert!(!target.logs_in(&over_tls("first-password")).await.unwrap());
    });
}
