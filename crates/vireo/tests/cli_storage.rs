//! The real `vireo` binary on storage commands that fail before any daemon is asked:
//! one `error:` line naming the problem, exit code 1.

mod cli_support;

use cli_support::{local_error, socket, vireo};

#[test]
fn bad_volume_refs_are_refused_before_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("golden.raw");
    std::fs::write(&image, b"").unwrap();
    let image = image.to_str().unwrap();
    let cases: [(&[&str], &str); 9] = [
        (&["volume", "create", "root.qcow2", "--size", "1GiB"], "error: 'root.qcow2' is not of the form POOL/NAME"),
        (&["volume", "create", "my pool/root", "--size", "1GiB"], "error: pool name 'my pool' contains ' '"),
        (&["volume", "show", "default/../etc"], "error: volume name '../etc' must not start with '.'"),
        (&["volume", "delete", "default/a/b"], "error: volume name 'a/b' contains '/'"),
        (&["volume", "resize", "/x", "--size", "1G"], "error: pool name must not be empty"),
        (&["volume", "import", "default/", image], "error: volume name must not be empty"),
        (&["volume", "clone", "default/a", "b"], "error: 'b' is not of the form POOL/NAME"),
        (&["vm", "disk", "detach", "web1", "default/.x"], "error: volume name '.x' must not start with '.'"),
        (&["vm", "disk", "attach", "web1", "default/.x"], "error: disk 'default/.x': volume name '.x'"),
    ];
    for (args, expected) in cases {
        let line = local_error(dir.path(), args);
        assert!(line.starts_with(expected), "{args:?}: {line}");
    }
}

#[test]
fn bad_sizes_name_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    for args in
        [&["volume", "create", "default/a", "--size", "lots"][..], &["volume", "resize", "default/a", "--size", "lots"]]
    {
        let line = local_error(dir.path(), args);
        assert!(line.starts_with("error: --size: 'lots' is not a number"), "{line}");
    }
    let line = local_error(dir.path(), &["volume", "create", "default/a", "--size", "5XB"]);
    assert!(line.starts_with("error: --size: unknown unit 'XB'"), "{line}");
}

#[test]
fn bad_names_and_options_are_refused_locally() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 5] = [
        (&["pool", "create", "my pool", "--path", "/p"], "error: pool name 'my pool' contains ' '"),
        (&["volume", "list", "bad.pool"], "error: pool name 'bad.pool' contains '.'"),
        (&["snapshot", "create", "web1", "before.upgrade"], "error: snapshot name 'before.upgrade' contains '.'"),
        (
            &["vm", "disk", "attach", "web1", "default/d,colour=red"],
            "error: disk 'default/d,colour=red': unknown option",
        ),
        (&["vm", "disk", "attach", "web1", "default/d,format=raw"], "error: disk 'default/d,format=raw': a volume has"),
    ];
    for (args, expected) in cases {
        let line = local_error(dir.path(), args);
        assert!(line.starts_with(expected), "{args:?}: {line}");
    }
}

#[test]
fn a_missing_image_is_refused_locally() {
    let dir = tempfile::tempdir().unwrap();
    let cwd_relative = local_error(dir.path(), &["volume", "import", "default/root", "no-such.img"]);
    let expected = std::env::current_dir().unwrap().join("no-such.img");
    assert_eq!(cwd_relative, format!("error: {} does not exist", expected.display()));
    let line = local_error(dir.path(), &["vm", "disk", "attach", "web1", "/no/such.img,readonly=on"]);
    assert!(line.starts_with("error: disk '/no/such.img,readonly=on': /no/such.img does not exist"), "{line}");
}

#[test]
fn good_arguments_reach_for_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("golden.raw");
    std::fs::write(&image, b"").unwrap();
    for args in [
        &["pool", "list"][..],
        &["pool", "create", "default", "--path", "pools/default"],
        &["volume", "create", "default/root.qcow2", "--size", "10GiB"],
        &["volume", "import", "default/root.qcow2", image.to_str().unwrap()],
        &["volume", "list", "-o", "json"],
        &["vm", "disk", "attach", "web1", "default/data.img,readonly=on,cache=none"],
        &["vm", "save", "web1"],
        &["snapshot", "list", "web1"],
    ] {
        let output = vireo(dir.path(), args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(&socket(dir.path())), "{args:?}: should have tried the daemon: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr:?}");
    }
}
