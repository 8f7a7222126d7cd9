//! Which events a lifecycle state change stands for.
//!
//! Every change is a `vm.state_changed`; the ones a user thinks of as
//! happenings (the VM started, stopped, crashed...) also get an event of
//! their own, decided here from the two states alone so that the daemon
//! emits them from the one place it records state changes.

use vireo_api::{EventKind, VmState};

/// The events of a change from `from` to `to`; `last_error` is the record's
/// reason after the change (why it crashed or failed to start). None when
/// nothing changed.
pub fn transition_events(from: VmState, to: VmState, last_error: Option<&str>) -> Vec<EventKind> {
    use VmState::*;
    if from == to {
        return Vec::new();
    }
    let reason = || last_error.unwrap_or("no reason recorded").to_string();
    let happening = match (from, to) {
        (Starting, Running) => Some(EventKind::VmStarted {}),
        // A start that did not get the guest running leaves the VM where it was.
        (Starting | Incoming, Stopped | Saved) => Some(EventKind::VmStartFailed { reason: reason() }),
        (_, Stopped) => Some(EventKind::VmStopped {}),
        (_, Crashed) => Some(EventKind::VmCrashed { reason: reason() }),
        (Running, Paused) => Some(EventKind::VmPaused {}),
        (Paused, Running) => Some(EventKind::VmResumed {}),
        (Running | Paused, Saved) => Some(EventKind::VmSaved {}),
        // Migrating and incoming VMs have migration events of their own.
        _ => None,
    };
    std::iter::once(EventKind::VmStateChanged { from, to }).chain(happening).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn happening(from: VmState, to: VmState, last_error: Option<&str>) -> Option<EventKind> {
        let events = transition_events(from, to, last_error);
        assert_eq!(events.first(), Some(&EventKind::VmStateChanged { from, to }), "every change is a state change");
        assert!(events.len() <= 2);
        events.get(1).cloned()
    }

    #[test]
    fn no_change_is_no_event() {
        assert!(transition_events(VmState::Starting, VmState::Starting, None).is_empty());
    }

    #[test]
    fn the_lifecycle_has_names() {
        use VmState::*;
        assert_eq!(happening(Starting, Running, None), Some(EventKind::VmStarted {}));
        assert_eq!(happening(Stopping, Stopped, None), Some(EventKind::VmStopped {}));
        // The guest powered itself off.
        assert_eq!(happening(Running, Stopped, None), Some(EventKind::VmStopped {}));
        assert_eq!(happening(Running, Paused, None), Some(EventKind::VmPaused {}));
        assert_eq!(happening(Paused, Running, None), Some(EventKind::VmResumed {}));
        assert_eq!(happening(Paused, Saved, None), Some(EventKind::VmSaved {}));
        assert_eq!(happening(Stopped, Starting, None), None);
        assert_eq!(happening(Running, Stopping, None), None);
    }

    #[test]
    fn crashes_and_failed_starts_carry_the_reason() {
        use VmState::*;
        let reason = "QEMU exited unexpectedly";
        assert_eq!(happening(Running, Crashed, Some(reason)), Some(EventKind::VmCrashed { reason: reason.into() }));
        assert_eq!(
            happening(Starting, Stopped, Some("no such kernel")),
            Some(EventKind::VmStartFailed { reason: "no such kernel".into() })
        );
        assert_eq!(
            happening(Starting, Saved, None),
            Some(EventKind::VmStartFailed { reason: "no reason recorded".into() })
        );
    }

    #[test]
    fn migrations_speak_for_themselves() {
        use VmState::*;
        assert_eq!(happening(Running, Migrating, None), None);
        assert_eq!(happening(Migrating, Running, None), None);
        assert_eq!(happening(Incoming, Running, None), None);
        assert_eq!(happening(Migrating, Crashed, Some("gone")), Some(EventKind::VmCrashed { reason: "gone".into() }));
    }
}
