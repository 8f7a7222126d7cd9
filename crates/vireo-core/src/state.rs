//! The VM lifecycle state machine.
//!
//! ```text
//! stopped ──start──▶ starting ──▶ running ⇄ paused
//!    ▲                  │            │        │
//!    │                  ▼            ▼        ▼
//!    └──────────────── stopping ◀────┴────────┘
//! crashed (QEMU died unexpectedly) ──start──▶ starting
//! ```

use std::fmt;

pub use vireo_api::VmState;

/// What a user (or the daemon itself) asks of a VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
    ForceStop,
    Pause,
    Resume,
    Restart,
    Delete,
    AttachConsole,
    /// Attach to the VNC server of a VM with a display.
    AttachDisplay,
    Save,
    Restore,
    Snapshot,
    RevertSnapshot,
    ChangeDisks,
    ChangeNics,
    Migrate,
    /// Run a VM whose incoming migration has completed.
    TakeOver,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::ForceStop => "force stop",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Restart => "restart",
            Action::Delete => "delete",
            Action::AttachConsole => "attach to the console of",
            Action::AttachDisplay => "attach to the display of",
            Action::Save => "save",
            Action::Restore => "restore",
            Action::Snapshot => "snapshot",
            Action::RevertSnapshot => "revert",
            Action::ChangeDisks => "change the disks of",
            Action::ChangeNics => "change the NICs of",
            Action::Migrate => "migrate",
            Action::TakeOver => "take over",
        }
    }

    /// States from which the action may begin.
    fn allowed_from(self) -> &'static [VmState] {
        use VmState::*;
        match self {
            // Starting a saved VM restores it.
            Action::Start => &[Stopped, Crashed, Saved],
            Action::Stop => &[Running, Paused],
            // A forced stop also rescues a VM whose start, graceful stop or migration hangs.
            Action::ForceStop => &[Starting, Running, Paused, Stopping, Migrating],
            Action::Pause => &[Running],
            Action::Resume => &[Paused],
            Action::Restart => &[Running, Paused],
            Action::Delete => &[Stopped, Crashed, Saved],
            Action::AttachConsole | Action::AttachDisplay => &[Starting, Running, Paused, Stopping, Migrating],
            Action::Save => &[Running, Paused],
            Action::Restore => &[Saved],
            // A saved VM's memory refers to its disks as they are: no snapshots, reverts or disk changes.
            Action::Snapshot | Action::RevertSnapshot => &[Stopped, Crashed, Running, Paused],
            Action::ChangeDisks | Action::ChangeNics => &[Stopped, Crashed, Running, Paused],
            Action::Migrate => &[Running, Paused],
            Action::TakeOver => &[Incoming],
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An action that does not fit the VM's state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} a VM that is {state}")]
pub struct InvalidTransition {
    pub action: Action,
    pub state: VmState,
}

/// Checks that `action` may begin while the VM is in `state`.
pub fn check_action(state: VmState, action: Action) -> Result<(), InvalidTransition> {
    if action.allowed_from().contains(&state) { Ok(()) } else { Err(InvalidTransition { action, state }) }
}

/// Whether a QEMU process is expected to exist in this state.
pub fn has_process(state: VmState) -> bool {
    matches!(
        state,
        VmState::Starting
            | VmState::Running
            | VmState::Paused
            | VmState::Stopping
            | VmState::Migrating
            | VmState::Incoming
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use VmState::*;

    #[test]
    fn start_only_from_stopped_or_crashed() {
        assert!(check_action(Stopped, Action::Start).is_ok());
        assert!(check_action(Crashed, Action::Start).is_ok());
        for state in [Starting, Running, Paused, Stopping] {
            assert_eq!(check_action(state, Action::Start), Err(InvalidTransition { action: Action::Start, state }));
        }
    }

    #[test]
    fn delete_refused_while_a_process_exists() {
        for state in [Starting, Running, Paused, Stopping] {
            assert!(check_action(state, Action::Delete).is_err());
            assert!(has_process(state));
        }
        assert!(check_action(Stopped, Action::Delete).is_ok());
    }

    #[test]
    fn pause_resume_pair_up() {
        assert!(check_action(Running, Action::Pause).is_ok());
        assert!(check_action(Paused, Action::Pause).is_err());
        assert!(check_action(Paused, Action::Resume).is_ok());
        assert!(check_action(Running, Action::Resume).is_err());
    }

    #[test]
    fn force_stop_rescues_a_stuck_stop() {
        assert!(check_action(Stopping, Action::ForceStop).is_ok());
        assert!(check_action(Stopping, Action::Stop).is_err());
        assert!(check_action(Stopped, Action::ForceStop).is_err());
    }

    #[test]
    fn saved_vms_restore_or_go() {
        assert!(check_action(Saved, Action::Start).is_ok());
        assert!(check_action(Saved, Action::Restore).is_ok());
        assert!(check_action(Saved, Action::Delete).is_ok());
        assert!(check_action(Saved, Action::Snapshot).is_err());
        assert!(check_action(Saved, Action::ChangeDisks).is_err());
        assert!(check_action(Stopped, Action::Save).is_err());
        assert!(check_action(Running, Action::Save).is_ok());
        assert!(!has_process(Saved));
    }

    #[test]
    fn a_migrating_vm_can_only_be_watched_or_killed() {
        assert!(check_action(Running, Action::Migrate).is_ok());
        assert!(check_action(Paused, Action::Migrate).is_ok());
        assert!(check_action(Stopped, Action::Migrate).is_err());
        for action in
            [Action::Stop, Action::Pause, Action::Save, Action::Snapshot, Action::ChangeDisks, Action::Migrate]
        {
            assert!(check_action(Migrating, action).is_err(), "{action}");
        }
        assert!(check_action(Migrating, Action::ForceStop).is_ok());
        assert!(check_action(Migrating, Action::AttachConsole).is_ok());
        assert!(check_action(Migrating, Action::AttachDisplay).is_ok());
        // A VM being received belongs to the migration until it runs.
        for action in [Action::Start, Action::ForceStop, Action::Delete, Action::AttachConsole, Action::AttachDisplay] {
            assert!(check_action(Incoming, action).is_err(), "{action}");
        }
        assert!(has_process(Migrating) && has_process(Incoming));
    }

    #[test]
    fn error_message_names_action_and_state() {
        let err = check_action(Running, Action::Delete).unwrap_err();
        assert_eq!(err.to_string(), "cannot delete a VM that is running");
    }
}
