//! `maestro-localcloud`: Maestro on the local cloud (`up`, what `make up` runs), and the
//! commands that drive a running one.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use maestro_localcloud::console::{self, AssignmentAsk, UpState};
use maestro_localcloud::{LocalCloud, LocalCloudOptions, Template, moto, seed};

#[derive(Parser)]
#[command(
    about = "Maestro's local cloud: the stack of infra/template.yaml on moto, with the functions in-process"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the stack, seed a sample organisation, and serve until Ctrl-C.
    Up {
        /// The SAM template to build.
        #[arg(long, default_value_os_t = moto::repository_root().join("infra/template.yaml"))]
        template: PathBuf,
        #[arg(long, default_value = "maestro")]
        stack_name: String,
        /// Port of the Lambda Invoke API (0: any free port).
        #[arg(long, default_value_t = 0)]
        lambda_port: u16,
        /// Port of the stack's HTTP API routes (0: any free port).
        #[arg(long, default_value_t = 0)]
        http_port: u16,
        /// Template parameter overrides, as Name=Value.
        #[arg(long = "parameter", value_parser = parse_parameter)]
        parameters: Vec<(String, String)>,
        /// Do not create the sample organisation.
        #[arg(long)]
        no_seed: bool,
    },
    /// On a running `up`: ask IAM Identity Center for an assignment of the sample organisation
    /// and put the request on the SSO monitor queue.
    SsoRequest {
        /// Account name, e.g. payments-development.
        #[arg(long)]
        account: String,
        /// Group display name (or user name with --user), e.g. developer_workload_payments.
        #[arg(long)]
        principal: String,
        #[arg(long)]
        user: bool,
        /// Permission set name, e.g. Developer.
        #[arg(long)]
        permission_set: String,
        /// Delete the assignment instead of creating it.
        #[arg(long)]
        delete: bool,
    },
    /// On a running `up`: sign in to the stack's user pool and print an ID token for the
    /// management API (`Authorization: Bearer <token>`).
    Token {
        /// The user's email address; the user is made on first use.
        email: String,
        /// A team (pool group) the user belongs to; repeat for more.
        #[arg(long = "team")]
        teams: Vec<String>,
    },
    /// On a running `up`: print the audit reports published since the last call.
    Audit {
        /// Wait for this many reports…
        #[arg(long, default_value_t = 1)]
        count: usize,
        /// …but no longer than this many seconds.
        #[arg(long, default_value_t = 30)]
        wait: u64,
    },
}

/// Who `up` signs in as to connect the sample accounts.
const LOCAL_OPERATOR: &str = "ops@example.com";

fn parse_parameter(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected Name=Value, got {text:?}"))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,aws_config=warn,aws_smithy_runtime=warn".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Up {
            template,
            stack_name,
            lambda_port,
            http_port,
            parameters,
            no_seed,
        } => {
            let cloud = LocalCloud::start(LocalCloudOptions {
                lambda_port,
                http_port,
                ..LocalCloudOptions::default()
            })
            .await?;
            let template = Template::load(&template)?;
            let mut overrides = cloud.local_parameters(&template).await?;
            overrides.extend(parameters);
            let operators = overrides
                .get("OperatorsTeam")
                .cloned()
                .or_else(|| {
                    template.document["Parameters"]["OperatorsTeam"]["Default"]
                        .as_str()
                        .map(str::to_owned)
                })
                .unwrap_or_default();
            let stack = cloud.deploy(&template, &stack_name, &overrides).await?;
            let organisation = match no_seed {
                true => None,
                false => Some(seed::sample_organisation(cloud.sdk_config()).await?),
            };
            if let Some(organisation) = &organisation {
                println!("{organisation}");
                let inventory = seed::sample_inventory(
                    organisation,
                    cloud.moto_endpoint(),
                    cloud.http_endpoint(),
                    &cloud.bearer(LOCAL_OPERATOR, &[&operators]).await?,
                )
                .await?;
                println!("{inventory}");
            }
            // The sample policy's approvers can sign in on the approval links' sign-in page.
            for approver in maestro_localcloud::sample_approvers() {
                cloud.bearer(&approver, &[]).await?;
            }
            let state = UpState::record(&cloud, &stack, organisation).await?;
            println!("Maestro is up on the local cloud (stack {stack_name}).");
            println!(
                "  AWS APIs: export AWS_ENDPOINT_URL={} AWS_REGION={} AWS_ACCESS_KEY_ID=localcloud AWS_SECRET_ACCESS_KEY=localcloud",
                state.aws_endpoint_url, state.region
            );
            println!("  Lambda Invoke API: {}", state.lambda_endpoint);
            println!("  HTTP API: {}", state.http_endpoint);
            println!(
                "  Sign in (an operator of team {operators}): export TOKEN=$(cargo run -q -p maestro-localcloud -- token {LOCAL_OPERATOR} --team {operators})"
            );
            println!(
                "  then: curl -H \"Authorization: Bearer $TOKEN\" {}/inventory/summary",
                state.http_endpoint
            );
            println!(
                "  Approvers ({}) sign in on the approval links' page with the password {}",
                maestro_localcloud::sample_approvers().join(", "),
                maestro_localcloud::identity_provider::LOCAL_PASSWORD
            );
            for (name, value) in &state.outputs {
                println!("  {name}: {value}");
            }
            println!(
                "  State for the other commands: {}",
                console::state_file().display()
            );
            println!("Ctrl-C stops it.");
            tokio::signal::ctrl_c().await?;
            let _ = std::fs::remove_file(console::state_file());
        }
        Command::SsoRequest {
            account,
            principal,
            user,
            permission_set,
            delete,
        } => {
            let body = console::sso_request(&AssignmentAsk {
                account,
                principal,
                principal_is_user: user,
                permission_set,
                delete,
            })
            .await?;
            println!("Queued on SsoAssignmentRequestsQueue:\n{body}");
        }
        Command::Token { email, teams } => {
            let teams: Vec<&str> = teams.iter().map(String::as_str).collect();
            println!("{}", console::token(&email, &teams).await?);
        }
        Command::Audit { count, wait } => {
            let reports = console::audit(count, Duration::from_secs(wait)).await?;
            if reports.is_empty() {
                println!("No audit report within {wait} s.");
            }
            for report in reports {
                match serde_json::from_str::<serde_json::Value>(&report) {
                    Ok(json) => println!("{}", serde_json::to_string_pretty(&json)?),
                    Err(_) => println!("{report}"),
                }
            }
        }
    }
    Ok(())
}
