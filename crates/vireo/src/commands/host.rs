//! `vireo host ...`

use vireo_client::{Client, Endpoint};

use crate::cli::{HostCommand, OutputFormat};
use crate::output;

pub async fn run(command: HostCommand, endpoint: Endpoint) -> anyhow::Result<()> {
    let client = Client::new(endpoint);
    match command {
        HostCommand::Show { output } => {
            let host = client.host_info().await?;
            match output.format {
                OutputFormat::Json => output::print_json(&host),
                OutputFormat::Table => output::print(&output::host_details(&host)),
            }
        }
        HostCommand::Check { output } => {
            let check = client.host_check().await?;
            match output.format {
                OutputFormat::Json => output::print_json(&check),
                OutputFormat::Table => output::print(&output::host_check_report(&check)),
            }
        }
    }
}
