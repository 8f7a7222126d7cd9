//! The lean machine, one default at a time (section 7): start → marker through the daemon
//! with vireo's defaults against the same with one of them undone (SeaBIOS instead of qboot,
//! one piece of legacy hardware put back, all of it with SeaBIOS, the bzImage instead of the
//! PVH entry), and with one step further than the defaults: no hot-plug ports. Each round starts every variant once, so each variant is compared with the
//! defaults of its own round; as in [`crate::start_marker::order`], the first round runs them
//! in order and every later one in a shuffled order of its own.

use anyhow::Context;
use serde::Serialize;
use vireo_api::{BootEntry, Firmware, LegacyHardware, VmSpec};

use crate::boot::{self, Guest, VireoRun};
use crate::daemon::PrivateDaemon;
use crate::libvirt_bench::Versus;
use crate::stats::{Summary, shuffle};

/// A spec of the test guest: vireo's defaults, or one change to them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    Defaults,
    Seabios,
    Legacy(LegacyHardware),
    AllLegacyAndSeabios,
    NoPvh,
    NoHotplugPorts,
}

impl Variant {
    /// Every variant, in the order each round starts them.
    pub fn all() -> Vec<Variant> {
        let mut all = vec![Variant::Defaults, Variant::Seabios];
        all.extend(LegacyHardware::ALL.map(Variant::Legacy));
        all.extend([Variant::AllLegacyAndSeabios, Variant::NoPvh, Variant::NoHotplugPorts]);
        all
    }

    /// What the spec says, as a user writes it.
    pub fn label(self) -> String {
        match self {
            Variant::Defaults => "defaults".into(),
            Variant::Seabios => "`machine.firmware: seabios`".into(),
            Variant::Legacy(hardware) => format!("`machine.legacy: [{}]`", hardware.as_str()),
            Variant::AllLegacyAndSeabios => "`machine.legacy`: all six, `firmware: seabios`".into(),
            Variant::NoPvh => "`boot.pvh: false`".into(),
            Variant::NoHotplugPorts => "`machine.hotplug_ports: 0`".into(),
        }
    }

    pub fn spec(self, guest: &Guest, name: &str) -> VmSpec {
        let mut spec = guest.spec(name);
        match self {
            Variant::Defaults => {}
            Variant::Seabios => spec.machine.firmware = Firmware::Seabios,
            Variant::Legacy(hardware) => spec.machine.legacy = vec![hardware],
            Variant::AllLegacyAndSeabios => {
                spec.machine.firmware = Firmware::Seabios;
                spec.machine.legacy = LegacyHardware::ALL.to_vec();
            }
            Variant::NoPvh => spec.boot.pvh = false,
            Variant::NoHotplugPorts => spec.machine.hotplug_ports = Some(0),
        }
        spec
    }

    /// A short name for VM names and progress lines.
    fn tag(self) -> String {
        match self {
            Variant::Defaults => "defaults".into(),
            Variant::Seabios => "seabios".into(),
            Variant::Legacy(hardware) => hardware.as_str().into(),
            Variant::AllLegacyAndSeabios => "all-legacy".into(),
            Variant::NoPvh => "no-pvh".into(),
            Variant::NoHotplugPorts => "no-hotplug".into(),
        }
    }
}

/// One variant over the rounds.
#[derive(Clone, Debug, Serialize)]
pub struct VariantResult {
    pub variant: Variant,
    pub label: String,
    /// What QEMU got: `-machine`'s value, and `-bios`'s if any (from /proc/PID/cmdline).
    pub machine: String,
    pub bios: Option<String>,
    /// `pcie-root-port` devices in its command line.
    pub hotplug_ports: usize,
    /// How the daemon reports the boot (`GET /v1/vms/{name}`'s `boot`).
    pub entry: Option<BootEntry>,
    pub firmware: Option<Firmware>,
    pub runs: Vec<VireoRun>,
    /// Start request → marker.
    pub marker: Summary,
    /// Start request → 200 (QEMU's start-up is part of it: firmware loading, devices).
    pub start_return: Summary,
    /// Median CPU time of the guest's QEMU until the marker.
    pub qemu_cpu_ms: Option<f64>,
    /// This variant against the defaults of the same round (for the defaults themselves: 1).
    pub versus_defaults: Versus,
}

#[derive(Clone, Debug, Serialize)]
pub struct AblationResults {
    pub rounds: usize,
    pub warmup_rounds: usize,
    pub variants: Vec<VariantResult>,
}

/// `rounds` rounds after `warmup` unrecorded ones, each starting every variant once.
pub async fn run(
    daemon: &PrivateDaemon,
    guest: &Guest,
    rounds: usize,
    warmup: usize,
) -> anyhow::Result<AblationResults> {
    let client = daemon.client();
    let variants = Variant::all();
    let mut runs: Vec<Vec<VireoRun>> = vec![Vec::with_capacity(rounds); variants.len()];
    let mut seen = vec![WhatQemuGot::default(); variants.len()];
    for round in 0..warmup + rounds {
        let label = boot::run_label(round, warmup, rounds);
        let mut progress = Vec::with_capacity(variants.len());
        let mut order: Vec<usize> = (0..variants.len()).collect();
        if round > 0 {
            shuffle(&mut order, round as u64);
        }
        for k in order {
            let variant = &variants[k];
            let spec = variant.spec(guest, &format!("lean-{}-{}", round + 1, variant.tag()));
            let running = boot::vireo_until_marker(&client, daemon, &spec)
                .await
                .with_context(|| format!("{} {label}", variant.label()))?;
            let force = vireo_api::StopRequest { force: true, timeout_secs: None };
            client.stop_vm(&spec.name, &force).await.with_context(|| format!("cannot stop {}", spec.name))?;
            client.delete_vm(&spec.name).await.with_context(|| format!("cannot delete {}", spec.name))?;
            progress.push(format!("{} {:.0} ms", variant.tag(), running.run.marker_ms));
            seen[k] = WhatQemuGot {
                machine: option_value(&running.argv, "-machine").unwrap_or_default(),
                bios: option_value(&running.argv, "-bios"),
                hotplug_ports: running.argv.windows(2).filter(|w| is_hotplug_port(&w[0], &w[1])).count(),
                entry: running.boot.as_ref().map(|b| b.entry),
                firmware: running.boot.as_ref().map(|b| b.firmware),
            };
            if round >= warmup {
                runs[k].push(running.run);
            }
        }
        eprintln!("vireo-bench: lean defaults {label}: {}", progress.join(", "));
    }
    let marker = |runs: &[VireoRun]| runs.iter().map(|r| r.marker_ms).collect::<Vec<_>>();
    let defaults = marker(&runs[0]);
    let variants = variants
        .into_iter()
        .zip(runs)
        .zip(seen)
        .map(|((variant, runs), WhatQemuGot { machine, bios, hotplug_ports, entry, firmware })| {
            let cpu: Vec<f64> = runs.iter().filter_map(|r| r.cpu.qemu_ms).collect();
            let start_return: Vec<f64> = runs.iter().map(|r| r.start_return_ms).collect();
            Some(VariantResult {
                variant,
                label: variant.label(),
                machine,
                bios,
                hotplug_ports,
                entry,
                firmware,
                marker: Summary::of(&marker(&runs))?,
                start_return: Summary::of(&start_return)?,
                qemu_cpu_ms: Summary::of(&cpu).map(|s| s.median),
                versus_defaults: Versus::of(&marker(&runs), &defaults)?,
                runs,
            })
        })
        .collect::<Option<Vec<_>>>()
        .context("no rounds")?;
    Ok(AblationResults { rounds, warmup_rounds: warmup, variants })
}

/// A variant's machine, as its last run had it.
#[derive(Clone, Default)]
struct WhatQemuGot {
    machine: String,
    bios: Option<String>,
    hotplug_ports: usize,
    entry: Option<BootEntry>,
    firmware: Option<Firmware>,
}

fn is_hotplug_port(option: &str, value: &str) -> bool {
    option == "-device" && value.starts_with("pcie-root-port,")
}

/// The value after `option` in a command line.
fn option_value(argv: &[String], option: &str) -> Option<String> {
    argv.iter().position(|a| a == option).and_then(|i| argv.get(i + 1)).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_variant_changes_one_thing() {
        let guest = Guest { kernel: "/g/vmlinuz".into(), initrd: "/g/initramfs.img".into() };
        let defaults = guest.spec("v");
        let all = Variant::all();
        assert_eq!(all.len(), 11);
        assert_eq!(Variant::Defaults.spec(&guest, "v"), defaults);
        let hpet = Variant::Legacy(LegacyHardware::Hpet).spec(&guest, "v");
        assert_eq!(
            (hpet.machine.legacy.as_slice(), hpet.machine.firmware),
            (&[LegacyHardware::Hpet][..], Firmware::Auto)
        );
        assert!(!Variant::NoPvh.spec(&guest, "v").boot.pvh && defaults.boot.pvh);
        let bare = Variant::NoHotplugPorts.spec(&guest, "v");
        assert_eq!((bare.machine.hotplug_ports(), defaults.machine.hotplug_ports()), (0, 4));
        let everything = Variant::AllLegacyAndSeabios.spec(&guest, "v");
        assert_eq!((everything.machine.legacy.len(), everything.machine.firmware), (6, Firmware::Seabios));
        assert_eq!(Variant::Legacy(LegacyHardware::Ps2).label(), "`machine.legacy: [ps2]`");
        let argv: Vec<String> = ["qemu", "-machine", "q35,accel=tcg", "-bios", "qboot.rom"].map(String::from).into();
        assert_eq!(option_value(&argv, "-bios").as_deref(), Some("qboot.rom"));
        assert!(option_value(&argv, "-kernel").is_none());
        assert!(is_hotplug_port("-device", "pcie-root-port,id=hp0,bus=pcie.0"));
        assert!(!is_hotplug_port("-device", "virtio-blk-pci,drive=disk0"));
    }
}
