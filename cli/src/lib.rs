//! `maestro`: the SSO model from an operator's terminal, read-only.
//!
//! It works against any AWS endpoint through the standard SDK configuration: a real
//! organisation with the operator's credentials, or the local cloud with `AWS_ENDPOINT_URL`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use maestro_aws::SdkConfig;
use maestro_aws::identity_center::IdentityCenter;
use maestro_aws::organizations::OrganizationsReader;
use maestro_domain::sso::assignment_monitor::InstanceArn;
use maestro_domain::sso::model::SsoModel;
use maestro_domain::sso::plan::{Plan, PlanInputs, Rule, explain, plan};
use maestro_domain::sso::snapshot::{Readers, read_in_full};

#[derive(Debug, Parser)]
#[command(
    name = "maestro",
    about = "Maestro for operators: plan and explain the SSO model (read-only)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// IAM Identity Center assignments kept equal to the model.
    #[command(subcommand)]
    Sso(SsoCommand),
}

#[derive(Debug, Subcommand)]
pub enum SsoCommand {
    /// Print what a reconcile would change, without changing anything.
    Plan {
        #[command(flatten)]
        source: Source,
        /// Print the whole plan as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Say why an assignment is or is not desired (names or ids).
    Explain {
        #[command(flatten)]
        source: Source,
        #[arg(long)]
        group: String,
        #[arg(long)]
        account: String,
        #[arg(long)]
        permission_set: String,
        #[arg(long)]
        json: bool,
    },
}

/// Where the model and IAM Identity Center come from.
#[derive(Debug, Args)]
pub struct Source {
    /// The IAM Identity Center instance; the only one of the account when left out.
    #[arg(long, env = "SSO_INSTANCE_ARN")]
    pub instance_arn: Option<String>,
    /// The instance's identity store; the instance's own when left out.
    #[arg(long, env = "IDENTITY_STORE_ID")]
    pub identity_store_id: Option<String>,
    /// The model's configuration (docs/sso-model.md); the defaults when left out.
    #[arg(long)]
    pub model: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot read the inputs: {}", .0.join("; "))]
    Inputs(Vec<String>),
    #[error(transparent)]
    Plan(#[from] maestro_domain::sso::plan::PlanAborted),
    #[error(transparent)]
    Explain(#[from] maestro_domain::sso::plan::ExplainError),
}

/// Runs a command and returns what to print.
pub async fn run(cli: Cli, config: &SdkConfig) -> Result<String, CliError> {
    let Command::Sso(command) = cli.command;
    match command {
        SsoCommand::Plan { source, json } => {
            let (model, inputs) = load(&source, config).await?;
            let planned = plan(&model, &inputs)?;
            Ok(if json {
                serde_json::to_string_pretty(&planned)
                    .map_err(|e| CliError::Usage(e.to_string()))?
            } else {
                plan_table(&planned, &inputs)
            })
        }
        SsoCommand::Explain {
            source,
            group,
            account,
            permission_set,
            json,
        } => {
            let (model, inputs) = load(&source, config).await?;
            let explanation = explain(&model, &inputs, &group, &account, &permission_set)?;
            if json {
                return serde_json::to_string_pretty(&explanation)
                    .map_err(|e| CliError::Usage(e.to_string()));
            }
            let mut out = format!(
                "{}: {}\n",
                if explanation.desired {
                    "DESIRED"
                } else {
                    "NOT DESIRED"
                },
                explanation.verdict
            );
            for fact in &explanation.facts {
                let _ = writeln!(out, "  - {fact}");
            }
            Ok(out)
        }
    }
}

async fn load(source: &Source, config: &SdkConfig) -> Result<(SsoModel, PlanInputs), CliError> {
    let model = match &source.model {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?;
            SsoModel::from_json(&text).map_err(|e| CliError::Usage(e.to_string()))?
        }
        None => SsoModel::default(),
    };
    let (instance_arn, identity_store_id) = instance(source, config).await?;
    let organisation = OrganizationsReader::new(config);
    let identity_center = IdentityCenter::new(config, instance_arn, identity_store_id);
    let readers = Readers {
        organisation: &organisation,
        identity_center: &identity_center,
        clock: &maestro_aws::sso::SystemClock,
    };
    let inputs = read_in_full(&readers)
        .await
        .map_err(|e| CliError::Inputs(vec![format!("cannot read the inputs: {e}")]))?;
    Ok((model, inputs))
}

async fn instance(source: &Source, config: &SdkConfig) -> Result<(InstanceArn, String), CliError> {
    if let (Some(arn), Some(store)) = (&source.instance_arn, &source.identity_store_id) {
        let arn =
            InstanceArn::try_from(arn.as_str()).map_err(|e| CliError::Usage(e.to_string()))?;
        return Ok((arn, store.clone()));
    }
    let instances = aws_sdk_ssoadmin::Client::new(config)
        .list_instances()
        .send()
        .await
        .map_err(|e| {
            CliError::Inputs(vec![format!(
                "cannot list the IAM Identity Center instances: {e}"
            )])
        })?
        .instances
        .unwrap_or_default();
    let [only] = instances.as_slice() else {
        return Err(CliError::Usage(format!(
            "{} IAM Identity Center instances: name one with --instance-arn and --identity-store-id",
            instances.len()
        )));
    };
    let arn = source
        .instance_arn
        .clone()
        .or_else(|| only.instance_arn.clone())
        .unwrap_or_default();
    let store = source
        .identity_store_id
        .clone()
        .or_else(|| only.identity_store_id.clone())
        .unwrap_or_default();
    let arn = InstanceArn::try_from(arn).map_err(|e| CliError::Usage(e.to_string()))?;
    Ok((arn, store))
}

/// The plan as an operator reads it: names instead of ids, one change per line.
fn plan_table(planned: &Plan, inputs: &PlanInputs) -> String {
    let accounts: HashMap<&str, &str> = inputs
        .accounts
        .iter()
        .map(|a| (a.id.as_str(), a.name.as_str()))
        .collect();
    let sets: HashMap<&str, &str> = inputs
        .permission_sets
        .iter()
        .map(|s| (s.arn.as_str(), s.name.as_str()))
        .collect();
    let principals: HashMap<&str, &str> = inputs
        .groups
        .iter()
        .chain(&inputs.users)
        .map(|p| (p.id.as_str(), p.name.as_str()))
        .collect();
    let name = |map: &HashMap<&str, &str>, id: &str| map.get(id).copied().unwrap_or(id).to_owned();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} desired, {} unchanged, {} to create, {} to delete, {} held, {} unmanaged, {} accounts excluded",
        planned.desired,
        planned.unchanged,
        planned.create.len(),
        planned.deletes_to_run().count(),
        planned.held_deletes().count(),
        planned.unmanaged.len(),
        planned.excluded_accounts.len(),
    );
    let row =
        |out: &mut String, action: &str, a: &maestro_domain::sso::plan::Assignment, why: String| {
            let _ = writeln!(
                out,
                "{action:<8} {:<28} {:<24} {:<40} {why}",
                name(&accounts, a.account_id.as_str()),
                name(&sets, a.permission_set_arn.as_str()),
                name(&principals, a.principal_id.as_str()),
            );
        };
    if !planned.create.is_empty() || !planned.delete.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<8} {:<28} {:<24} {:<40} WHY",
            "ACTION", "ACCOUNT", "PERMISSION SET", "PRINCIPAL"
        );
    }
    for create in &planned.create {
        let why = match &create.rule {
            Rule::WorkloadAll { job_function } => format!("{job_function}: workload_all"),
            Rule::WorkloadMatch {
                job_function,
                workload,
            } => format!("{job_function}: workload_match on {workload}"),
            Rule::WorkloadListed {
                job_function,
                workload,
            } => format!("{job_function}: {workload} is listed"),
            Rule::SandboxOwner { owner } => format!("sandbox owner {owner}"),
        };
        row(&mut out, "create", &create.assignment, why);
    }
    for delete in &planned.delete {
        let (action, why) = match &delete.held {
            Some(hold) => ("HELD", format!("delete waits for an approval: {hold:?}")),
            None => ("delete", "not desired by the model".to_owned()),
        };
        row(&mut out, action, &delete.assignment, why);
    }
    for excluded in &planned.excluded_accounts {
        let _ = writeln!(
            out,
            "excluded account {} ({}): {:?}",
            excluded.name, excluded.id, excluded.reason
        );
    }
    for sandbox in &planned.sandboxes_without_owner {
        let _ = writeln!(
            out,
            "sandbox {} has no usable owner: {}",
            sandbox.account_id, sandbox.problem
        );
    }
    out
}
