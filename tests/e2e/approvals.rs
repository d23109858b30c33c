//! The approval store on the emulator: whatever the races, one vote per approver and exactly
//! one answer to the waiting workflow.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Duration, Utc};
use maestro_aws::approvals::DynamoApprovals;
use maestro_domain::approvals::action::Action;
use maestro_domain::approvals::link::{
    Decision, LinkClaims, LinkKeys, LinkSecret, SigningKey, form_token, sign_link,
};
use maestro_domain::approvals::policy::Approval;
use maestro_domain::approvals::request::{
    ApprovalRequest, ApprovalStore, Ballot, Decided, Proof, Status, TaskToken, VoteRecord, decide,
};
use maestro_domain::approvals::tally::Vote;
use maestro_domain::sso::model::Environment;
use maestro_tests::{fixture_template, on_local_cloud};

const APPROVERS: [&str; 3] = ["alice@example.com", "bob@example.com", "carol@example.com"];

fn keys() -> LinkKeys {
    LinkKeys {
        current: SigningKey::new(vec![5; 32]).unwrap(),
        previous: None,
    }
}

fn secret() -> LinkSecret {
    LinkSecret::new(vec![8; 32]).unwrap()
}

fn request(quorum: usize) -> ApprovalRequest {
    let now = Utc::now();
    let pending = VoteRecord::pending();
    ApprovalRequest {
        id: "apr-race".into(),
        action: Action::ConnectionDelete {
            connection_id: "conn-1".into(),
        },
        environment: Environment::Production,
        requester: "dave@example.com".into(),
        reason: "account closed".into(),
        approval: Approval {
            approvers: APPROVERS.iter().map(|a| (*a).to_owned()).collect(),
            quorum,
            timeout_minutes: 60,
            requester_may_approve: false,
        },
        created_at: now,
        expires_at: now + Duration::hours(1),
        status: Status::Pending,
        votes: APPROVERS
            .iter()
            .map(|a| ((*a).to_owned(), pending.clone()))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn ballot(approver: &str) -> Ballot {
    let claims = LinkClaims {
        approval_id: "apr-race".into(),
        decision: Decision::Approve,
        approver: approver.into(),
        expires_at: Utc::now() + Duration::hours(1),
    };
    Ballot {
        signature: sign_link(&keys().for_approval(&secret()), &claims),
        form_token: form_token(&keys().for_approval(&secret()), "apr-race", approver),
        claims,
        comment: None,
        source_ip: Some("198.51.100.7".into()),
        user_agent: Some("test".into()),
        proof: Proof::LinkOnly,
    }
}

#[test]
fn concurrent_and_replayed_decisions_answer_the_workflow_exactly_once() {
    on_local_cloud(
        Some(&fixture_template("approvals.yaml")),
        |cloud, stack| async move {
            let table = stack
                .unwrap()
                .reference("ApprovalsTable")
                .unwrap()
                .to_owned();
            let store = Arc::new(DynamoApprovals::new(cloud.sdk_config(), table));
            store
                .create(
                    &request(1),
                    &TaskToken::new("token-of-the-waiting-execution".into()),
                    &secret(),
                )
                .await
                .expect("the request is stored");

            // Bob's POST three times over (a replay and a double click), and Carol's at once.
            let posts: Vec<_> = [
                "bob@example.com",
                "bob@example.com",
                "bob@example.com",
                "carol@example.com",
                "carol@example.com",
            ]
            .into_iter()
            .map(|approver| {
                let store = store.clone();
                tokio::spawn(async move {
                    decide(store.as_ref(), &keys(), &ballot(approver), Utc::now()).await
                })
            })
            .collect();
            let mut settled = Vec::new();
            for post in posts {
                if let Ok(Decided::Settled { task_token, .. }) = post.await.unwrap() {
                    settled.push(task_token);
                }
            }
            assert_eq!(settled.len(), 1, "exactly one answer to the workflow");
            assert_eq!(settled[0].reveal(), "token-of-the-waiting-execution");

            let after = store.get("apr-race").await.unwrap().unwrap();
            assert_eq!(after.status, Status::Approved);
            let decided = after
                .votes
                .values()
                .filter(|v| v.vote != Vote::Pending)
                .count();
            assert!(
                (1..=2).contains(&decided),
                "each approver voted once at most: {decided}"
            );
            assert_eq!(after.votes["alice@example.com"].vote, Vote::Pending);

            // Undoing a settle the workflow did not hear moves only what is still settled so.
            store
                .resettle("apr-race", Status::Rejected, Status::Pending)
                .await
                .expect("a lost condition is no error");
            let unchanged = store.get("apr-race").await.unwrap().unwrap();
            assert_eq!(unchanged.status, Status::Approved);
            store
                .resettle("apr-race", Status::Approved, Status::Pending)
                .await
                .expect("the settle is undone");
            let reopened = store.get("apr-race").await.unwrap().unwrap();
            assert_eq!(reopened.status, Status::Pending);
        },
    );
}
