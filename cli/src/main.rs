use clap::Parser;
use maestro_cli::{Cli, run};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = maestro_aws::load_sdk_config().await;
    match run(cli, &config).await {
        Ok(output) => {
            print!("{output}");
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("maestro: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
