//! The operators' `maestro` command against the local cloud, as against any AWS endpoint.

use clap::Parser;
use maestro_cli::{Cli, run};
use maestro_domain::sso::plan::Plan;
use maestro_localcloud::seed;
use maestro_tests::on_local_cloud;

async fn maestro(cloud: &maestro_localcloud::LocalCloud, args: &[&str]) -> String {
    let cli = Cli::try_parse_from(std::iter::once("maestro").chain(args.iter().copied()))
        .expect("the arguments parse");
    run(cli, cloud.sdk_config())
        .await
        .expect("the command succeeds")
}

#[test]
fn sso_plan_prints_the_changes_without_making_them() {
    on_local_cloud(None, |cloud, _| async move {
        seed::sample_organisation(cloud.sdk_config()).await.unwrap();
        let table = maestro(cloud, &["sso", "plan"]).await;
        assert!(
            table.starts_with("13 desired, 0 unchanged, 13 to create"),
            "{table}"
        );
        assert!(table.contains("sandbox-alice"), "names, not ids: {table}");

        let plan: Plan = serde_json::from_str(&maestro(cloud, &["sso", "plan", "--json"]).await)
            .expect("the JSON is a plan");
        assert_eq!(plan.create.len(), 13);
        assert_eq!(plan.unmanaged.len(), 1);

        // Planning twice plans the same: the first plan changed nothing.
        let again: Plan =
            serde_json::from_str(&maestro(cloud, &["sso", "plan", "--json"]).await).unwrap();
        assert_eq!(again.create, plan.create);
    });
}

#[test]
fn sso_explain_answers_with_the_facts() {
    on_local_cloud(None, |cloud, _| async move {
        seed::sample_organisation(cloud.sdk_config()).await.unwrap();
        let answer = maestro(
            cloud,
            &[
                "sso",
                "explain",
                "--group",
                "tester_workload_payments",
                "--account",
                "payments-production",
                "--permission-set",
                "Tester",
            ],
        )
        .await;
        assert!(answer.starts_with("NOT DESIRED"), "{answer}");
        assert!(answer.contains("PRODUCTION"), "{answer}");
    });
}
