//! The Markdown of section 7: the lean machine's defaults, one at a time.

use std::fmt::Write;

use vireo_api::BootEntry;

use crate::ablation::{AblationResults, Variant, VariantResult};
use crate::report::fmt_ms;

pub fn section(out: &mut String, results: &AblationResults) {
    let Some(defaults) = results.variants.iter().find(|v| v.variant == Variant::Defaults) else { return };
    let _ = write!(
        out,
        "## 7. The lean machine, one default at a time\n\n\
         For a guest booted from a kernel, vireo's defaults are the kernel's PVH entry (a bzImage's ELF payload, \
         unpacked once into the daemon's kernel cache), qboot as firmware, and a q35 machine without the legacy \
         hardware a modern Linux guest does not use; here that is `-machine {machine}`{bios}, with {ports} \
         `pcie-root-port`s for hot-plug. Each variant below undoes one of them in the spec (`machine.firmware`, \
         `machine.legacy`, `boot.pvh`), nothing else, except the last, which goes one step further than the \
         defaults: `machine.hotplug_ports: 0` leaves the hot-plug ports out, and its ratio is what they cost \
         (below 1: they cost time). One more \
         private daemon starts section 1's test guest once per variant and round, {rounds} recorded round(s) \
         after {warmup} unrecorded warm-up round(s), in an order that changes from round to round as in section 6, \
         each timed as section 1 times vireo (start request → marker on the console WebSocket), then stops and \
         deletes it. Each variant is compared with the defaults of its own round; a ratio above 1 means undoing \
         the default costs time. The spread of a \
         variant's round-by-round ratios is this machine's noise: where it straddles 1, the measurement shows no \
         cost either way.\n\n\
         | spec | what QEMU got instead | start → marker: min / **median** / max | / defaults, round by round: min \
         / **median** / max | / defaults (medians) | start request → 200 (median) | QEMU's CPU time until the \
         marker (median) |\n|---|---|---|---|---|---|---|\n",
        machine = defaults.machine,
        bios = defaults.bios.as_ref().map(|b| format!(" `-bios {b}`")).unwrap_or_default(),
        ports = defaults.hotplug_ports,
        rounds = results.rounds,
        warmup = results.warmup_rounds,
    );
    for variant in &results.variants {
        let m = &variant.marker;
        let r = &variant.versus_defaults.pairwise_ratio;
        let _ = writeln!(
            out,
            "| {} | {} | {} / **{}** / {} | {:.3} / **{:.3}** / {:.3} | {:.3} | {} | {} |",
            variant.label,
            changes(defaults, variant),
            fmt_ms(m.min),
            fmt_ms(m.median),
            fmt_ms(m.max),
            r.min,
            r.median,
            r.max,
            variant.versus_defaults.ratio_of_medians,
            fmt_ms(variant.start_return.median),
            variant.qemu_cpu_ms.map_or("n/a".into(), fmt_ms),
        );
    }
    out.push('\n');
}

/// What QEMU got for `variant` that it did not for `defaults`: machine properties left on,
/// another firmware, another kernel entry.
fn changes(defaults: &VariantResult, variant: &VariantResult) -> String {
    if variant.variant == Variant::Defaults {
        return format!("(PVH entry, {})", firmware(&defaults.bios));
    }
    let properties = |machine: &str| machine.split(',').map(String::from).collect::<Vec<_>>();
    let own = properties(&variant.machine);
    let left_out: Vec<String> =
        properties(&defaults.machine).into_iter().filter(|p| !own.contains(p)).map(|p| format!("`{p}`")).collect();
    let mut changes = Vec::new();
    if !left_out.is_empty() {
        changes.push(format!("without {}", left_out.join(", ")));
    }
    if variant.bios != defaults.bios {
        changes.push(firmware(&variant.bios));
    }
    if variant.hotplug_ports != defaults.hotplug_ports {
        changes.push(format!("{} hot-plug ports instead of {}", variant.hotplug_ports, defaults.hotplug_ports));
    }
    if variant.entry != defaults.entry {
        changes.push(match variant.entry {
            Some(BootEntry::Pvh) => "PVH entry".into(),
            Some(BootEntry::Linux) => "the bzImage as given".into(),
            Some(BootEntry::Firmware) => "a firmware boot".into(),
            None => "entry unknown".into(),
        });
    }
    if changes.is_empty() { "nothing (this QEMU has no such property)".into() } else { changes.join(", ") }
}

fn firmware(bios: &Option<String>) -> String {
    match bios {
        Some(file) => format!("`-bios {file}`"),
        None => "SeaBIOS (no `-bios`)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::libvirt_bench::Versus;
    use crate::stats::Summary;
    use vireo_api::{Firmware, LegacyHardware};

    fn variant(variant: Variant, machine: &str, bios: Option<&str>, entry: BootEntry, ms: f64) -> VariantResult {
        VariantResult {
            variant,
            label: variant.label(),
            machine: machine.into(),
            bios: bios.map(String::from),
            hotplug_ports: if variant == Variant::NoHotplugPorts { 0 } else { 4 },
            entry: Some(entry),
            firmware: Some(if bios.is_some() { Firmware::Qboot } else { Firmware::Seabios }),
            runs: Vec::new(),
            marker: Summary::of(&[ms]).unwrap(),
            start_return: Summary::of(&[40.0]).unwrap(),
            qemu_cpu_ms: Some(ms),
            versus_defaults: Versus::of(&[ms], &[1600.0]).unwrap(),
        }
    }

    #[test]
    fn each_variant_says_what_it_changed() {
        let lean = "q35,accel=tcg,hpet=off,i8042=off";
        let results = AblationResults {
            rounds: 1,
            warmup_rounds: 0,
            variants: vec![
                variant(Variant::Defaults, lean, Some("qboot.rom"), BootEntry::Pvh, 1600.0),
                variant(Variant::Seabios, lean, None, BootEntry::Pvh, 1800.0),
                variant(
                    Variant::Legacy(LegacyHardware::Hpet),
                    "q35,accel=tcg,i8042=off",
                    Some("qboot.rom"),
                    BootEntry::Pvh,
                    1600.0,
                ),
                variant(Variant::NoPvh, lean, Some("qboot.rom"), BootEntry::Linux, 2000.0),
                variant(Variant::AllLegacyAndSeabios, "q35,accel=tcg", None, BootEntry::Pvh, 1700.0),
                variant(Variant::NoHotplugPorts, lean, Some("qboot.rom"), BootEntry::Pvh, 1400.0),
            ],
        };
        let mut out = String::new();
        section(&mut out, &results);
        assert!(out.starts_with("## 7. The lean machine, one default at a time\n\n"), "{out}");
        assert!(
            out.contains(
                "here that is `-machine q35,accel=tcg,hpet=off,i8042=off` `-bios qboot.rom`, with 4 `pcie-root-port`s"
            ),
            "{out}"
        );
        assert!(
            out.contains("| defaults | (PVH entry, `-bios qboot.rom`) | 1600 ms / **1600 ms** / 1600 ms | 1.000 /")
        );
        assert!(out.contains("| `machine.firmware: seabios` | SeaBIOS (no `-bios`) |"), "{out}");
        assert!(out.contains("| `machine.legacy: [hpet]` | without `hpet=off` |"), "{out}");
        assert!(out.contains("| without `hpet=off`, `i8042=off`, SeaBIOS (no `-bios`) | 1700 ms /"), "{out}");
        assert!(out.contains("| `boot.pvh: false` | the bzImage as given | 2000 ms / **2000 ms** / 2000 ms | 1.250 /"));
        assert!(out.contains("| `machine.hotplug_ports: 0` | 0 hot-plug ports instead of 4 | 1400 ms /"), "{out}");
    }
}
