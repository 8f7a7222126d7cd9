//! `vireo pool ...`

use vireo_api::PoolSpec;
use vireo_client::{Client, Endpoint};

use crate::cli::{OutputFormat, PoolCommand};
use crate::output;
use crate::paths::{absolute, current_dir};

pub async fn run(command: PoolCommand, endpoint: Endpoint) -> anyhow::Result<()> {
    let client = Client::new(endpoint);
    match command {
        PoolCommand::Create { name, pool_type, path } => {
            check_pool_name(&name)?;
            let spec = PoolSpec { name, pool_type: pool_type.into(), path: absolute(&current_dir()?, &path) };
            let pool = client.create_pool(&spec).await?;
            output::print(&format!("{}: created ({}, {})\n", pool.name, pool.pool_type.as_str(), pool.path.display()))
        }
        PoolCommand::List { output } => {
            let pools = client.list_pools().await?;
            match output.format {
                OutputFormat::Json => output::print_json(&pools),
                OutputFormat::Table => output::print(&output::pool_table(&pools)),
            }
        }
        PoolCommand::Show { name, output } => {
            let pool = client.get_pool(&name).await?;
            match output.format {
                OutputFormat::Json => output::print_json(&pool),
                OutputFormat::Table => output::print(&output::pool_details(&pool)),
            }
        }
        PoolCommand::Delete { name } => {
            client.delete_pool(&name).await?;
            output::print(&format!("{name}: deleted\n"))
        }
    }
}

/// Refuses a pool name the daemon would refuse, before asking it anything.
pub fn check_pool_name(name: &str) -> anyhow::Result<()> {
    vireo_core::spec::validate_name(name).map_err(|reason| anyhow::anyhow!("pool name {reason}"))
}
