//! The real `vireo` binary on network commands that fail before any daemon is asked:
//! one `error:` line naming the problem, exit code 1.

mod cli_support;

use cli_support::{local_error, socket, vireo};

#[test]
fn bad_vlans_name_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 3] = [
        (&["net", "create", "up", "--mode", "bridge", "--bridge", "br0", "--vlan", "5000"], "error: --vlan: must be"),
        (&["net", "create", "up", "--mode", "bridge", "--vlan", "5000"], "error: --vlan: must be"),
        (&["net", "create", "up", "--mode", "bridge", "--bridge", "br0", "--vlan", "x"], "error: --vlan: 'x' is not"),
    ];
    for (args, expected) in cases {
        let line = local_error(dir.path(), args);
        assert!(line.starts_with(expected), "{args:?}: {line}");
        assert!(line.contains("4094"), "{args:?}: {line}");
    }
}

#[test]
fn bad_names_and_mode_flags_are_refused_locally() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (&["net", "create", "my lan"], "error: network name 'my lan' contains ' '"),
        (&["net", "show", "a/b"], "error: network name 'a/b' contains '/'"),
        (&["net", "delete", "a.b"], "error: network name 'a.b' contains '.'"),
        (&["net", "create", "up", "--mode", "bridge"], "error: --bridge: a bridge network needs"),
        (&["net", "create", "lan", "--bridge", "br0"], "error: --bridge: only a bridge network"),
        (&["net", "create", "lan", "--mode", "isolated", "--vlan", "10"], "error: --vlan: only the NICs"),
    ];
    for (args, expected) in cases {
        let line = local_error(dir.path(), args);
        assert!(line.starts_with(expected), "{args:?}: {line}");
    }
}

#[test]
fn an_unknown_mode_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = vireo(dir.path(), &["net", "create", "lan", "--mode", "macvtap"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--mode"));
}

#[test]
fn good_arguments_reach_for_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["net", "list"][..],
        &["net", "list", "-o", "json"],
        &["net", "create", "lan", "--subnet", "10.77.1.0/24"],
        &["net", "create", "up", "--mode", "bridge", "--bridge", "br0", "--vlan", "4094"],
        &["net", "show", "lan", "-o", "json"],
        &["net", "delete", "lan"],
    ] {
        let output = vireo(dir.path(), args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(&socket(dir.path())), "{args:?}: should have tried the daemon: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr:?}");
    }
}
