//! `--events`: one JSON object per line on stderr.
//!
//! Every line starts with the same three fields, then the event's own:
//! `{"t":0.001234,"socket":3,"event":"closed","reason":"by_peer",...}`. `t` is
//! seconds since the command started, `socket` the socket's index (`null` when
//! no socket is concerned). Data (connect and disconnect data) is written as
//! text when it is UTF-8, else as hex in a field whose name ends in `_hex`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Instant;

use tether::{
    Closed, DiscardMethod, Fingerprint, PeerInfo, SockAddr, SocketId, SrtpKeys, State, TlsInfo,
};

/// The event writer: knows when the command started.
#[derive(Debug)]
pub(crate) struct Events {
    start: Instant,
}

impl Events {
    pub(crate) fn new() -> Events {
        Events {
            start: Instant::now(),
        }
    }

    /// Begin the line of one event; add fields, then [`Line::write`].
    fn line(&self, socket: Option<SocketId>, event: &str) -> Line {
        let mut buf = String::with_capacity(128);
        let t = self.start.elapsed().as_secs_f64();
        let _ = write!(buf, "{{\"t\":{t:.6},\"socket\":");
        match socket {
            Some(s) => {
                let _ = write!(buf, "{}", s.index());
            }
            None => buf.push_str("null"),
        }
        let mut line = Line { buf };
        line.key("event");
        string(&mut line.buf, event);
        line
    }
}

/// Each event and its fields: the schema the README writes down.
impl Events {
    /// `state`: every state change, in order.
    pub(crate) fn state(&self, s: SocketId, from: State, to: State) {
        self.line(Some(s), "state")
            .str("from", from.as_str())
            .str("to", to.as_str())
            .write();
    }

    /// `bound`: the socket has its local address.
    pub(crate) fn bound(&self, s: SocketId, local: &SockAddr) {
        self.line(Some(s), "bound")
            .str("local", &local.to_string())
            .write();
    }

    /// `incoming`: a client at the listener `l`, before it is admitted.
    pub(crate) fn incoming(&self, l: SocketId, peer: &PeerInfo) {
        self.line(Some(l), "incoming")
            .addr("peer", peer.peer.as_ref())
            .data("hello", peer.hello.as_deref())
            .write();
    }

    /// `accepted`: `s` is the admitted connection; `listener` the socket that
    /// took it (`null` when there is none).
    pub(crate) fn accepted(&self, s: SocketId, listener: Option<SocketId>, peer: Option<SockAddr>) {
        self.accepted_line(s, listener, peer.as_ref()).write();
    }

    fn accepted_line(
        &self,
        s: SocketId,
        listener: Option<SocketId>,
        peer: Option<&SockAddr>,
    ) -> Line {
        self.line(Some(s), "accepted")
            .opt_num("listener", listener.map(|l| u64::from(l.index())))
            .addr("peer", peer)
    }

    /// `resolved`: the host name of a connect (`name`, as given) resolved;
    /// `addrs` are its addresses in the order they are tried, separated by
    /// spaces (every field is flat).
    pub(crate) fn resolved(&self, s: SocketId, name: &str, addrs: &[SocketAddr]) {
        let addrs: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
        self.line(Some(s), "resolved")
            .str("name", name)
            .str("addrs", &addrs.join(" "))
            .write();
    }

    /// `connected`: a connect completed.
    pub(crate) fn connected(&self, s: SocketId, local: Option<SockAddr>, peer: Option<SockAddr>) {
        self.line(Some(s), "connected")
            .addr("local", local.as_ref())
            .addr("peer", peer.as_ref())
            .write();
    }

    /// `tls`: what the handshake settled. `local_fingerprint` is our own
    /// certificate's (DTLS; `null` for TLS), `srtp_profile` the DTLS-SRTP
    /// profile (`null` when none).
    pub(crate) fn tls(&self, s: SocketId, info: &TlsInfo, local: Option<Fingerprint>) {
        self.tls_line(s, info, local).write();
    }

    fn tls_line(&self, s: SocketId, info: &TlsInfo, local: Option<Fingerprint>) -> Line {
        let fingerprint = info.peer_fingerprint.map(|f| f.to_hex());
        let local = local.map(|f| f.to_hex());
        self.line(Some(s), "tls")
            .str("version", info.version.as_str())
            .str("cipher_suite", info.cipher_suite)
            .data("alpn", info.alpn.as_deref())
            .opt_str("peer_fingerprint", fingerprint.as_deref())
            .opt_str("local_fingerprint", local.as_deref())
            .opt_str("server_name", info.server_name.as_deref())
            .opt_str("srtp_profile", info.srtp_profile.map(|p| p.as_str()))
    }

    /// `keying_material`: the SRTP keys a DTLS-SRTP handshake exported
    /// (client key, server key, client salt, server salt), as hex.
    pub(crate) fn keying_material(&self, s: SocketId, keys: &SrtpKeys) {
        self.line(Some(s), "keying_material")
            .str("profile", keys.profile().as_str())
            .hex("material_hex", keys.as_bytes())
            .write();
    }

    /// `certificate`: our DTLS certificate, at the start: its SHA-256
    /// fingerprint (hex) and whether it was made for this run.
    pub(crate) fn certificate(&self, fingerprint: &Fingerprint, generated: bool) {
        self.line(None, "certificate")
            .str("fingerprint", &fingerprint.to_hex())
            .bool("generated", generated)
            .write();
    }

    /// `stdin_eof`: stdin ended and `action` (--on-eof) is carried out.
    pub(crate) fn stdin_eof(&self, s: SocketId, action: &str) {
        self.line(Some(s), "stdin_eof")
            .str("action", action)
            .write();
    }

    /// `peer_shutdown`: the peer finished sending.
    pub(crate) fn peer_shutdown(&self, s: SocketId, farewell: Option<&[u8]>) {
        self.line(Some(s), "peer_shutdown")
            .data("farewell", farewell)
            .write();
    }

    /// `request`: `listen --http` answered a request: its method and target
    /// (as sent), the response's status, and the body bytes sent (0 for
    /// HEAD; fewer than the file's length when the connection ended first).
    pub(crate) fn request(&self, s: SocketId, method: &str, target: &str, status: u16, bytes: u64) {
        self.line(Some(s), "request")
            .str("method", method)
            .str("target", target)
            .num("status", status.into())
            .num("bytes", bytes)
            .write();
    }

    /// `closed`: the socket's last event.
    pub(crate) fn closed(&self, s: SocketId, c: &Closed) {
        let discard = c.discard.map(|d| match d {
            DiscardMethod::Silent => "silent",
            DiscardMethod::Reset => "reset",
            DiscardMethod::Close => "close",
            _ => "other",
        });
        let error = c.error.as_ref().map(|e| e.to_string());
        self.line(Some(s), "closed")
            .str("reason", c.reason.as_str())
            .num("unsent", c.unsent)
            .num("unread", c.unread)
            .opt_str("error", error.as_deref())
            .data("farewell", c.farewell.as_deref())
            .opt_str("discard", discard)
            .write();
    }

    /// `warning`: a problem outside any socket's lifecycle.
    pub(crate) fn warning(&self, s: Option<SocketId>, message: &str) {
        self.line(s, "warning").str("message", message).write();
    }
}

/// One event's line, being built.
#[derive(Debug)]
#[must_use = "a line is only printed by write()"]
struct Line {
    buf: String,
}

impl Line {
    fn key(&mut self, key: &str) {
        self.buf.push(',');
        string(&mut self.buf, key);
        self.buf.push(':');
    }

    /// A text field.
    fn str(mut self, key: &str, value: &str) -> Line {
        self.key(key);
        string(&mut self.buf, value);
        self
    }

    /// A text field, `null` when absent.
    fn opt_str(mut self, key: &str, value: Option<&str>) -> Line {
        match value {
            Some(v) => self.str(key, v),
            None => {
                self.key(key);
                self.buf.push_str("null");
                self
            }
        }
    }

    /// An address field, `null` when absent.
    fn addr(self, key: &str, value: Option<&SockAddr>) -> Line {
        let text = value.map(|a| a.to_string());
        self.opt_str(key, text.as_deref())
    }

    /// A number field.
    fn num(mut self, key: &str, value: u64) -> Line {
        self.key(key);
        let _ = write!(self.buf, "{value}");
        self
    }

    /// A number field, `null` when absent.
    fn opt_num(mut self, key: &str, value: Option<u64>) -> Line {
        match value {
            Some(v) => self.num(key, v),
            None => {
                self.key(key);
                self.buf.push_str("null");
                self
            }
        }
    }

    /// A boolean field.
    fn bool(mut self, key: &str, value: bool) -> Line {
        self.key(key);
        self.buf.push_str(if value { "true" } else { "false" });
        self
    }

    /// Bytes as a hex text field.
    fn hex(mut self, key: &str, bytes: &[u8]) -> Line {
        self.key(key);
        self.buf.push('"');
        for b in bytes {
            let _ = write!(self.buf, "{b:02x}");
        }
        self.buf.push('"');
        self
    }

    /// A data field: text when UTF-8, else hex under `<key>_hex`; `null` when
    /// absent.
    fn data(self, key: &str, value: Option<&[u8]>) -> Line {
        match value.map(std::str::from_utf8) {
            None => self.opt_str(key, None),
            Some(Ok(text)) => self.str(key, text),
            Some(Err(_)) => {
                let bytes = value.unwrap_or_default();
                self.hex(&format!("{key}_hex"), bytes)
            }
        }
    }

    /// Print the line on stderr, whole.
    fn write(mut self) {
        self.buf.push_str("}\n");
        let _ = std::io::stderr().lock().write_all(self.buf.as_bytes());
    }

    #[cfg(test)]
    fn text(mut self) -> String {
        self.buf.push('}');
        self.buf
    }
}

/// A JSON string, quoted and escaped.
fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_json_needs() {
        let mut out = String::new();
        string(&mut out, "a\"b\\c\nd\te\u{1}f\u{7f}é");
        assert_eq!(out, r#""a\"b\\c\nd\te\u0001f\u007fé""#);
    }

    /// A user for sockets that are only named, never opened.
    struct Idle;
    impl tether::SocketUser for Idle {
        fn on_closed(&mut self, _: &mut tether::Cx, _: SocketId, _: &Closed) {}
    }

    /// `accepted` names the listener by its index, and writes `null` (not 0,
    /// which is a real index) when there is none.
    #[test]
    fn accepted_names_its_listener_or_null() {
        let mut mux = tether::IoMux::new(()).unwrap();
        let listener = mux.stream(Idle);
        let conn = mux.stream(Idle);
        let peer: SockAddr = "127.0.0.1:4000".parse().unwrap();
        let events = Events::new();
        let parse = |line: Line| -> serde_json::Value {
            let text = line.text();
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
        };

        let with = parse(events.accepted_line(conn, Some(listener), Some(&peer)));
        assert_eq!(with["socket"], u64::from(conn.index()));
        assert_eq!(with["event"], "accepted");
        assert_eq!(with["listener"], u64::from(listener.index()));
        assert_eq!(with["peer"], "127.0.0.1:4000");

        let without = parse(events.accepted_line(conn, None, None));
        let null = Some(&serde_json::Value::Null);
        assert_eq!(without.get("listener"), null, "{without}");
        assert_eq!(without.get("peer"), null, "{without}");
        assert_eq!(without.as_object().map(|o| o.len()), Some(5), "{without}");
    }

    #[test]
    fn data_is_text_or_hex() {
        let events = Events::new();
        let line = events
            .line(None, "peer_shutdown")
            .data("farewell", Some(b"bye"))
            .data("hello", Some(&[0xff, 0x00]))
            .data("none", None)
            .num("unsent", 3)
            .text();
        assert!(line.starts_with("{\"t\":0.0"), "{line}");
        assert!(
            line.ends_with(
                r#","socket":null,"event":"peer_shutdown","farewell":"bye","hello_hex":"ff00","none":null,"unsent":3}"#
            ),
            "{line}"
        );
    }
}
