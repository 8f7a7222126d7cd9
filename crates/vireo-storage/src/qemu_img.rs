//! Typed wrappers over the `qemu-img` binary.
//!
//! Each argv is built by a pure function (unit-tested without qemu-img); the
//! async functions run it without a shell and read its machine-readable
//! output (`--output=json`, and the `(NN.NN/100%)` progress of `convert -p`).

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;
use vireo_api::DiskFormat;

use crate::error::StorageError;

const QEMU_IMG: &str = "qemu-img";
const QEMU_IMG_ENV: &str = "VIREO_QEMU_IMG";

/// What `qemu-img info --output=json` says about one image (qemu-img 7.2 field names).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ImageInfo {
    /// The image as qemu-img opened it: the path given for the top image, the
    /// resolved backing path for the images below it.
    pub filename: PathBuf,
    /// `raw`, `qcow2`, or any other format qemu-img knows (`vmdk`, `vpc`, …).
    pub format: String,
    /// Size the guest sees.
    pub virtual_size: u64,
    /// Bytes allocated on the host (st_blocks × 512 for a file).
    pub actual_size: Option<u64>,
    /// The backing file exactly as recorded in the image (may be relative).
    pub backing_filename: Option<String>,
    /// The backing file resolved against the image's directory.
    pub full_backing_filename: Option<PathBuf>,
    #[serde(rename = "backing-filename-format")]
    pub backing_format: Option<String>,
    /// Internal snapshots (qcow2); qemu-img omits the key when there are none.
    #[serde(default)]
    pub snapshots: Vec<SnapshotInfo>,
    #[serde(default)]
    pub dirty_flag: bool,
}

/// One internal snapshot of a qcow2 image.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SnapshotInfo {
    /// qcow2's own numbering ("1", "2", …); not the tag.
    pub id: String,
    /// The tag given at creation.
    pub name: String,
    /// Bytes of saved VM state (0 for the disk-only snapshots qemu-img takes).
    #[serde(default)]
    pub vm_state_size: u64,
    #[serde(default)]
    pub date_sec: i64,
}

/// `$VIREO_QEMU_IMG`, or `qemu-img` found in `PATH`.
pub fn find_binary() -> Result<PathBuf, StorageError> {
    if let Some(path) = std::env::var_os(QEMU_IMG_ENV) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(StorageError::QemuImgNotFound { reason: format!("{QEMU_IMG_ENV}={} is not a file", path.display()) })
        };
    }
    let in_path = std::env::var_os("PATH")
        .and_then(|dirs| std::env::split_paths(&dirs).map(|dir| dir.join(QEMU_IMG)).find(|path| path.is_file()));
    in_path.ok_or_else(|| StorageError::QemuImgNotFound { reason: format!("{QEMU_IMG} is not in PATH") })
}

// ---- argv builders (pure) ----

/// qemu-img reads `proto:rest` as a protocol and `-x` as an option: a relative
/// path gets a `./` so it always names a file.
fn path_arg(path: &Path) -> OsString {
    if path.is_absolute() { path.into() } else { Path::new(".").join(path).into() }
}

fn args<const N: usize>(fixed: [&str; N]) -> Vec<OsString> {
    fixed.iter().map(OsString::from).collect()
}

/// `info` of the image alone. `-U` (force-share) lets it read an image a running VM holds open.
pub fn info_args(path: &Path, format: Option<DiskFormat>) -> Vec<OsString> {
    let mut argv = args(["info", "--output=json", "-U"]);
    if let Some(format) = format {
        argv.extend(args(["-f", format.as_str()]));
    }
    argv.push(path_arg(path));
    argv
}

/// `info` of the image and every image below it: a JSON array, nearest first.
pub fn info_chain_args(path: &Path, format: Option<DiskFormat>) -> Vec<OsString> {
    let mut argv = args(["info", "--output=json", "-U", "--backing-chain"]);
    if let Some(format) = format {
        argv.extend(args(["-f", format.as_str()]));
    }
    argv.push(path_arg(path));
    argv
}

pub fn create_args(path: &Path, format: DiskFormat, size: u64) -> Vec<OsString> {
    let mut argv = args(["create", "-q", "-f", format.as_str()]);
    argv.push(path_arg(path));
    argv.push(size.to_string().into());
    argv
}

/// A qcow2 overlay of `backing`, of the same virtual size. The backing path is
/// recorded in the overlay as given, so it should be absolute.
pub fn create_overlay_args(path: &Path, backing: &Path, backing_format: DiskFormat) -> Vec<OsString> {
    let mut argv = args(["create", "-q", "-f", "qcow2", "-b"]);
    argv.push(path_arg(backing));
    argv.extend(args(["-F", backing_format.as_str()]));
    argv.push(path_arg(path));
    argv
}

/// `convert -p`: a full, self-contained copy (backing chains are flattened,
/// zeroes stay sparse). Without `source_format` qemu-img probes the source.
pub fn convert_args(
    source: &Path,
    source_format: Option<DiskFormat>,
    target: &Path,
    target_format: DiskFormat,
) -> Vec<OsString> {
    let mut argv = args(["convert", "-p"]);
    if let Some(format) = source_format {
        argv.extend(args(["-f", format.as_str()]));
    }
    argv.extend(args(["-O", target_format.as_str()]));
    argv.push(path_arg(source));
    argv.push(path_arg(target));
    argv
}

/// `resize`; qemu-img refuses to shrink without `--shrink`.
pub fn resize_args(path: &Path, format: DiskFormat, size: u64, shrink: bool) -> Vec<OsString> {
    let mut argv = args(["resize", "-q", "-f", format.as_str()]);
    if shrink {
        argv.push("--shrink".into());
    }
    argv.push(path_arg(path));
    argv.push(size.to_string().into());
    argv
}

/// What `qemu-img snapshot` does. It takes no `-f` (qemu-img 7.2 rejects it):
/// the functions below check the image is qcow2 with `info -f qcow2` first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotOp<'a> {
    Create {
        tag: &'a str,
    },
    /// By qcow2 snapshot id: `-a` looks ids up before tags (see `snapshot_apply`).
    Apply {
        id: &'a str,
    },
    /// By tag: `-d` looks up tags only.
    Delete {
        tag: &'a str,
    },
}

pub fn snapshot_args(op: SnapshotOp<'_>, path: &Path) -> Vec<OsString> {
    let (flag, value) = match op {
        SnapshotOp::Create { tag } => ("-c", tag),
        SnapshotOp::Apply { id } => ("-a", id),
        SnapshotOp::Delete { tag } => ("-d", tag),
    };
    let mut argv = args(["snapshot", "-q", flag, value]);
    argv.push(path_arg(path));
    argv
}

// ---- output parsers (pure) ----

/// `qemu-img info --output=json` without `--backing-chain`: one object.
pub fn parse_info(json: &[u8]) -> Result<ImageInfo, serde_json::Error> {
    serde_json::from_slice(json)
}

/// `qemu-img info --output=json --backing-chain`: an array, nearest first.
pub fn parse_info_chain(json: &[u8]) -> Result<Vec<ImageInfo>, serde_json::Error> {
    serde_json::from_slice(json)
}

/// One progress update of `qemu-img convert -p`, e.g. `    (12.50/100%)`, as a fraction.
pub fn parse_progress(segment: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(segment).ok()?.trim();
    let percent: f64 = text.strip_prefix('(')?.strip_suffix("/100%)")?.parse().ok()?;
    percent.is_finite().then(|| (percent / 100.0).clamp(0.0, 1.0))
}

/// qemu-img's stderr on one line without its `qemu-img: ` prefixes, or the exit
/// status when it printed nothing (e.g. killed by a signal).
pub fn describe_failure(status: ExitStatus, stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(|line| line.trim())
        .map(|line| line.strip_prefix("qemu-img: ").unwrap_or(line))
        .filter(|line| !line.is_empty())
        .collect();
    if lines.is_empty() { format!("qemu-img {status}") } else { lines.join("; ") }
}

/// Passes on progress fractions that move forward, so callers see a monotonic
/// sequence (qemu-img prints 100% twice, for one).
struct ProgressReporter<'a> {
    last: Option<f64>,
    callback: &'a (dyn Fn(f64) + Send + Sync),
}

impl<'a> ProgressReporter<'a> {
    fn new(callback: &'a (dyn Fn(f64) + Send + Sync)) -> Self {
        ProgressReporter { last: None, callback }
    }

    fn report(&mut self, fraction: f64) {
        if self.last.is_none_or(|last| fraction > last) {
            self.last = Some(fraction);
            (self.callback)(fraction);
        }
    }
}

// ---- running qemu-img ----

fn command(binary: &Path, argv: &[OsString]) -> Command {
    tracing::debug!(binary = %binary.display(), ?argv, "running qemu-img");
    let mut command = Command::new(binary);
    // kill_on_drop: a dropped future (a cancelled operation) must not leave qemu-img writing.
    command.args(argv).stdin(Stdio::null()).kill_on_drop(true);
    command
}

/// Runs qemu-img to completion and returns its stdout; on failure, says it could not `action` `path`.
async fn run(action: &'static str, path: &Path, argv: Vec<OsString>) -> Result<Vec<u8>, StorageError> {
    let binary = find_binary()?;
    let output = command(&binary, &argv).output().await.map_err(|source| StorageError::Spawn { binary, source })?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(StorageError::QemuImg {
            action,
            path: path.to_path_buf(),
            stderr: describe_failure(output.status, &output.stderr),
        })
    }
}

fn bad_info(path: &Path) -> impl FnOnce(serde_json::Error) -> StorageError + '_ {
    move |err| StorageError::InfoOutput { path: path.to_path_buf(), reason: err.to_string() }
}

/// The image alone, its format probed (a missing backing file does not matter).
pub async fn info(path: &Path) -> Result<ImageInfo, StorageError> {
    let json = run("read", path, info_args(path, None)).await?;
    parse_info(&json).map_err(bad_info(path))
}

/// The image and its whole backing chain, nearest first. Fails when a backing file is missing.
///
/// Give `format` whenever it is known: a probed raw image whose guest wrote a
/// qcow2 header into its first sector would be reported as qcow2 (and its
/// "backing file" opened).
pub async fn info_chain(path: &Path, format: Option<DiskFormat>) -> Result<Vec<ImageInfo>, StorageError> {
    let json = run("read", path, info_chain_args(path, format)).await?;
    let chain = parse_info_chain(&json).map_err(bad_info(path))?;
    if chain.is_empty() {
        return Err(StorageError::InfoOutput { path: path.to_path_buf(), reason: "empty backing chain".into() });
    }
    Ok(chain)
}

/// A new image at `path` (an existing file is truncated and keeps its mode).
pub async fn create(path: &Path, format: DiskFormat, size: u64) -> Result<(), StorageError> {
    run("create", path, create_args(path, format, size)).await.map(drop)
}

/// A qcow2 overlay at `path` backed by `backing`: O(1) in the size of the base.
pub async fn create_overlay(path: &Path, backing: &Path, backing_format: DiskFormat) -> Result<(), StorageError> {
    run("create", path, create_overlay_args(path, backing, backing_format)).await.map(drop)
}

/// Copies `source` into a new image at `target`, calling `progress` with
/// fractions from 0.0 that rise to 1.0 on success.
pub async fn convert(
    source: &Path,
    source_format: Option<DiskFormat>,
    target: &Path,
    target_format: DiskFormat,
    progress: &(dyn Fn(f64) + Send + Sync),
) -> Result<(), StorageError> {
    let binary = find_binary()?;
    let argv = convert_args(source, source_format, target, target_format);
    let mut child = command(&binary, &argv)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| StorageError::Spawn { binary: binary.clone(), source })?;
    let (Some(stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(StorageError::Spawn { binary, source: io::Error::other("qemu-img's output is not piped") });
    };
    let mut reporter = ProgressReporter::new(progress);
    let read_progress = async {
        // Progress updates end in '\r' (the last line in "\r\n").
        let mut stdout = BufReader::new(stdout);
        let mut segment = Vec::new();
        loop {
            segment.clear();
            if stdout.read_until(b'\r', &mut segment).await? == 0 {
                return Ok::<_, io::Error>(());
            }
            if let Some(fraction) = parse_progress(&segment) {
                reporter.report(fraction);
            }
        }
    };
    let read_stderr = async {
        let mut text = Vec::new();
        stderr.read_to_end(&mut text).await.map(|_| text)
    };
    let (progress_read, stderr_read) = tokio::join!(read_progress, read_stderr);
    let status = child.wait().await.map_err(StorageError::io("wait for", &binary))?;
    let stderr = stderr_read.map_err(StorageError::io("read the output of", &binary))?;
    if !status.success() {
        let stderr = describe_failure(status, &stderr);
        return Err(StorageError::QemuImg { action: "convert", path: source.to_path_buf(), stderr });
    }
    progress_read.map_err(StorageError::io("read the output of", &binary))?;
    reporter.report(1.0);
    Ok(())
}

/// Resizes in place; `shrink` must be set when `size` is below the current size.
pub async fn resize(path: &Path, format: DiskFormat, size: u64, shrink: bool) -> Result<(), StorageError> {
    run("resize", path, resize_args(path, format, size, shrink)).await.map(drop)
}

fn check_tag(tag: &str) -> Result<(), StorageError> {
    if tag.is_empty() {
        return Err(StorageError::InvalidSnapshotTag { tag: tag.into(), reason: "must not be empty" });
    }
    Ok(())
}

/// The internal snapshots of a qcow2 image (fails on any other format).
pub async fn snapshots(path: &Path) -> Result<Vec<SnapshotInfo>, StorageError> {
    let json = run("read", path, info_args(path, Some(DiskFormat::Qcow2))).await?;
    Ok(parse_info(&json).map_err(bad_info(path))?.snapshots)
}

/// Tags of the internal snapshots of a qcow2 image, oldest first.
pub async fn snapshot_list(path: &Path) -> Result<Vec<String>, StorageError> {
    Ok(snapshots(path).await?.into_iter().map(|snapshot| snapshot.name).collect())
}

/// Takes an internal snapshot of a qcow2 image no VM has open. qcow2 accepts
/// duplicate tags; this refuses them, so a tag names one snapshot.
pub async fn snapshot_create(path: &Path, tag: &str) -> Result<(), StorageError> {
    check_tag(tag)?;
    if snapshots(path).await?.iter().any(|snapshot| snapshot.name == tag) {
        return Err(StorageError::SnapshotExists { path: path.to_path_buf(), tag: tag.into() });
    }
    run("create a snapshot in", path, snapshot_args(SnapshotOp::Create { tag }, path)).await.map(drop)
}

/// Returns the image to the snapshot `tag`.
pub async fn snapshot_apply(path: &Path, tag: &str) -> Result<(), StorageError> {
    check_tag(tag)?;
    // `qemu-img snapshot -a X` applies the snapshot whose *id* is X if there is
    // one, and only then the one tagged X: with tag "1" it would apply snapshot
    // id 1, whatever its tag. Looking the tag up and applying by id is exact.
    let snapshots = snapshots(path).await?;
    let Some(snapshot) = snapshots.iter().find(|snapshot| snapshot.name == tag) else {
        return Err(StorageError::SnapshotNotFound { path: path.to_path_buf(), tag: tag.into() });
    };
    run("apply a snapshot to", path, snapshot_args(SnapshotOp::Apply { id: &snapshot.id }, path)).await.map(drop)
}

pub async fn snapshot_delete(path: &Path, tag: &str) -> Result<(), StorageError> {
    check_tag(tag)?;
    if !snapshots(path).await?.iter().any(|snapshot| snapshot.name == tag) {
        return Err(StorageError::SnapshotNotFound { path: path.to_path_buf(), tag: tag.into() });
    }
    run("delete a snapshot from", path, snapshot_args(SnapshotOp::Delete { tag }, path)).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(argv: Vec<OsString>) -> Vec<String> {
        argv.into_iter().map(|arg| arg.into_string().unwrap()).collect()
    }

    #[test]
    fn info_argv_force_shares_and_takes_the_format_when_known() {
        assert_eq!(strings(info_args(Path::new("/p/a"), None)), ["info", "--output=json", "-U", "/p/a"]);
        assert_eq!(
            strings(info_chain_args(Path::new("/p/a"), Some(DiskFormat::Raw))),
            ["info", "--output=json", "-U", "--backing-chain", "-f", "raw", "/p/a"]
        );
    }

    #[test]
    fn relative_paths_never_read_as_options_or_protocols() {
        assert_eq!(strings(info_args(Path::new("-x"), None)).last().unwrap(), "./-x");
        assert_eq!(strings(info_args(Path::new("nbd:host:10809"), None)).last().unwrap(), "./nbd:host:10809");
        assert_eq!(strings(info_args(Path::new("/abs/nbd:x"), None)).last().unwrap(), "/abs/nbd:x");
    }

    #[test]
    fn create_argv() {
        assert_eq!(
            strings(create_args(Path::new("/p/v"), DiskFormat::Qcow2, 1 << 30)),
            ["create", "-q", "-f", "qcow2", "/p/v", "1073741824"]
        );
        assert_eq!(
            strings(create_overlay_args(Path::new("/p/clone"), Path::new("/q/base"), DiskFormat::Raw)),
            ["create", "-q", "-f", "qcow2", "-b", "/q/base", "-F", "raw", "/p/clone"]
        );
    }

    #[test]
    fn convert_argv_probes_only_without_a_source_format() {
        assert_eq!(
            strings(convert_args(Path::new("/src.img"), None, Path::new("/p/v"), DiskFormat::Qcow2)),
            ["convert", "-p", "-O", "qcow2", "/src.img", "/p/v"]
        );
        assert_eq!(
            strings(convert_args(Path::new("/q/b"), Some(DiskFormat::Raw), Path::new("/p/v"), DiskFormat::Raw)),
            ["convert", "-p", "-f", "raw", "-O", "raw", "/q/b", "/p/v"]
        );
    }

    #[test]
    fn resize_argv() {
        assert_eq!(
            strings(resize_args(Path::new("/p/v"), DiskFormat::Raw, 2048, false)),
            ["resize", "-q", "-f", "raw", "/p/v", "2048"]
        );
        assert_eq!(
            strings(resize_args(Path::new("/p/v"), DiskFormat::Qcow2, 512, true)),
            ["resize", "-q", "-f", "qcow2", "--shrink", "/p/v", "512"]
        );
    }

    #[test]
    fn snapshot_argv() {
        let path = Path::new("/p/v");
        assert_eq!(
            strings(snapshot_args(SnapshotOp::Create { tag: "-odd" }, path)),
            ["snapshot", "-q", "-c", "-odd", "/p/v"]
        );
        assert_eq!(strings(snapshot_args(SnapshotOp::Apply { id: "3" }, path))[2..4], ["-a", "3"]);
        assert_eq!(strings(snapshot_args(SnapshotOp::Delete { tag: "t" }, path))[2..4], ["-d", "t"]);
    }

    /// Captured from qemu-img 7.2.22: `info --output=json --backing-chain -U` of an overlay with a snapshot.
    const CHAIN_JSON: &str = r#"[
    {
        "backing-filename-format": "qcow2",
        "snapshots": [
            {
                "icount": 0, "vm-clock-nsec": 0, "name": "snap1", "date-sec": 1795308300,
                "date-nsec": 359794000, "vm-clock-sec": 0, "id": "1", "vm-state-size": 0
            }
        ],
        "virtual-size": 1073741824,
        "filename": "ov.qcow2",
        "cluster-size": 65536,
        "format": "qcow2",
        "actual-size": 208896,
        "format-specific": {"type": "qcow2", "data": {"compat": "1.1", "corrupt": false}},
        "full-backing-filename": "/tmp/qi/base.qcow2",
        "backing-filename": "base.qcow2",
        "dirty-flag": false
    },
    {
        "virtual-size": 1073741824,
        "filename": "/tmp/qi/base.qcow2",
        "cluster-size": 65536,
        "format": "qcow2",
        "actual-size": 200704,
        "dirty-flag": false
    }
]"#;

    #[test]
    fn parses_a_backing_chain() {
        let chain = parse_info_chain(CHAIN_JSON.as_bytes()).unwrap();
        assert_eq!(chain.len(), 2);
        let top = &chain[0];
        assert_eq!(top.format, "qcow2");
        assert_eq!(top.virtual_size, 1 << 30);
        assert_eq!(top.actual_size, Some(208896));
        assert_eq!(top.backing_filename.as_deref(), Some("base.qcow2"));
        assert_eq!(top.full_backing_filename.as_deref(), Some(Path::new("/tmp/qi/base.qcow2")));
        assert_eq!(top.backing_format.as_deref(), Some("qcow2"));
        assert_eq!(top.snapshots.len(), 1);
        assert_eq!((top.snapshots[0].id.as_str(), top.snapshots[0].name.as_str()), ("1", "snap1"));
        assert_eq!(chain[1].filename, Path::new("/tmp/qi/base.qcow2"));
        assert!(chain[1].snapshots.is_empty() && chain[1].backing_filename.is_none());
    }

    #[test]
    fn parses_a_raw_image_without_optional_keys() {
        let json = br#"{"virtual-size": 1048576, "filename": "r.raw", "format": "raw", "dirty-flag": false}"#;
        let info = parse_info(json).unwrap();
        assert_eq!((info.format.as_str(), info.virtual_size, info.actual_size), ("raw", 1048576, None));
        assert!(info.snapshots.is_empty());
    }

    #[test]
    fn parses_convert_progress() {
        assert_eq!(parse_progress(b"    (0.00/100%)\r"), Some(0.0));
        assert_eq!(parse_progress(b"    (12.50/100%)\r"), Some(0.125));
        assert_eq!(parse_progress(b"    (100.00/100%)\r"), Some(1.0));
        assert_eq!(parse_progress(b"\n"), None);
        assert_eq!(parse_progress(b"Formatting 'x', fmt=raw"), None);
    }

    #[test]
    fn progress_reporter_is_monotonic() {
        let seen = std::sync::Mutex::new(Vec::new());
        let callback = |fraction: f64| seen.lock().unwrap().push(fraction);
        let mut reporter = ProgressReporter::new(&callback);
        for fraction in [0.0, 0.5, 0.25, 1.0, 1.0] {
            reporter.report(fraction);
        }
        assert_eq!(*seen.lock().unwrap(), [0.0, 0.5, 1.0]);
    }

    #[test]
    fn failure_text_drops_the_program_prefix() {
        use std::os::unix::process::ExitStatusExt;
        let stderr = b"qemu-img: Could not open 'x': No such file or directory\n";
        assert_eq!(
            describe_failure(ExitStatus::from_raw(256), stderr),
            "Could not open 'x': No such file or directory"
        );
        assert_eq!(describe_failure(ExitStatus::from_raw(9), b""), "qemu-img signal: 9 (SIGKILL)");
    }
}
