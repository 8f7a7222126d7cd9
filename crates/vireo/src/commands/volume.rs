//! `vireo volume ...`

use std::path::Path;

use anyhow::bail;
use vireo_api::{ByteSize, Volume, VolumeClone, VolumeCreate, VolumeImport, VolumeResize};
use vireo_client::{Client, Endpoint};

use crate::cli::{OutputFormat, VolumeCommand};
use crate::commands::pool::check_pool_name;
use crate::output::{self, human_size};
use crate::paths::{absolute, current_dir};
use crate::progress;
use crate::spec_args::FileCheck;

pub async fn run(command: VolumeCommand, endpoint: Endpoint) -> anyhow::Result<()> {
    let file_check = FileCheck::for_endpoint(&endpoint);
    let client = Client::new(endpoint);
    match command {
        VolumeCommand::Create { volume, size, format } => {
            let (pool, name) = volume_ref(&volume)?;
            let request =
                VolumeCreate { name: name.to_string(), size: size_flag(&size)?, format: format.map(Into::into) };
            let created = client.create_volume(pool, &request).await?;
            output::print(&format!("{}: created ({})\n", full_name(&created), describe(&created)))
        }
        VolumeCommand::Import { volume, file, format } => {
            let (pool, name) = volume_ref(&volume)?;
            let source = import_source(&file, file_check)?;
            let request = VolumeImport { name: name.to_string(), source, format: format.map(Into::into) };
            let imported = {
                let bar = progress::Bar::new(format!("importing {volume}"));
                client.import_volume(pool, &request, |fraction| bar.set(fraction)).await?
            };
            output::print(&format!("{}: imported ({})\n", full_name(&imported), describe(&imported)))
        }
        VolumeCommand::Clone { source, target, linked } => {
            let (pool, name) = volume_ref(&source)?;
            volume_ref(&target)?;
            let request = VolumeClone { target: target.clone(), linked };
            let message = format!("cloning {source} to {target}");
            let cloned = progress::spin(message, client.clone_volume(pool, name, &request)).await?;
            let how = if linked { "linked clone" } else { "copy" };
            output::print(&format!("{}: created as a {how} of {source} ({})\n", full_name(&cloned), describe(&cloned)))
        }
        VolumeCommand::Resize { volume, size, allow_shrink } => {
            let (pool, name) = volume_ref(&volume)?;
            let request = VolumeResize { size: size_flag(&size)?, allow_shrink };
            let resized = client.resize_volume(pool, name, &request).await?;
            output::print(&format!("{}: resized to {}\n", full_name(&resized), human_size(resized.capacity_bytes)))
        }
        VolumeCommand::Delete { volume } => {
            let (pool, name) = volume_ref(&volume)?;
            client.delete_volume(pool, name).await?;
            output::print(&format!("{pool}/{name}: deleted\n"))
        }
        VolumeCommand::List { pool, output } => {
            if let Some(pool) = &pool {
                check_pool_name(pool)?;
            }
            let volumes = client.list_volumes(pool.as_deref()).await?;
            match output.format {
                OutputFormat::Json => output::print_json(&volumes),
                OutputFormat::Table => output::print(&output::volume_table(&volumes)),
            }
        }
        VolumeCommand::Show { volume, output } => {
            let (pool, name) = volume_ref(&volume)?;
            let volume = client.get_volume(pool, name).await?;
            match output.format {
                OutputFormat::Json => output::print_json(&volume),
                OutputFormat::Table => output::print(&output::volume_details(&volume)),
            }
        }
    }
}

/// `POOL/NAME`, checked here so that a bad name fails before anything is sent.
pub fn volume_ref(text: &str) -> anyhow::Result<(&str, &str)> {
    vireo_core::spec::parse_volume_ref(text).map_err(anyhow::Error::msg)
}

/// The value of `--size`; the error names the flag.
fn size_flag(text: &str) -> anyhow::Result<ByteSize> {
    text.parse().map_err(|err| anyhow::anyhow!("--size: {err}"))
}

/// The image to import, absolute; over the Unix socket the daemon shares our files, so a
/// missing one is reported here.
fn import_source(file: &Path, check: FileCheck) -> anyhow::Result<std::path::PathBuf> {
    let source = absolute(&current_dir()?, file);
    // A file we may not look at may still be readable by the daemon: only a sure "missing" counts.
    if check == FileCheck::Local && matches!(source.try_exists(), Ok(false)) {
        bail!("{} does not exist", source.display());
    }
    Ok(source)
}

fn full_name(volume: &Volume) -> String {
    format!("{}/{}", volume.pool, volume.name)
}

/// `qcow2, 10GiB`
fn describe(volume: &Volume) -> String {
    format!("{}, {}", volume.format.as_str(), human_size(volume.capacity_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_refs_are_checked_locally() {
        assert_eq!(volume_ref("default/root.qcow2").unwrap(), ("default", "root.qcow2"));
        let err = |text: &str| volume_ref(text).unwrap_err().to_string();
        assert_eq!(err("root.qcow2"), "'root.qcow2' is not of the form POOL/NAME");
        assert!(err("my pool/x").starts_with("pool name 'my pool' contains ' '"), "{}", err("my pool/x"));
        assert_eq!(err("default/../etc"), "volume name '../etc' must not start with '.'");
        assert!(err("default/a/b").starts_with("volume name 'a/b' contains '/'"), "{}", err("default/a/b"));
        assert_eq!(err("/x"), "pool name must not be empty");
    }

    #[test]
    fn sizes_name_the_flag() {
        assert_eq!(size_flag("10GiB").unwrap(), ByteSize(10 << 30));
        let err = size_flag("lots").unwrap_err().to_string();
        assert!(err.starts_with("--size: 'lots' is not a number"), "{err}");
    }

    #[test]
    fn a_missing_image_is_reported_locally_only() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.img");
        let err = import_source(&missing, FileCheck::Local).unwrap_err().to_string();
        assert_eq!(err, format!("{} does not exist", missing.display()));
        assert_eq!(import_source(&missing, FileCheck::Remote).unwrap(), missing);
    }
}
