//! `listen --http DIR`: the files under DIR over HTTP/1.1, on the library's
//! HTTP mode. The layer parses requests and ends each connection; this user
//! maps a request's target to a file under DIR and answers with it.
//!
//! A target's path is percent-decoded (its query and fragment dropped), split
//! on `/`, and refused when a segment is `..` (403) or the decoding is bad or
//! yields a NUL (400). The file found is canonicalized and must lie under the
//! canonical DIR (403 otherwise: a symlink pointing outside). A directory
//! serves its `index.html`; there are no listings.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use tether::{Closed, Cx, Request, Response, SocketId, SocketUser, State, TlsInfo};

use crate::app::App;
use crate::report::{ev_accepted, ev_closed, ev_state, ev_tls, events, warn};
use crate::signals;

/// The size of one part of a streamed file; a file up to this size is sent
/// in one response.
const PART: usize = 64 * 1024;

/// One connection of `listen --http`.
#[derive(Debug, Default)]
pub(crate) struct Files {
    /// The file whose body is being sent, part by part.
    stream: Option<Stream>,
}

/// A file being streamed: a part goes out at each `on_sent`.
#[derive(Debug)]
struct Stream {
    file: File,
    /// Body bytes still to send.
    left: u64,
    /// Body bytes sent so far.
    sent: u64,
    method: String,
    target: String,
}

/// What a request is answered with.
#[derive(Debug)]
enum Answer {
    /// A status of its own (an error), with a short text body.
    Status(u16),
    /// A regular file under DIR.
    File(PathBuf),
}

impl SocketUser<App> for Files {
    fn on_accepted(&mut self, cx: &mut Cx<App>, s: SocketId) {
        ev_accepted(cx, s);
        if let Some(linger) = cx.shared().set.linger {
            let _ = cx.set_linger(s, linger);
        }
        // No recv: in HTTP mode the layer reads.
        signals::opened(cx, s);
    }

    fn on_state(&mut self, cx: &mut Cx<App>, s: SocketId, from: State, to: State) {
        ev_state(cx, s, from, to);
    }

    fn on_tls_ready(&mut self, cx: &mut Cx<App>, s: SocketId, info: &TlsInfo) {
        ev_tls(cx, s, info);
    }

    fn on_request(&mut self, cx: &mut Cx<App>, s: SocketId, r: &Request) {
        let Some(root) = cx.shared().set.http.as_ref().map(|h| h.root.clone()) else {
            return;
        };
        let head = r.method == "HEAD";
        let answer = if r.method == "GET" || head {
            resolve(&root, &r.target)
        } else {
            Answer::Status(405)
        };
        let path = match answer {
            Answer::Status(status) => return error(cx, s, r, status),
            Answer::File(path) => path,
        };
        let (mut file, len) = match File::open(&path).and_then(|f| {
            let len = f.metadata()?.len();
            Ok((f, len))
        }) {
            Ok(opened) => opened,
            Err(e) => return error(cx, s, r, io_status(&e)),
        };
        let response = Response::new(200).header("Content-Type", content_type(&path));
        if len <= PART as u64 {
            let mut body = Vec::with_capacity(len as usize);
            if file.read_to_end(&mut body).is_err() {
                return error(cx, s, r, 500);
            }
            let bytes = if head { 0 } else { body.len() as u64 };
            if cx.respond(s, response.body(body)).is_ok() {
                request_event(cx, s, &r.method, &r.target, 200, bytes);
            }
            return;
        }
        // HEAD: the same head, and the layer sends no body (nor expects one).
        if cx.respond(s, response.streamed(len)).is_err() {
            return;
        }
        if head {
            request_event(cx, s, &r.method, &r.target, 200, 0);
            return;
        }
        // The body follows part by part, one at each on_sent (the first
        // once the head is out): a big file is never read whole.
        self.stream = Some(Stream {
            file,
            left: len,
            sent: 0,
            method: r.method.clone(),
            target: r.target.clone(),
        });
    }

    fn on_sent(&mut self, cx: &mut Cx<App>, s: SocketId) {
        let Some(st) = self.stream.as_mut() else {
            return;
        };
        let want = st.left.min(PART as u64) as usize;
        let mut part = vec![0; want];
        // A blocking read of a local file, on the loop's thread: acceptable
        // for a command serving files from disk, at 64 KiB a time.
        if let Err(e) = st.file.read_exact(&mut part) {
            // The file shrank or failed under us: the length is promised and
            // the layer owns the end, so the rest is sent as zeros.
            warn(cx, Some(s), &format!("{}: read failed: {e}", st.target));
            part.fill(0);
        }
        if cx.send_body(s, &part).is_err() {
            return;
        }
        st.left -= want as u64;
        st.sent += want as u64;
        if st.left == 0 {
            if let Some(st) = self.stream.take() {
                request_event(cx, s, &st.method, &st.target, 200, st.sent);
            }
        }
    }

    fn on_closed(&mut self, cx: &mut Cx<App>, s: SocketId, closed: &Closed) {
        // A response cut short: what was sent of it.
        if let Some(st) = self.stream.take() {
            request_event(cx, s, &st.method, &st.target, 200, st.sent);
        }
        ev_closed(cx, s, closed);
        signals::closed(cx, s, closed);
    }
}

/// An error response: the status and its reason as text.
fn error(cx: &mut Cx<App>, s: SocketId, r: &Request, status: u16) {
    let body = format!("{status} {}\n", reason(status));
    let mut response = Response::new(status).header("Content-Type", "text/plain");
    if status == 405 {
        response = response.header("Allow", "GET, HEAD");
    }
    let bytes = if r.method == "HEAD" {
        0
    } else {
        body.len() as u64
    };
    if cx.respond(s, response.body(body)).is_ok() {
        request_event(cx, s, &r.method, &r.target, status, bytes);
    }
}

fn request_event(cx: &mut Cx<App>, s: SocketId, method: &str, target: &str, status: u16, n: u64) {
    if let Some(e) = events(cx) {
        e.request(s, method, target, status, n);
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Internal Server Error",
    }
}

/// The status for a file that would not open.
fn io_status(e: &std::io::Error) -> u16 {
    match e.kind() {
        std::io::ErrorKind::NotFound => 404,
        std::io::ErrorKind::PermissionDenied => 403,
        _ => 500,
    }
}

/// The file a target names under `root` (canonical), or the status that
/// refuses it.
fn resolve(root: &Path, target: &str) -> Answer {
    let path = target.split('#').next().unwrap_or_default();
    let path = path.split('?').next().unwrap_or_default();
    if !path.starts_with('/') {
        return Answer::Status(400);
    }
    let Some(decoded) = percent_decode(path) else {
        return Answer::Status(400);
    };
    let Ok(decoded) = String::from_utf8(decoded) else {
        return Answer::Status(400);
    };
    let mut joined = root.to_path_buf();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => return Answer::Status(403),
            // A decoded `\` is a separator nowhere here, but refuse it anyway.
            s if s.contains('\\') => return Answer::Status(403),
            s => joined.push(s),
        }
    }
    let inside = |p: &Path| -> Result<PathBuf, u16> {
        let real = std::fs::canonicalize(p).map_err(|e| -> u16 {
            match e.kind() {
                std::io::ErrorKind::PermissionDenied => 403,
                _ => 404,
            }
        })?;
        if real.starts_with(root) {
            Ok(real)
        } else {
            Err(403)
        }
    };
    let mut real = match inside(&joined) {
        Ok(real) => real,
        Err(status) => return Answer::Status(status),
    };
    if real.is_dir() {
        real = match inside(&real.join("index.html")) {
            Ok(real) => real,
            Err(status) => return Answer::Status(status),
        };
    }
    // Only regular files: a FIFO or a device would block or never end.
    if !real.is_file() {
        return Answer::Status(404);
    }
    Answer::File(real)
}

/// `%XY` decoded; `None` for a bad escape or a NUL.
fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            i += 3;
            u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?
        } else {
            i += 1;
            bytes[i - 1]
        };
        if b == 0 {
            return None;
        }
        out.push(b);
    }
    Some(out)
}

/// The Content-Type of a file, by its extension.
fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("html" | "htm") => "text/html",
        Some("txt") => "text/plain",
        Some("css") => "text/css",
        Some("js") => "text/javascript",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("svg") => "image/svg+xml",
        Some("ico") => "image/x-icon",
        Some("wasm") => "application/wasm",
        Some("pdf") => "application/pdf",
        Some("xml") => "application/xml",
        Some("mp4") => "video/mp4",
        Some("webm") => "video/webm",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("/a%20b").unwrap(), b"/a b");
        assert_eq!(percent_decode("/%2e%2E").unwrap(), b"/..");
        for bad in ["/%", "/%2", "/%zz", "/a%00b", "/%+1"] {
            assert!(percent_decode(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn targets_under_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::write(root.join("a.txt"), "a").unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::create_dir(root.join("bare")).unwrap();
        std::fs::write(root.join("sub/index.html"), "i").unwrap();
        let file = |t: &str| match resolve(&root, t) {
            Answer::File(p) => p,
            other => panic!("{t}: {other:?}"),
        };
        let status = |t: &str| match resolve(&root, t) {
            Answer::Status(s) => s,
            other => panic!("{t}: {other:?}"),
        };
        assert_eq!(file("/a.txt?x=1#f"), root.join("a.txt"));
        assert_eq!(file("/./sub/"), root.join("sub/index.html"));
        assert_eq!(file("/sub"), root.join("sub/index.html"));
        assert_eq!(status("/bare/"), 404);
        assert_eq!(status("/missing"), 404);
        assert_eq!(status("/../etc/passwd"), 403);
        assert_eq!(status("/sub/%2e%2e/a.txt"), 403);
        assert_eq!(status("/a%00"), 400);
        assert_eq!(status("/%zz"), 400);
        assert_eq!(status("a.txt"), 400);
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type(Path::new("x/INDEX.HTML")), "text/html");
        assert_eq!(content_type(Path::new("a.jpeg")), "image/jpeg");
        assert_eq!(content_type(Path::new("noext")), "application/octet-stream");
    }
}
