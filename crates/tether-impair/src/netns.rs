//! Named network namespaces (made and removed with `ip netns`) and moving a
//! thread into one and back.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;

use crate::sys;

/// Where `ip netns` keeps its namespaces (one bind-mounted file each).
const NETNS_DIR: &str = "/var/run/netns";

/// Runs `ip ARGS`, turning a failure into an error that says which command
/// failed and what `ip` printed.
pub(crate) fn ip(args: &[&str]) -> io::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("running `ip`: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "`ip {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

/// A named network namespace that exists as long as this value: dropping it
/// (on any path, unwinding included) runs `ip netns del`.
///
/// Deleting the name does not pull anything out of the namespace: the kernel
/// frees it once no thread, socket or device refers to it any more.
#[derive(Debug)]
pub(crate) struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace `name` (`ip netns add`).
    pub(crate) fn add(name: &str) -> io::Result<Netns> {
        ip(&["netns", "add", name])?;
        Ok(Netns {
            name: name.to_owned(),
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's file, for `setns`.
    pub(crate) fn open(&self) -> io::Result<File> {
        File::open(self.path())
    }

    fn path(&self) -> PathBuf {
        PathBuf::from(NETNS_DIR).join(&self.name)
    }

    /// Moves the calling thread into this namespace until the guard drops.
    pub(crate) fn enter(&self) -> io::Result<NetnsGuard> {
        let home = File::open("/proc/thread-self/ns/net")?;
        sys::enter_netns(&self.open()?)?;
        Ok(NetnsGuard {
            home,
            _not_send: std::marker::PhantomData,
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Nothing to do with a failure here: a test that left the namespace
        // behind shows it in `ip netns list`, named after the process.
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// The calling thread is in another network namespace while this lives;
/// dropping it moves the thread back to where it was.
///
/// Sockets keep the namespace they were created in, so a socket made while
/// the guard lives can be used from anywhere afterwards.
#[derive(Debug)]
#[must_use = "the thread goes back to its namespace when the guard drops"]
pub struct NetnsGuard {
    home: File,
    /// The guard belongs to the thread it moved: `!Send`.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        // Going back to a namespace we were in, through a file we hold open,
        // does not fail; if it did, the thread would silently make sockets in
        // the wrong namespace, which must not go unnoticed.
        if let Err(e) = sys::enter_netns(&self.home) {
            if !thread::panicking() {
                panic!("could not return the thread to its network namespace: {e}");
            }
        }
    }
}
