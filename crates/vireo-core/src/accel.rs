//! Which accelerator a VM gets.
//!
//! A `/dev/kvm` alone is not enough: some hosts (nested clouds) expose a
//! paravirtual KVM such as `kvm_pvm` that cannot boot ordinary guests. Only
//! the hardware modules `kvm_intel`/`kvm_amd` on a CPU with VMX/SVM count.

use vireo_api::Accel;

/// What the host told us; gathered by the QEMU driver, judged here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostAccelFacts {
    /// `/dev/kvm` exists and opens read-write.
    pub dev_kvm_usable: bool,
    /// KVM-related modules loaded (from /sys/module): e.g. `kvm`, `kvm_intel`, `kvm_pvm`.
    pub kvm_modules: Vec<String>,
    /// The CPU advertises `vmx` or `svm`.
    pub cpu_has_virt_flag: bool,
}

/// The accelerator a VM will run with, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccelChoice {
    pub accel: Accel,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("accelerator kvm is not usable on this host: {reason}")]
pub struct AccelError {
    pub reason: String,
}

impl HostAccelFacts {
    /// `Ok(reason)` when hardware KVM can run ordinary guests, `Err(reason)` when not.
    pub fn hardware_kvm(&self) -> Result<String, String> {
        let hardware_module = self.kvm_modules.iter().find(|m| *m == "kvm_intel" || *m == "kvm_amd");
        let Some(module) = hardware_module else {
            let others: Vec<&str> = self.kvm_modules.iter().map(String::as_str).filter(|m| *m != "kvm").collect();
            return Err(if others.is_empty() {
                "neither kvm_intel nor kvm_amd is loaded".to_string()
            } else {
                format!(
                    "KVM here is provided by {} (a paravirtual KVM that cannot boot ordinary guests), not kvm_intel/kvm_amd",
                    others.join(", ")
                )
            });
        };
        if !self.cpu_has_virt_flag {
            return Err(format!("{module} is loaded but the CPU shows no vmx/svm flag"));
        }
        if !self.dev_kvm_usable {
            return Err(format!("{module} is loaded but /dev/kvm is missing or not read-write for the daemon"));
        }
        Ok(format!("hardware KVM through {module}"))
    }

    /// Resolves the spec's accelerator for this host.
    pub fn choose(&self, requested: Accel) -> Result<AccelChoice, AccelError> {
        match (requested, self.hardware_kvm()) {
            (Accel::Tcg, _) => Ok(AccelChoice { accel: Accel::Tcg, reason: "TCG requested by the spec".into() }),
            (_, Ok(reason)) => Ok(AccelChoice { accel: Accel::Kvm, reason }),
            (Accel::Kvm, Err(reason)) => Err(AccelError { reason }),
            (Accel::Auto, Err(reason)) => Ok(AccelChoice { accel: Accel::Tcg, reason: format!("TCG: {reason}") }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(modules: &[&str], flag: bool, dev: bool) -> HostAccelFacts {
        HostAccelFacts {
            dev_kvm_usable: dev,
            kvm_modules: modules.iter().map(|m| m.to_string()).collect(),
            cpu_has_virt_flag: flag,
        }
    }

    #[test]
    fn paravirtual_kvm_falls_back_to_tcg_and_says_why() {
        let host = facts(&["kvm", "kvm_pvm"], false, true);
        let choice = host.choose(Accel::Auto).unwrap();
        assert_eq!(choice.accel, Accel::Tcg);
        assert!(choice.reason.contains("kvm_pvm"), "{}", choice.reason);
        let err = host.choose(Accel::Kvm).unwrap_err();
        assert!(err.to_string().contains("kvm_pvm"));
    }

    #[test]
    fn hardware_kvm_is_used_by_auto() {
        let host = facts(&["kvm", "kvm_intel"], true, true);
        assert_eq!(host.choose(Accel::Auto).unwrap().accel, Accel::Kvm);
        assert_eq!(host.choose(Accel::Tcg).unwrap().accel, Accel::Tcg);
    }

    #[test]
    fn hardware_module_without_usable_device_is_refused() {
        let host = facts(&["kvm", "kvm_amd"], true, false);
        assert!(host.choose(Accel::Kvm).unwrap_err().reason.contains("/dev/kvm"));
        assert_eq!(host.choose(Accel::Auto).unwrap().accel, Accel::Tcg);
    }

    #[test]
    fn no_modules_at_all() {
        let err = HostAccelFacts::default().choose(Accel::Kvm).unwrap_err();
        assert!(err.reason.contains("neither kvm_intel nor kvm_amd"));
    }
}
