//! Every test that creates devices, runs dnsmasq or loads nftables rules runs
//! in a network namespace of its own: [`in_netns`] runs the body on a fresh
//! thread that first unshares its network namespace (the processes it starts
//! inherit it), so nothing touches the host's interfaces and no packet leaves
//! the namespace. The namespace goes away with the thread and its processes.
#![allow(dead_code)]

use std::future::Future;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use vireo_net::Netlink;

/// Addresses for tests: TEST-NET-1 and TEST-NET-2 (RFC 5737), used only inside
/// the tests' own namespaces.
pub const SUBNET: &str = "192.0.2.0/24";
pub const OTHER_SUBNET: &str = "198.51.100.0/24";

/// Runs `body` in a new network namespace on a current-thread tokio runtime,
/// then checks that none of `names` exists on the host.
pub fn in_netns<F, Fut>(names: &[&str], body: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let host_netns = netns_id();
    let thread = std::thread::spawn(move || {
        nix::sched::unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET): these tests need root");
        assert_ne!(netns_id(), host_netns, "the test thread must be in a namespace of its own");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            // A new namespace has only `lo`, down; up, it has 127.0.0.1.
            Netlink::connect().unwrap().set_up("lo").await.unwrap();
            body().await;
        });
    });
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
    assert_not_on_host(names);
}

/// One more network namespace, for a test that needs several (a guest's, the
/// outside world's). The descriptor keeps it alive; dropping it lets it go.
pub fn new_netns() -> OwnedFd {
    std::thread::spawn(|| {
        nix::sched::unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        OwnedFd::from(std::fs::File::open("/proc/thread-self/ns/net").unwrap())
    })
    .join()
    .unwrap()
}

/// Runs `body` on a thread that enters `netns` (which must be one of the
/// test's own, from [`new_netns`]), on a runtime of its own; waits for it.
pub fn run_in<T, F, Fut>(netns: &OwnedFd, body: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
{
    let netns = netns.try_clone().unwrap();
    let thread = std::thread::spawn(move || {
        nix::sched::setns(&netns, CloneFlags::CLONE_NEWNET).expect("setns(CLONE_NEWNET)");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(body())
    });
    thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// The network namespace of the calling thread, as `net:[inode]`.
fn netns_id() -> PathBuf {
    std::fs::read_link("/proc/thread-self/ns/net").unwrap()
}

/// Fails if any of `names` is a link of the host's (this thread's) namespace.
fn assert_not_on_host(names: &[&str]) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let netlink = Netlink::connect().unwrap();
        for name in names {
            assert!(!netlink.link_exists(name).await.unwrap(), "{name} leaked into the host's namespace");
        }
    });
}

/// SIGKILLs a dnsmasq left running by a failed test (which would keep its
/// namespace alive), if the pid still is that dnsmasq.
pub struct KillOnDrop {
    pub pid: u32,
    pub pid_file: PathBuf,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if is_dnsmasq_of(self.pid, &self.pid_file) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid as i32), nix::sys::signal::SIGKILL);
        }
    }
}

/// Whether `pid` is alive and its command line names `pid_file`.
pub fn is_dnsmasq_of(pid: u32, pid_file: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let wanted = format!("--pid-file={}", pid_file.display());
    cmdline.split(|b| *b == 0).any(|arg| arg == wanted.as_bytes())
}

/// Polls `condition` for up to two seconds.
pub async fn eventually<Fut: Future<Output = bool>>(mut condition: impl FnMut() -> Fut) -> bool {
    for _ in 0..100 {
        if condition().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    false
}
