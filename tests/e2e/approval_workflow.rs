//! The approval workflow through the template's wiring: `POST /actions` on the management
//! API, the real state machine waiting on its task token, the emails as SES received them,
//! and the links on their own API, driven as an approver's browser would.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use maestro_localcloud::{LocalCloud, Stack};
use maestro_tests::approver::{Browser, Seen, email_to, emails, form_fields, link, sent_email, to};
use maestro_tests::{
    captured_logs, maestro_template, on_local_cloud, on_local_cloud_with, operator, signed_in,
};
use serde_json::{Value, json};

const PATIENCE: Duration = Duration::from_secs(20);

async fn submit(cloud: &LocalCloud, caller: Option<&str>, body: Value) -> (u16, Value) {
    let client = match caller {
        // Team payments owns the sample's prod/ and dev/ secrets (localcloud/sample-secret-owners.json).
        Some(caller) => signed_in(cloud, caller, &["payments"]).await,
        None => reqwest::Client::new(),
    };
    let response = client
        .post(format!("{}/actions", cloud.http_endpoint()))
        .body(body.to_string())
        .send()
        .await
        .expect("POST /actions answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON answer"))
}

/// The environment is no part of it: the secret's name decides it (`SecretOwners`).
fn rotate_now(secret_id: &str) -> Value {
    json!({
        "action": {"type": "SECRET_ROTATE_NOW", "parameters": {"secretId": secret_id}},
        "reason": "the password was pasted in a ticket",
    })
}

async fn get_json(cloud: &LocalCloud, path: &str, seen: &mut Seen) -> Value {
    let text = operator(cloud)
        .await
        .get(format!("{}{path}", cloud.http_endpoint()))
        .send()
        .await
        .expect("the management API answers")
        .text()
        .await
        .expect("a body");
    seen.keep(text.clone());
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path} gives JSON ({e}): {text}"))
}

fn execution_arn(stack: &Stack, action_id: &str) -> String {
    let machine = stack
        .output("ApprovalStateMachineArn")
        .expect("the template outputs the approval state machine");
    format!(
        "{}:{action_id}",
        machine.replacen(":stateMachine:", ":execution:", 1)
    )
}

/// The execution's status once it leaves RUNNING (or RUNNING if it does not within `patience`),
/// with its error.
async fn execution_end(
    cloud: &LocalCloud,
    stack: &Stack,
    action_id: &str,
    patience: Duration,
) -> (String, Option<String>) {
    let sfn = aws_sdk_sfn::Client::new(cloud.sdk_config());
    let deadline = Instant::now() + patience;
    loop {
        let described = sfn
            .describe_execution()
            .execution_arn(execution_arn(stack, action_id))
            .send()
            .await
            .expect("the execution exists");
        let status = described.status.as_str().to_owned();
        if status != "RUNNING" || Instant::now() > deadline {
            return (status, described.error);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The task token as the approvals table keeps it: what must never leave the server.
async fn stored_token(cloud: &LocalCloud, stack: &Stack, approval_id: &str) -> String {
    aws_sdk_dynamodb::Client::new(cloud.sdk_config())
        .get_item()
        .table_name(stack.output("ApprovalsTableName").expect("the table"))
        .key("pk", AttributeValue::S(format!("APPROVAL#{approval_id}")))
        .send()
        .await
        .expect("the approval can be read")
        .item
        .and_then(|item| item.get("taskToken").and_then(|t| t.as_s().ok()).cloned())
        .expect("the approval keeps its token")
}

/// The version staged AWSCURRENT. (moto's RotateSecret without a rotation function stages a
/// new version with no value, where AWS would refuse; the rotation itself comes with the
/// secret-rotation function, so only the staging is compared here.)
async fn current_version(cloud: &LocalCloud, secret_id: &str) -> String {
    aws_sdk_secretsmanager::Client::new(cloud.sdk_config())
        .describe_secret()
        .secret_id(secret_id)
        .send()
        .await
        .expect("the secret exists")
        .version_ids_to_stages
        .unwrap_or_default()
        .into_iter()
        .find(|(_, stages)| stages.iter().any(|s| s == "AWSCURRENT"))
        .map(|(version, _)| version)
        .expect("a current version")
}

async fn create_secret(cloud: &LocalCloud, name: &str) {
    aws_sdk_secretsmanager::Client::new(cloud.sdk_config())
        .create_secret()
        .name(name)
        .secret_string("s3cr3t-password")
        .send()
        .await
        .expect("the secret is created");
}

fn assert_no_token(token: &str, seen: &Seen, emails: &[Value]) {
    assert!(token.len() > 20, "a real token: {token}");
    for text in &seen.0 {
        assert!(
            !text.contains(token),
            "a page or API answer holds the token"
        );
    }
    for email in emails {
        assert!(
            !email.to_string().contains(token),
            "an email holds the token"
        );
    }
    let logs = captured_logs();
    assert!(
        logs.contains("approval opened and approvers mailed"),
        "the functions' logs are captured"
    );
    assert!(!logs.contains(token), "a log line holds the token");
}

#[test]
fn an_action_that_needs_two_approvals_runs_only_after_two_confirm_forms_are_posted() {
    on_local_cloud(Some(&maestro_template()), |cloud, stack| async move {
        let stack = stack.expect("the stack");
        let mut seen = Seen::default();
        create_secret(cloud, "prod/payments/db").await;
        let before = current_version(cloud, "prod/payments/db").await;

        // Dave asks; the policy wants 2 of alice, bob and carol.
        let (status, submitted) = submit(
            cloud,
            Some("dave@example.com"),
            rotate_now("prod/payments/db"),
        )
        .await;
        assert_eq!(status, 202, "{submitted}");
        assert_eq!(submitted["status"], "AWAITING_APPROVAL");
        let id = submitted["id"].as_str().expect("an id").to_owned();
        seen.keep(submitted.to_string());

        let asks = emails(cloud, "Approval needed", 3).await;
        let mut recipients: Vec<String> = asks.iter().map(to).collect();
        recipients.sort();
        assert_eq!(
            recipients,
            ["alice@example.com", "bob@example.com", "carol@example.com"]
        );
        for ask in &asks {
            assert!(ask["html"].as_str().unwrap().contains("prod/payments/db"));
            assert!(ask["text"].as_str().unwrap().contains("dave@example.com"));
            assert!(ask["text"].as_str().unwrap().contains("2 of 3"));
        }
        let bob_link = link(email_to(&asks, "bob@example.com"), "Approve");
        let carol_link = link(email_to(&asks, "carol@example.com"), "Approve");
        // The signing key rotates while the links are in flight: they keep working.
        let key_name = stack
            .output("ApprovalSigningKeyName")
            .expect("the key's name");
        let signing_key = current_version(cloud, key_name).await;
        aws_sdk_secretsmanager::Client::new(cloud.sdk_config())
            .put_secret_value()
            .secret_id(key_name)
            .secret_string("a-new-signing-key-of-at-least-thirty-two-bytes-0123456789")
            .send()
            .await
            .expect("the key rotates");
        assert_ne!(current_version(cloud, key_name).await, signing_key);

        // Scanners open links, twice, and with HEAD: they reach the sign-in page, and nothing
        // is decided.
        let scanner = Browser::anonymous();
        for _ in 0..2 {
            let (status, page) = scanner.open(&bob_link, &mut seen).await;
            assert_eq!(status, 200, "{page}");
            assert!(page.contains("<h1>Sign in</h1>"), "{page}");
            assert!(
                !page.contains("csrf"),
                "no confirm form before the sign-in: {page}"
            );
        }
        let head = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .head(&bob_link)
            .send()
            .await
            .expect("HEAD answers");
        assert_eq!(head.status(), 302, "HEAD is sent to sign in too");
        let (bob, carol) = (
            Browser::of(cloud, "bob@example.com").await,
            Browser::of(cloud, "carol@example.com").await,
        );
        let approval = get_json(cloud, &format!("/approvals/{id}"), &mut seen).await;
        assert!(
            approval["votes"]
                .as_object()
                .unwrap()
                .values()
                .all(|v| v["vote"] == "PENDING"),
            "opening links decides nothing: {approval}"
        );
        assert_eq!(
            execution_end(cloud, &stack, &id, Duration::from_millis(500))
                .await
                .0,
            "RUNNING"
        );

        // A link altered in any way is refused.
        let as_carol = bob_link.replace("approver=bob", "approver=carol");
        assert_eq!(carol.open(&as_carol, &mut seen).await.0, 403);
        let later = bob_link.replace("exp=", "exp=9");
        assert_eq!(bob.open(&later, &mut seen).await.0, 403);
        let (status, bob_page) = bob.open(&bob_link, &mut seen).await;
        assert_eq!(
            status, 200,
            "Bob signs in and sees the confirm page: {bob_page}"
        );
        let mut forged = form_fields(&bob_page, "");
        for (name, value) in &mut forged {
            if name == "csrf" {
                value.replace_range(0..2, "AA");
            }
        }
        assert_eq!(bob.post_form(&bob_link, &forged, &mut seen).await.0, 403);

        // Bob confirms: one of two.
        let bob_form = form_fields(&bob_page, "fine by me");
        let (status, page) = bob.post_form(&bob_link, &bob_form, &mut seen).await;
        assert_eq!(status, 200, "{page}");
        assert!(page.contains("1 of the 2"), "{page}");
        let (status, _) = bob.post_form(&bob_link, &bob_form, &mut seen).await;
        assert_eq!(status, 409, "a replayed POST counts once");
        assert_eq!(current_version(cloud, "prod/payments/db").await, before);

        // Carol's form, posted twice at once: one settles, one is refused.
        let (_, carol_page) = carol.open(&carol_link, &mut seen).await;
        let carol_form = form_fields(&carol_page, "");
        let (mut one, mut other) = (Seen::default(), Seen::default());
        let (first, second) = tokio::join!(
            carol.post_form(&carol_link, &carol_form, &mut one),
            carol.post_form(&carol_link, &carol_form, &mut other),
        );
        seen.keep(first.1.clone());
        seen.keep(second.1.clone());
        let mut statuses = [first.0, second.0];
        statuses.sort();
        assert_eq!(statuses, [200, 409], "{} / {}", first.1, second.1);
        let approved = [&first.1, &second.1]
            .iter()
            .filter(|p| p.contains("<h1 style=\"font-size:22px\">Approved</h1>"))
            .count();
        assert_eq!(approved, 1, "exactly one answer resumed the workflow");

        let (status, error) = execution_end(cloud, &stack, &id, PATIENCE).await;
        assert_eq!(status, "SUCCEEDED", "{error:?}");
        assert_ne!(
            current_version(cloud, "prod/payments/db").await,
            before,
            "the approved action ran"
        );
        let action = get_json(cloud, &format!("/actions/{id}"), &mut seen).await;
        assert_eq!(action["status"], "SUCCEEDED", "{action}");
        assert_eq!(action["approval"]["status"], "APPROVED");
        let bob_vote = &action["approval"]["votes"]["bob@example.com"];
        assert_eq!(bob_vote["vote"], "APPROVE");
        assert_eq!(bob_vote["comment"], "fine by me");
        assert_eq!(bob_vote["userAgent"], "Mozilla/5.0 (e2e approver)");
        assert_eq!(bob_vote["sourceIp"], "127.0.0.1");
        assert!(bob_vote["decidedAt"].is_string());
        assert!(
            bob_vote["signedInAs"]
                .as_str()
                .is_some_and(|sub| !sub.is_empty()),
            "the vote records whom the identity provider signed in: {bob_vote}"
        );
        let done = emails(cloud, ": done", 1).await;
        assert_eq!(to(&done[0]), "dave@example.com");

        // Late clicks find it decided, whoever clicks.
        assert_eq!(bob.open(&bob_link, &mut seen).await.0, 409);
        let alice_link = link(email_to(&asks, "alice@example.com"), "Approve");
        assert_eq!(scanner.open(&alice_link, &mut seen).await.0, 409);
        let approved = get_json(cloud, "/approvals?status=approved", &mut seen).await;
        assert_eq!(approved["approvals"][0]["id"], id.as_str());
        let token = stored_token(cloud, &stack, &id).await;
        for ask in &asks {
            seen.keep(link(ask, "Approve"));
            seen.keep(link(ask, "Reject"));
        }
        let mut everything = asks.clone();
        everything.extend(done);
        assert_no_token(&token, &seen, &everything);
    });
}

#[test]
fn a_rejection_or_no_decision_ends_the_workflow_with_a_typed_failure_and_tells_the_requester() {
    on_local_cloud(Some(&maestro_template()), |cloud, stack| async move {
        let stack = stack.expect("the stack");
        let mut seen = Seen::default();
        // The policy gives webhooks one minute: this one is left to expire while the rest runs.
        let (status, silent) = submit(
            cloud,
            Some("dave@example.com"),
            json!({
                "action": {"type": "WEBHOOK", "parameters": {
                    "url": "https://ci.example.com/jobs/deploy", "method": "POST"}},
                "reason": "deploy the hotfix",
            }),
        )
        .await;
        assert_eq!(status, 202, "{silent}");
        let silent_id = silent["id"].as_str().unwrap().to_owned();
        let started = Instant::now();

        create_secret(cloud, "prod/payments/db").await;
        let before = current_version(cloud, "prod/payments/db").await;
        let (status, rejected) = submit(
            cloud,
            Some("dave@example.com"),
            rotate_now("prod/payments/db"),
        )
        .await;
        assert_eq!(status, 202, "{rejected}");
        let id = rejected["id"].as_str().unwrap().to_owned();
        let asks = emails(cloud, "Rotate a secret now", 3).await;
        let bob_reject = link(email_to(&asks, "bob@example.com"), "Reject");
        let bob = Browser::of(cloud, "bob@example.com").await;
        let (_, page) = bob.open(&bob_reject, &mut seen).await;
        assert!(page.contains(">Reject</button>"), "{page}");
        let (status, page) = bob
            .post_form(&bob_reject, &form_fields(&page, "not now"), &mut seen)
            .await;
        assert_eq!(status, 200, "{page}");

        let (status, error) = execution_end(cloud, &stack, &id, PATIENCE).await;
        assert_eq!(
            (status.as_str(), error.as_deref()),
            ("FAILED", Some("Approval.Rejected"))
        );
        assert_eq!(current_version(cloud, "prod/payments/db").await, before);
        let action = get_json(cloud, &format!("/actions/{id}"), &mut seen).await;
        assert_eq!(action["status"], "REJECTED", "{action}");
        assert_eq!(action["outcome"]["status"], "REJECTED");
        assert_eq!(
            action["approval"]["votes"]["bob@example.com"]["comment"],
            "not now"
        );
        let told = emails(cloud, ": rejected", 1).await;
        assert_eq!(to(&told[0]), "dave@example.com");
        // One reject ends it: another approver's link now finds it decided.
        let carol_approve = link(email_to(&asks, "carol@example.com"), "Approve");
        let (status, page) = Browser::anonymous().open(&carol_approve, &mut seen).await;
        assert_eq!(status, 409);
        assert!(page.contains("already rejected"), "{page}");

        // The webhook's approval expires unanswered.
        let patience = Duration::from_secs(90).saturating_sub(started.elapsed());
        let (status, error) = execution_end(cloud, &stack, &silent_id, patience).await;
        assert_eq!(
            (status.as_str(), error.as_deref()),
            ("FAILED", Some("Approval.TimedOut"))
        );
        let action = get_json(cloud, &format!("/actions/{silent_id}"), &mut seen).await;
        assert_eq!(action["status"], "TIMED_OUT", "{action}");
        assert_eq!(action["approval"]["status"], "TIMED_OUT");
        let expired = emails(cloud, ": expired", 1).await;
        assert_eq!(to(&expired[0]), "dave@example.com");
        let hook_asks = emails(cloud, "Approval needed: Call an external endpoint", 2).await;
        let late = link(email_to(&hook_asks, "alice@example.com"), "Approve");
        let (status, page) = Browser::anonymous().open(&late, &mut seen).await;
        assert_eq!(status, 410, "the link expired with its approval: {page}");
        let timed_out = get_json(cloud, "/approvals?status=timed_out", &mut seen).await;
        assert_eq!(timed_out["approvals"][0]["id"], silent_id.as_str());
    });
}

#[test]
fn an_action_without_approval_runs_at_once_and_is_recorded() {
    on_local_cloud(Some(&maestro_template()), |cloud, stack| async move {
        let stack = stack.expect("the stack");
        let mut seen = Seen::default();
        create_secret(cloud, "dev/payments/db").await;
        let before = current_version(cloud, "dev/payments/db").await;
        let (status, submitted) = submit(
            cloud,
            Some("dave@example.com"),
            rotate_now("dev/payments/db"),
        )
        .await;
        assert_eq!(status, 202, "{submitted}");
        assert_eq!(submitted["status"], "RUNNING");
        let id = submitted["id"].as_str().unwrap().to_owned();
        let (status, error) = execution_end(cloud, &stack, &id, PATIENCE).await;
        assert_eq!(status, "SUCCEEDED", "{error:?}");
        assert_ne!(current_version(cloud, "dev/payments/db").await, before);
        let action = get_json(cloud, &format!("/actions/{id}"), &mut seen).await;
        assert_eq!(action["status"], "SUCCEEDED", "{action}");
        assert_eq!(action["approvalRequired"], false);
        assert!(action["approval"].is_null());
        assert!(action["outcome"]["result"]["versionId"].is_string());
        let told = emails(cloud, ": done", 1).await;
        assert_eq!(to(&told[0]), "dave@example.com");
        assert!(
            sent_email(cloud)
                .await
                .iter()
                .all(|m| !m["subject"].as_str().unwrap().contains("Approval needed")),
            "nobody is asked"
        );
    });
}

#[test]
fn an_action_that_fails_ends_the_workflow_as_failed_with_the_reason_and_tells_the_requester() {
    on_local_cloud(Some(&maestro_template()), |cloud, stack| async move {
        let stack = stack.expect("the stack");
        let mut seen = Seen::default();
        // The secret exists when it is asked for, but Secrets Manager refuses to rotate it
        // once it is scheduled for deletion.
        create_secret(cloud, "dev/payments/retired").await;
        aws_sdk_secretsmanager::Client::new(cloud.sdk_config())
            .delete_secret()
            .secret_id("dev/payments/retired")
            .recovery_window_in_days(7)
            .send()
            .await
            .expect("the secret is scheduled for deletion");
        let (status, submitted) = submit(
            cloud,
            Some("dave@example.com"),
            rotate_now("dev/payments/retired"),
        )
        .await;
        assert_eq!(status, 202, "{submitted}");
        let id = submitted["id"].as_str().unwrap().to_owned();
        let (status, error) = execution_end(cloud, &stack, &id, PATIENCE).await;
        assert_eq!(
            (status.as_str(), error.as_deref()),
            ("FAILED", Some("Action.Failed"))
        );
        let action = get_json(cloud, &format!("/actions/{id}"), &mut seen).await;
        assert_eq!(action["status"], "FAILED", "{action}");
        assert_eq!(action["outcome"]["error"], "Rejected", "{action}");
        assert!(
            action["outcome"]["cause"]
                .as_str()
                .unwrap_or_default()
                .contains("marked deleted"),
            "{action}"
        );
        let told = emails(cloud, ": failed", 1).await;
        assert_eq!(to(&told[0]), "dave@example.com");
        assert!(told[0]["text"].as_str().unwrap().contains("Rejected"));
    });
}

#[test]
fn malformed_or_anonymous_submissions_are_refused_and_start_nothing() {
    on_local_cloud(Some(&maestro_template()), |cloud, stack| async move {
        let stack = stack.expect("the stack");
        let cases: Vec<(Option<&str>, Value, u16, &str)> = vec![
            (None, rotate_now("prod/db"), 401, "Unauthorized"),
            (
                Some("dave@example.com"),
                json!({"action": 1}),
                400,
                "is not {\"action\", \"reason\"}",
            ),
            // The target decides the environment; a caller who names one is told so.
            (
                Some("dave@example.com"),
                json!({"action": {"type": "SECRET_ROTATE_NOW", "parameters": {"secretId": "dev/db"}},
                       "environment": "DEVELOPMENT", "reason": "x"}),
                400,
                "environment",
            ),
            (
                Some("dave@example.com"),
                json!({"action": {"type": "DROP_DATABASE", "parameters": {}},
                       "reason": "x"}),
                400,
                "unknown variant",
            ),
            (
                Some("dave@example.com"),
                json!({"action": {"type": "WEBHOOK", "parameters": {"url": "http://x.example.com", "method": "POST"}},
                       "reason": "x"}),
                400,
                "parameters.url",
            ),
            (
                Some("dave@example.com"),
                rotate_now("prod/db")
                    .as_object()
                    .map(|o| {
                        let mut o = o.clone();
                        o.insert("reason".into(), json!(""));
                        Value::Object(o)
                    })
                    .unwrap(),
                400,
                "reason",
            ),
        ];
        for (caller, body, want, says) in cases {
            let (status, answer) = submit(cloud, caller, body.clone()).await;
            assert_eq!(status, want, "{body} -> {answer}");
            let message = answer["message"].as_str().unwrap_or_default();
            assert!(message.contains(says), "{body} -> {message}");
        }
        let executions = aws_sdk_sfn::Client::new(cloud.sdk_config())
            .list_executions()
            .state_machine_arn(stack.output("ApprovalStateMachineArn").unwrap())
            .send()
            .await
            .expect("executions can be listed");
        assert!(executions.executions.is_empty(), "nothing started");
        let records = aws_sdk_dynamodb::Client::new(cloud.sdk_config())
            .scan()
            .table_name(stack.output("ApprovalsTableName").unwrap())
            .send()
            .await
            .expect("the table can be scanned");
        assert_eq!(records.count, 0, "nothing recorded");
    });
}

#[test]
fn with_link_only_sign_in_whoever_holds_the_link_decides_and_the_vote_says_so() {
    on_local_cloud_with(
        Some(&maestro_template()),
        &[("ApproverSignIn", "LINK_ONLY")],
        |cloud, _| async move {
            create_secret(cloud, "prod/payments/db").await;
            let (status, submitted) = submit(
                cloud,
                Some("alice@example.com"),
                rotate_now("prod/payments/db"),
            )
            .await;
            assert_eq!(status, 202, "{submitted}");
            let id = submitted["id"].as_str().unwrap().to_owned();
            let asks = emails(cloud, "Approval needed", 2).await;
            let bob_link = link(email_to(&asks, "bob@example.com"), "Approve");
            let mut seen = Seen::default();
            // No sign-in: the link opens its confirm page for anyone who holds it.
            let holder = Browser::anonymous();
            let (status, page) = holder.open(&bob_link, &mut seen).await;
            assert_eq!(status, 200, "{page}");
            assert!(page.contains("csrf"), "the confirm form: {page}");
            let (status, page) = holder
                .post_form(&bob_link, &form_fields(&page, "by link"), &mut seen)
                .await;
            assert_eq!(status, 200, "{page}");
            let approval = get_json(cloud, &format!("/approvals/{id}"), &mut seen).await;
            let vote = &approval["votes"]["bob@example.com"];
            assert_eq!(vote["vote"], "APPROVE", "{approval}");
            assert!(vote.get("signedInAs").is_none(), "no one signed in: {vote}");
        },
    );
}

/// Where the browser test leaves its screenshots, to look at.
fn screenshot_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("approval-pages")
}

#[test]
fn the_email_and_the_confirm_page_work_in_a_real_browser() {
    on_local_cloud(Some(&maestro_template()), |cloud, _| async move {
        create_secret(cloud, "prod/payments/db").await;
        let (status, submitted) = submit(
            cloud,
            Some("alice@example.com"),
            rotate_now("prod/payments/db"),
        )
        .await;
        assert_eq!(status, 202, "{submitted}");
        let id = submitted["id"].as_str().unwrap().to_owned();
        // Alice asked: she approves others' actions, but gets no say on her own.
        let asks = emails(cloud, "Approval needed", 2).await;
        assert!(asks.iter().all(|ask| to(ask) != "alice@example.com"));
        let shots = screenshot_dir();
        std::fs::create_dir_all(&shots).expect("a screenshot folder");
        let email_file = shots.join("approval-email.html");
        std::fs::write(
            &email_file,
            email_to(&asks, "bob@example.com")["html"].as_str().unwrap(),
        )
        .expect("the email is written out");

        // Both are users of the stack's identity provider (the local user pool).
        for person in ["bob@example.com", "carol@example.com"] {
            cloud.bearer(person, &[]).await.expect("a user of the pool");
        }
        let script =
            maestro_localcloud::moto::repository_root().join("tests/browser/approval-pages.mjs");
        let run = tokio::process::Command::new("node")
            .arg(&script)
            .arg(&email_file)
            .arg(&shots)
            .arg("looks right")
            .arg(maestro_localcloud::identity_provider::LOCAL_PASSWORD)
            .arg("carol@example.com")
            .output()
            .await
            .expect("node runs (make test installs the Node tools)");
        assert!(
            run.status.success(),
            "the browser run failed (it needs Chromium: /usr/bin/chromium or MAESTRO_CHROMIUM; make test installs it):\n{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let seen: Value = serde_json::from_slice(&run.stdout).expect("the script's JSON");
        assert_eq!(seen["email"]["approveVisible"], true, "{seen}");
        assert_eq!(seen["email"]["rejectVisible"], true, "{seen}");
        assert_eq!(seen["signedIn"]["title"], "Sign in", "{seen}");
        assert_eq!(
            seen["signedIn"]["username"], "bob@example.com",
            "the link's approver is asked to sign in: {seen}"
        );
        assert_eq!(seen["confirm"]["buttonVisible"], true, "{seen}");
        assert_eq!(seen["confirm"]["buttonText"], "Approve");
        assert!(
            seen["confirm"]["title"]
                .as_str()
                .unwrap()
                .starts_with("Approve: Rotate a secret now"),
            "{seen}"
        );
        assert_eq!(
            seen["decision"]["title"], "Your approval is recorded",
            "{seen}"
        );
        // Carol, signed in as herself, opens Bob's link: refused, with no form.
        assert_eq!(
            seen["other"]["title"], "You cannot decide this request",
            "{seen}"
        );
        assert!(
            seen["other"]["text"].as_str().unwrap_or_default().contains(
                "You signed in as carol@example.com, but this link is for bob@example.com"
            ),
            "{seen}"
        );
        assert_eq!(seen["other"]["hasForm"], false, "{seen}");
        for shot in [
            "approval-email.png",
            "sign-in-page.png",
            "confirm-page.png",
            "decision-page.png",
            "other-person.png",
        ] {
            let size = std::fs::metadata(shots.join(shot)).map_or(0, |m| m.len());
            assert!(size > 2_000, "{shot} is a real screenshot ({size} bytes)");
        }
        // The button press, not the page load, decided: the vote carries the browser's comment.
        let approval = get_json(cloud, &format!("/approvals/{id}"), &mut Seen::default()).await;
        assert!(approval["votes"].get("alice@example.com").is_none());
        assert_eq!(approval["votes"]["carol@example.com"]["vote"], "PENDING");
        let vote = &approval["votes"]["bob@example.com"];
        assert_eq!(vote["vote"], "APPROVE", "{approval}");
        assert_eq!(vote["comment"], "looks right");
        assert!(
            vote["userAgent"]
                .as_str()
                .unwrap_or_default()
                .contains("HeadlessChrome"),
            "{vote}"
        );
    });
}
