//! What the command's tests share: the built binary run as a child that can
//! never outlive its test, a reader for `--events` lines (serde_json),
//! certificates made at test time, and peers written with plain std::net.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long any one child may run before it is killed.
pub const LIMIT: Duration = Duration::from_secs(15);

/// `tether` with these arguments.
pub fn tether(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tether"));
    cmd.args(args);
    cmd
}

/// Run to the end with `input` on stdin (killed past [`LIMIT`]).
pub fn run(args: &[&str], input: &[u8]) -> Outcome {
    let mut p = Proc::spawn(&mut tether(args));
    p.write(input);
    p.finish(LIMIT)
}

/// A child process that cannot outlive its test: killed on drop, waited for
/// with a deadline, its stdout and stderr collected by threads (and offered
/// line by line) so it never blocks on a full pipe.
pub struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    out_lines: Receiver<String>,
    err_lines: Receiver<String>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    threads: Vec<JoinHandle<()>>,
}

/// How a child ended.
#[derive(Debug)]
pub struct Outcome {
    pub status: ExitStatus,
    /// The deadline passed and the child was killed.
    pub killed: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The `--events` lines, each checked.
    pub fn events(&self) -> Vec<Event> {
        events(&self.stderr)
    }
}

fn collect(
    from: impl Read + Send + 'static,
    sink: Arc<Mutex<Vec<u8>>>,
) -> (Receiver<String>, JoinHandle<()>) {
    let (tx, rx) = channel();
    let thread = std::thread::spawn(move || {
        let mut from = BufReader::new(from);
        let mut line = Vec::new();
        while matches!(from.read_until(b'\n', &mut line), Ok(n) if n > 0) {
            sink.lock().unwrap().extend_from_slice(&line);
            let _ = tx.send(String::from_utf8_lossy(&line).into_owned());
            line.clear();
        }
    });
    (rx, thread)
}

impl Proc {
    pub fn spawn(cmd: &mut Command) -> Proc {
        let name = format!("{cmd:?}");
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stdin = child.stdin.take();
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (out_lines, t1) = collect(child.stdout.take().unwrap(), stdout.clone());
        let (err_lines, t2) = collect(child.stderr.take().unwrap(), stderr.clone());
        Proc {
            name,
            child,
            stdin,
            out_lines,
            err_lines,
            stdout,
            stderr,
            threads: vec![t1, t2],
        }
    }

    /// Write to the child's stdin (kept open until `close_stdin` or the end).
    pub fn write(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(data).expect("write to child");
        stdin.flush().expect("flush to child");
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    pub fn stdout_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    pub fn stderr_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    fn wait_on(&mut self, err: bool, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let lines = if err {
                &self.err_lines
            } else {
                &self.out_lines
            };
            match lines.recv_timeout(left) {
                Ok(line) if pred(&line) => return line,
                Ok(_) => {}
                Err(_) => {
                    let _ = self.child.kill();
                    panic!(
                        "{}: {what} never came\nstdout: {}\nstderr: {}",
                        self.name,
                        self.stdout_so_far(),
                        self.stderr_so_far()
                    )
                }
            }
        }
    }

    /// Wait for a line of stdout that `pred` accepts.
    pub fn wait_stdout(&mut self, pred: impl Fn(&str) -> bool) -> String {
        self.wait_on(false, "the expected stdout line", pred)
    }

    /// Wait for a line of stderr that `pred` accepts.
    pub fn wait_stderr(&mut self, pred: impl Fn(&str) -> bool) -> String {
        self.wait_on(true, "the expected stderr line", pred)
    }

    /// Wait for the `--events` line of this event (the first one); every
    /// JSON line before it must be an event too.
    pub fn wait_event(&mut self, name: &str) -> Event {
        let parse =
            |line: &str| Event::parse(line.trim_end()).unwrap_or_else(|e| panic!("{e}: {line}"));
        let line = self.wait_stderr(|l| l.starts_with('{') && parse(l).name() == name);
        parse(&line)
    }

    /// A listener started with `--events`: the address its `bound` event
    /// reports.
    pub fn bound(&mut self) -> String {
        self.wait_event("bound").str("local").to_string()
    }

    /// The child's process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Has it exited (without waiting)?
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Kill it and collect what it printed.
    pub fn kill(mut self) -> Outcome {
        let _ = self.child.kill();
        self.finish(LIMIT)
    }

    /// Close its stdin, wait for it to exit (killing it past `limit`), then
    /// return what it printed.
    pub fn finish(mut self, limit: Duration) -> Outcome {
        self.stdin = None;
        self.wait(limit)
    }

    /// Wait for the child to exit with its stdin still open (killing it past
    /// `limit`), then return what it printed.
    pub fn wait(mut self, limit: Duration) -> Outcome {
        let deadline = Instant::now() + limit;
        let (status, killed) = loop {
            match self.child.try_wait().expect("try_wait") {
                Some(status) => break (status, false),
                None if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    break (self.child.wait().expect("wait"), true);
                }
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        Outcome {
            status,
            killed,
            stdout: self.stdout_so_far(),
            stderr: self.stderr_so_far(),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ----- --events -----

/// The members of one JSON object in the order written, repeats kept (a map
/// would keep one of them silently).
struct Members(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for Members {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Members, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// One `--events` line, read by serde_json.
#[derive(Debug, Clone)]
pub struct Event {
    /// The fields in the order the line has them.
    pub fields: Vec<(String, Value)>,
    pub line: String,
}

impl Event {
    /// Parse one line: a flat JSON object (every value a string, number,
    /// boolean or null; no field twice) whose first fields are `t` (seconds,
    /// a number at least 0), `socket` (an index or null) and `event` (a
    /// string).
    pub fn parse(line: &str) -> Result<Event, String> {
        let Members(fields) = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        if keys.len() < 3 || keys[..3] != ["t", "socket", "event"] {
            return Err(format!(
                "the line must begin with t, socket, event: {keys:?}"
            ));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(k) = keys.iter().find(|k| !seen.insert(**k)) {
            return Err(format!("the field {k} comes twice"));
        }
        if let Some((k, _)) = fields
            .iter()
            .find(|(_, v)| matches!(v, Value::Array(_) | Value::Object(_)))
        {
            return Err(format!("the field {k} is not flat"));
        }
        if !fields[0].1.as_f64().is_some_and(|t| t >= 0.0) {
            return Err("t is not a number at least 0".into());
        }
        if !(fields[1].1.is_u64() || fields[1].1.is_null()) {
            return Err("socket is not an index or null".into());
        }
        if !fields[2].1.is_string() {
            return Err("event is not a string".into());
        }
        Ok(Event {
            fields,
            line: line.to_string(),
        })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// A field that must be there.
    fn field(&self, key: &str) -> &Value {
        self.get(key)
            .unwrap_or_else(|| panic!("no field {key} in {}", self.line))
    }

    pub fn name(&self) -> &str {
        self.str("event")
    }

    /// Seconds since the command started.
    pub fn t(&self) -> f64 {
        self.field("t").as_f64().expect("checked by parse")
    }

    /// A string field; panics if it is absent or not a string.
    pub fn str(&self, key: &str) -> &str {
        match self.field(key) {
            Value::String(s) => s,
            other => panic!("{key} is {other} in {}", self.line),
        }
    }

    /// A string field or null; panics if it is absent or anything else.
    pub fn opt(&self, key: &str) -> Option<&str> {
        match self.field(key) {
            Value::String(s) => Some(s),
            Value::Null => None,
            other => panic!("{key} is {other} in {}", self.line),
        }
    }

    /// A count or index field (an integer at least 0); panics if it is absent
    /// or anything else.
    pub fn num(&self, key: &str) -> u64 {
        self.opt_num(key)
            .unwrap_or_else(|| panic!("{key} is null in {}", self.line))
    }

    /// A count or index field, or null; panics if it is absent or anything
    /// else.
    pub fn opt_num(&self, key: &str) -> Option<u64> {
        match self.field(key) {
            Value::Null => None,
            v => Some(
                v.as_u64()
                    .unwrap_or_else(|| panic!("{key} is {v}, not an index, in {}", self.line)),
            ),
        }
    }

    /// The socket's index, `None` for `"socket":null`.
    pub fn socket(&self) -> Option<u64> {
        self.opt_num("socket")
    }
}

/// Every line of `stderr` as an event; panics on a line that is not one.
pub fn events(stderr: &str) -> Vec<Event> {
    let mut last_t = 0.0;
    stderr
        .lines()
        .map(|line| {
            let e = Event::parse(line).unwrap_or_else(|e| panic!("{e}: {line}\n{stderr}"));
            let t = e.t();
            assert!(t >= last_t, "time went back: {line}\n{stderr}");
            last_t = t;
            e
        })
        .collect()
}

/// The events of one name.
pub fn named<'a>(events: &'a [Event], name: &str) -> Vec<&'a Event> {
    events.iter().filter(|e| e.name() == name).collect()
}

/// The one event of this name; panics unless there is exactly one.
pub fn one<'a>(events: &'a [Event], name: &str) -> &'a Event {
    let found = named(events, name);
    assert_eq!(found.len(), 1, "{name}: {found:#?}");
    found[0]
}

/// The `closed` event of the socket that closed last (the command's own
/// connection: the command ends right after it).
pub fn last_closed(events: &[Event]) -> &Event {
    events
        .iter()
        .rev()
        .find(|e| e.name() == "closed")
        .expect("a closed event")
}

// ----- peers and files -----

/// A loopback TCP listener on a port the system picks.
pub fn tcp_listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    (l, addr)
}

/// An address where nothing listens (a port just freed).
pub fn dead_tcp_addr() -> String {
    let (l, addr) = tcp_listener();
    drop(l);
    addr
}

/// A peer running on a thread, its result collected with a deadline.
pub struct Peer<T> {
    rx: Receiver<T>,
}

impl<T: Send + 'static> Peer<T> {
    pub fn spawn(f: impl FnOnce() -> T + Send + 'static) -> Peer<T> {
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        Peer { rx }
    }

    pub fn join(self) -> T {
        self.rx
            .recv_timeout(LIMIT)
            .expect("the peer thread did not finish (or panicked)")
    }
}

/// The SocketAddr form of an address text.
pub fn sockaddr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// Certificates made at test time: a CA, a server certificate for
/// `localhost` and 127.0.0.1, a client certificate, as PEM files.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub server_der: Vec<u8>,
    pub client_der: Vec<u8>,
}

impl Pki {
    pub fn new() -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        let dir = tempfile::tempdir().unwrap();
        let mut ca = CertificateParams::new(Vec::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "tether cli test CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let sign = |names: &[&str], purpose, file: &str| {
            let mut params =
                CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                    .unwrap();
            params.distinguished_name.push(DnType::CommonName, names[0]);
            params.use_authority_key_identifier_extension = true;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![purpose];
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &issuer).unwrap();
            std::fs::write(dir.path().join(format!("{file}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.path().join(format!("{file}.key")), key.serialize_pem()).unwrap();
            cert.der().to_vec()
        };
        let server_der = sign(
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
            "server",
        );
        let client_der = sign(
            &["tether cli test client"],
            ExtendedKeyUsagePurpose::ClientAuth,
            "client",
        );
        Pki {
            dir,
            server_der,
            client_der,
        }
    }

    /// A file of the PKI (`ca.pem`, `server.pem`, `server.key`, `client.pem`,
    /// `client.key`), as a path string.
    pub fn file(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// The hex SHA-256 fingerprint `--events` writes for a certificate.
pub fn fingerprint(der: &[u8]) -> String {
    tether::Fingerprint::of(der).to_hex()
}

/// Is the tool on PATH? The interop tests need `openssl`, `python3` and
/// `curl`.
pub fn tool(name: &str, arg: &str) -> &'static str {
    let ok = Command::new(name)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "`{name}` was not found on PATH: these tests need it");
    match name {
        "openssl" => "openssl",
        "python3" => "python3",
        "curl" => "curl",
        other => panic!("unknown tool {other}"),
    }
}

/// A path for a Unix socket in a fresh directory.
pub fn unix_addr(dir: &Path, name: &str) -> String {
    format!("unix:{}", dir.join(name).display())
}
