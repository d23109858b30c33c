//! `maestro-localcloud up`: Maestro on the local cloud until Ctrl-C (what `make up` runs).

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use maestro_localcloud::{LocalCloud, LocalCloudOptions, Template, moto};

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
        /// Template parameter overrides, as Name=Value.
        #[arg(long = "parameter", value_parser = parse_parameter)]
        parameters: Vec<(String, String)>,
        /// Do not create the sample organisation.
        #[arg(long)]
        no_seed: bool,
    },
}

fn parse_parameter(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected Name=Value, got {text:?}"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,aws_config=warn,aws_smithy_runtime=warn".into()),
        )
        .init();
    let Command::Up {
        template,
        stack_name,
        lambda_port,
        parameters,
        no_seed,
    } = Cli::parse().command;
    let cloud = LocalCloud::start(LocalCloudOptions {
        lambda_port,
        ..LocalCloudOptions::default()
    })
    .await?;
    let template = Template::load(&template)?;
    let overrides: BTreeMap<String, String> = parameters.into_iter().collect();
    let stack = cloud.deploy(&template, &stack_name, &overrides).await?;
    if !no_seed {
        let organisation =
            maestro_localcloud::seed::sample_organisation(cloud.sdk_config()).await?;
        println!("{organisation}");
    }
    println!("Maestro is up on the local cloud (stack {stack_name}).");
    println!(
        "  export AWS_ENDPOINT_URL={} AWS_REGION={} AWS_ACCESS_KEY_ID=localcloud AWS_SECRET_ACCESS_KEY=localcloud",
        cloud.moto_endpoint(),
        cloud.region()
    );
    println!("  Lambda Invoke API: {}", cloud.lambda_endpoint());
    for (name, value) in &stack.outputs {
        println!("  {name}: {value}");
    }
    println!("Ctrl-C stops it.");
    tokio::signal::ctrl_c().await?;
    Ok(())
}
