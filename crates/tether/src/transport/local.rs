//! Local (Unix-domain) stream sockets: `unix:/path` and Linux's `unix:@name`.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use socket2::{Domain, SockAddr as OsAddr, Socket};
use tether_proto::SockAddr;

use super::{new_socket, start_connect, OpenError, Stream};

fn os_addr(addr: &SockAddr) -> Result<OsAddr, OpenError> {
    let os = match addr {
        SockAddr::Unix(path) => OsAddr::unix(path),
        SockAddr::Abstract(name) => {
            // The kernel marks an abstract name by a leading NUL byte.
            let mut raw = Vec::with_capacity(name.len() + 1);
            raw.push(0);
            raw.extend_from_slice(name);
            OsAddr::unix(OsStr::from_bytes(&raw))
        }
        SockAddr::Inet(_) => {
            return Err(OpenError::Mismatch("a Local socket needs a unix: address"));
        }
    };
    os.map_err(OpenError::Open)
}

pub(crate) fn bind(addr: &SockAddr) -> Result<Socket, OpenError> {
    let os = os_addr(addr)?;
    let sock = new_socket(Domain::UNIX, None)?;
    if let SockAddr::Unix(path) = addr {
        clear_stale(path).map_err(OpenError::Bind)?;
    }
    sock.bind(&os).map_err(OpenError::Bind)?;
    if let SockAddr::Unix(path) = addr {
        // Who may connect is a question for the directory's permissions, not
        // for the umask of whichever process happened to bind.
        fs::set_permissions(path, fs::Permissions::from_mode(0o666)).map_err(OpenError::Bind)?;
    }
    Ok(sock)
}

pub(crate) fn connect(addr: &SockAddr, bound: Option<Socket>) -> Result<Stream, OpenError> {
    let os = os_addr(addr)?;
    let sock = match bound {
        Some(sock) if sock.domain().ok() == Some(Domain::UNIX) => sock,
        Some(_) => {
            return Err(OpenError::Mismatch(
                "a TCP-bound socket cannot connect to a unix: address",
            ))
        }
        None => new_socket(Domain::UNIX, None)?,
    };
    start_connect(&sock, &os)?;
    Ok(Stream::Local(mio::net::UnixStream::from_std(sock.into())))
}

/// A socket file left by a server that is gone would make bind fail forever, so
/// it is removed; a live server's socket, or any file that is not a socket, is
/// never touched.
fn clear_stale(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a socket; tether never replaces it",
                path.display()
            ),
        ));
    }
    let probe = Socket::new(Domain::UNIX, socket2::Type::STREAM, None)?;
    probe.set_nonblocking(true)?;
    match probe.connect(&OsAddr::unix(path)?) {
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => fs::remove_file(path),
        Err(e) if e.raw_os_error() != Some(libc::EAGAIN) => Err(e),
        // Connected, or a full backlog: somebody is listening there.
        _ => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("a server is listening at {}", path.display()),
        )),
    }
}

/// Remove the socket file a closed listener made, if it is still a socket.
pub(crate) fn remove_socket_file(path: &Path) {
    if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        let _ = fs::remove_file(path);
    }
}
