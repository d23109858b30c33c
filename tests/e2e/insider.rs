//! The approval boundary tried by a colleague who wants round it, through the template's
//! wiring: each attempt the security review found is refused with an answer that says why,
//! and writes nothing (issue 13, findings 1, 2, 3 and 4; 6 is in iam.rs, 7 in
//! secret_rotation.rs).

use maestro_localcloud::{LocalCloud, Stack, seed};
use maestro_tests::approver::{Browser, Seen, email_to, emails, form_fields, link};
use maestro_tests::{
    bearer_client, call_as, maestro_template, on_local_cloud, operator, signed_in,
};
use serde_json::{Value, json};

/// Team payments owns the `prod/` secrets (localcloud/sample-secret-owners.json).
const PAYMENTS: &[&str] = &["payments"];

/// A client whose token carries `email` unverified.
async fn unverified(cloud: &LocalCloud, email: &str, teams: &[&str]) -> reqwest::Client {
    let bearer = cloud
        .unverified_bearer(email, teams)
        .await
        .unwrap_or_else(|e| panic!("{email} signs in: {e}"));
    bearer_client(&bearer)
}

fn message(answer: &Value) -> &str {
    answer["message"].as_str().unwrap_or_default()
}

/// The actions recorded in the approvals table (`ACTION#<id>` items).
async fn recorded_actions(cloud: &LocalCloud, stack: &Stack) -> usize {
    aws_sdk_dynamodb::Client::new(cloud.sdk_config())
        .scan()
        .table_name(stack.output("ApprovalsTableName").expect("the table"))
        .send()
        .await
        .expect("the table can be scanned")
        .items
        .unwrap_or_default()
        .iter()
        .filter(|item| {
            item.get("pk")
                .and_then(|pk| pk.as_s().ok())
                .is_some_and(|pk| pk.starts_with("ACTION#"))
        })
        .count()
}

/// A production secret that someone with `TagResource` labelled development.
async fn relabelled_production_secret(cloud: &LocalCloud, name: &str) {
    aws_sdk_secretsmanager::Client::new(cloud.sdk_config())
        .create_secret()
        .name(name)
        .secret_string("s3cr3t-password")
        .tags(
            aws_sdk_secretsmanager::types::Tag::builder()
                .key("maestro:environment")
                .value("development")
                .build(),
        )
        .send()
        .await
        .expect("the secret is created");
}

/// `POST /actions` as `client`: rotate prod/payments/db now.
async fn ask_rotation(client: &reqwest::Client, cloud: &LocalCloud) -> (u16, Value) {
    call_as(
        client,
        cloud,
        "POST",
        "/actions",
        Some(rotate_now("prod/payments/db")),
    )
    .await
}

fn rotate_now(secret_id: &str) -> Value {
    json!({
        "action": {"type": "SECRET_ROTATE_NOW", "parameters": {"secretId": secret_id}},
        "reason": "the password was pasted in a ticket",
    })
}

#[test]
fn an_insider_cannot_choose_the_environment_nor_delete_a_connection_without_admin() {
    on_local_cloud(Some(&maestro_template()), |cloud, stack| async move {
        let stack = stack.expect("the stack");
        let dave = signed_in(cloud, "dave@example.com", PAYMENTS).await;
        let erin = signed_in(cloud, "erin@example.com", &["search"]).await;
        relabelled_production_secret(cloud, "prod/payments/db").await;

        // Naming the environment is refused outright, whatever it names.
        let mut chosen = rotate_now("prod/payments/db");
        chosen["environment"] = json!("DEVELOPMENT");
        let (status, answer) = call_as(&dave, cloud, "POST", "/actions", Some(chosen)).await;
        assert_eq!(status, 400, "{answer}");
        assert!(message(&answer).contains("environment"), "{answer}");

        // Nor does the secret's tag count: its name makes it production, so two approvers
        // must agree, on both routes.
        let (status, asked) = ask_rotation(&dave, cloud).await;
        assert_eq!(status, 202, "{asked}");
        assert_eq!(asked["environment"], "PRODUCTION", "{asked}");
        assert_eq!(asked["status"], "AWAITING_APPROVAL", "{asked}");
        let (status, asked) = call_as(
            &dave,
            cloud,
            "POST",
            "/secrets/prod%2Fpayments%2Fdb/rotate",
            Some(json!({"reason": "again"})),
        )
        .await;
        assert_eq!(status, 202, "{asked}");
        assert_eq!(asked["status"], "AWAITING_APPROVAL", "{asked}");

        // Another team's secret does not exist for it, neither to rotate nor in the status.
        let (status, answer) = ask_rotation(&erin, cloud).await;
        assert_eq!(status, 404, "{answer}");
        let (status, listed) = call_as(&erin, cloud, "GET", "/secrets/rotation-status", None).await;
        assert_eq!(status, 200, "{listed}");
        assert_eq!(listed["secrets"], json!([]), "{listed}");
        let (_, listed) = call_as(&dave, cloud, "GET", "/secrets/rotation-status", None).await;
        assert_eq!(listed["secrets"][0]["name"], "prod/payments/db", "{listed}");

        // Payments may read its production connection, not delete it.
        let ops = operator(cloud).await;
        let (status, created) = call_as(
            &ops,
            cloud,
            "POST",
            "/connections",
            Some(json!({
                "id": "payments-production", "name": "Payments production",
                "accountId": seed::SAMPLE_ACCOUNTS[0], "regions": [seed::SAMPLE_REGIONS[0]],
                "access": {"payments": "read"},
            })),
        )
        .await;
        assert_eq!(status, 201, "{created}");
        let delete = json!({
            "action": {"type": "CONNECTION_DELETE", "parameters": {"connectionId": "payments-production"}},
            "reason": "tidy up",
        });
        let (status, answer) =
            call_as(&dave, cloud, "POST", "/actions", Some(delete.clone())).await;
        assert_eq!(status, 403, "{answer}");
        assert!(message(&answer).contains("needs admin"), "{answer}");
        let (status, answer) = call_as(&erin, cloud, "POST", "/actions", Some(delete)).await;
        assert_eq!(status, 404, "{answer}");
        let (status, _) =
            call_as(&ops, cloud, "GET", "/connections/payments-production", None).await;
        assert_eq!(status, 200, "the connection is still there");

        // Only the two asks that were allowed are recorded.
        assert_eq!(recorded_actions(cloud, &stack).await, 2);
    });
}

#[test]
fn holding_an_approvers_link_or_their_form_does_not_decide_in_their_name() {
    on_local_cloud(Some(&maestro_template()), |cloud, _| async move {
        relabelled_production_secret(cloud, "prod/payments/db").await;
        let alice = signed_in(cloud, "alice@example.com", PAYMENTS).await;
        let (status, asked) = ask_rotation(&alice, cloud).await;
        assert_eq!(status, 202, "{asked}");
        let id = asked["id"].as_str().expect("an id").to_owned();
        // Two of Bob and Carol must agree; Alice asked, so she has no say.
        let asks = emails(cloud, "Approval needed", 2).await;
        let bob_link = link(email_to(&asks, "bob@example.com"), "Approve");
        let carol_link = link(email_to(&asks, "carol@example.com"), "Approve");
        let mut seen = Seen::default();

        // Bob's email reaches Alice (forwarded, a shared mailbox, a ticket import): she signs
        // in as herself, and the link is not hers.
        let alices = Browser::of(cloud, "alice@example.com").await;
        let (status, page) = alices.open(&bob_link, &mut seen).await;
        assert_eq!(status, 403, "{page}");
        assert!(
            page.contains(
                "You signed in as alice@example.com, but this link is for bob@example.com"
            ),
            "{page}"
        );
        assert!(!page.contains("csrf"), "no confirm form: {page}");

        // Bob's confirm page itself leaks (a saved page): its form, posted without Bob's
        // sign-in, or with Carol's sign-in for the same approval, decides nothing.
        let bobs = Browser::of(cloud, "bob@example.com").await;
        let (status, bob_page) = bobs.open(&bob_link, &mut seen).await;
        assert_eq!(status, 200, "{bob_page}");
        let bob_form = form_fields(&bob_page, "as bob");
        let (status, page) = Browser::anonymous()
            .post_form(&bob_link, &bob_form, &mut seen)
            .await;
        assert_eq!(status, 401, "{page}");
        assert!(page.contains("sign in as its approver"), "{page}");
        let carols = Browser::of(cloud, "carol@example.com").await;
        assert_eq!(carols.open(&carol_link, &mut seen).await.0, 200);
        let (status, page) = carols.post_form(&bob_link, &bob_form, &mut seen).await;
        assert_eq!(status, 401, "{page}");

        let ops = operator(cloud).await;
        let (_, approval) = call_as(&ops, cloud, "GET", &format!("/approvals/{id}"), None).await;
        assert_eq!(approval["status"], "PENDING", "{approval}");
        for approver in ["bob@example.com", "carol@example.com"] {
            assert_eq!(approval["votes"][approver]["vote"], "PENDING", "{approval}");
        }

        // Nor may another site post it from Bob's own browser, session and all (a sibling
        // subdomain of a custom domain is "same-site" to SameSite cookies).
        for site in ["same-site", "cross-site"] {
            let (status, page) = bobs
                .post_form_from(site, &bob_link, &bob_form, &mut seen)
                .await;
            assert_eq!(status, 403, "{site}: {page}");
        }

        // Bob, signed in, decides with the same form.
        let (status, page) = bobs.post_form(&bob_link, &bob_form, &mut seen).await;
        assert_eq!(status, 200, "{page}");
        assert!(page.contains("1 of the 2"), "{page}");
    });
}

#[test]
fn routes_answer_only_the_parties_and_a_group_name_with_a_space_grants_nothing() {
    on_local_cloud(Some(&maestro_template()), |cloud, _| async move {
        let dave = signed_in(cloud, "dave@example.com", PAYMENTS).await;
        // API Gateway flattens `["x maestro-operators"]` to `[x maestro-operators]`.
        let mallory = signed_in(cloud, "mallory@example.com", &["x maestro-operators"]).await;
        let ops = operator(cloud).await;
        relabelled_production_secret(cloud, "prod/payments/db").await;
        let (status, asked) = ask_rotation(&dave, cloud).await;
        assert_eq!(status, 202, "{asked}");
        let id = asked["id"].as_str().expect("an id").to_owned();

        // The SSO sync is the operators' alone.
        for (method, path, body) in [
            ("GET", "/sso/plan", None),
            (
                "GET",
                "/sso/explain?group=g&account=a&permissionSet=p",
                None,
            ),
            ("POST", "/sso/reconcile", Some(json!({"dryRun": false}))),
        ] {
            let (status, answer) = call_as(&mallory, cloud, method, path, body).await;
            assert_eq!(status, 403, "{method} {path}: {answer}");
            assert!(message(&answer).contains("operators"), "{answer}");
        }

        // The workflow opens the approval a moment after the answer.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while call_as(&ops, cloud, "GET", &format!("/approvals/{id}"), None)
            .await
            .0
            != 200
        {
            assert!(std::time::Instant::now() < deadline, "the approval opens");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }

        // Actions and approvals answer their requester, their approvers and the operators.
        for path in [format!("/actions/{id}"), format!("/approvals/{id}")] {
            let (status, answer) = call_as(&mallory, cloud, "GET", &path, None).await;
            assert_eq!(status, 404, "{path}: {answer}");
            let (status, answer) = call_as(&dave, cloud, "GET", &path, None).await;
            assert_eq!(status, 200, "{path}: {answer}");
            let (status, answer) = call_as(&ops, cloud, "GET", &path, None).await;
            assert_eq!(status, 200, "{path}: {answer}");
        }
        let (status, listed) = call_as(&mallory, cloud, "GET", "/approvals", None).await;
        assert_eq!(status, 200, "{listed}");
        assert_eq!(listed["approvals"], json!([]), "{listed}");

        // An address the identity provider never verified is no one's: not an approver's
        // (bob may decide this one), and not a requester's.
        let claimed = unverified(cloud, "bob@example.com", PAYMENTS).await;
        for path in [format!("/actions/{id}"), format!("/approvals/{id}")] {
            let (status, answer) = call_as(&claimed, cloud, "GET", &path, None).await;
            assert_eq!(status, 404, "{path}: {answer}");
        }
        let (status, answer) = ask_rotation(&claimed, cloud).await;
        assert_eq!(status, 403, "{answer}");
        assert!(message(&answer).contains("verified"), "{answer}");
        let (_, listed) = call_as(&ops, cloud, "GET", "/approvals", None).await;
        assert_eq!(listed["approvals"][0]["id"], id.as_str(), "{listed}");
        let (status, listed) =
            call_as(&mallory, cloud, "GET", "/secrets/rotation-status", None).await;
        assert_eq!(status, 200, "{listed}");
        assert_eq!(listed["secrets"], json!([]), "{listed}");
    });
}

/// Held deletes are asked for by the operators, of a run that held them (that a re-ask of
/// what the sync asked already is refused is in `sso_sync`).
#[test]
fn asking_for_unknown_held_deletes_is_refused_and_only_operators_may_ask() {
    on_local_cloud(Some(&maestro_template()), |cloud, stack| async move {
        let stack = stack.expect("the stack");
        let ask = json!({
            "action": {"type": "SSO_APPLY_DELETES", "parameters": {"runId": "run-that-never-was"}},
            "reason": "apply them anyway",
        });
        let dave = signed_in(cloud, "dave@example.com", PAYMENTS).await;
        let (status, answer) = call_as(&dave, cloud, "POST", "/actions", Some(ask.clone())).await;
        assert_eq!(status, 403, "{answer}");
        let (status, answer) =
            call_as(&operator(cloud).await, cloud, "POST", "/actions", Some(ask)).await;
        assert_eq!(status, 404, "{answer}");
        assert!(message(&answer).contains("run-that-never-was"), "{answer}");
        assert_eq!(recorded_actions(cloud, &stack).await, 0);
    });
}
