//! The cases of peers that go away or overwhelm: clients killed with
//! SIGKILL, clients that reset, and more clients than the server's process
//! has descriptors for.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use tether::Reason;
use tether_impair::{Impairment, Side, TunLink};

use super::client::{Outcome, Plan};
use super::server::{Server, Settings};
use super::{Case, Run, LIMIT, PEER, SLACK};
use crate::check::Expect;
use crate::report::Goal;

impl Run<'_> {
    /// Client processes streaming through the link, killed with SIGKILL once
    /// the server has had some of their bytes: the server's end is the
    /// peer's, within a bound.
    pub(super) fn sigkill(&mut self, case: &mut Case) -> Result<(), String> {
        let n = if self.quick { 3 } else { 10 };
        let link = self.link(Impairment::none())?;
        let server = Server::start(&link, Settings::default())?;
        let addr = format!("{}:{}", TunLink::ADDR_A, server.port);
        case.conns = n;
        for plan in self.plans(n, 1 << 30, 1 << 30) {
            let at = format!("{} conn {}", case.name, plan.conn);
            let mut peer = Peer::spawn(&link, &addr, plan, self.seed)?;
            peer.go()?;
            let port = peer.connected()?;
            let fed = server.wait(LIMIT, |log| {
                log.conns.get(&port).is_some_and(|s| s.got >= 256 << 10)
            });
            if !fed {
                self.v.add(&at, "the peer's bytes did not come");
            }
            let killed = Instant::now();
            peer.kill();
            // A dead process's kernel ends with a FIN, or a reset if bytes
            // waited unread in its socket: either is the peer's end.
            let ok = self.peer_ended(
                &at,
                &server,
                plan,
                port,
                killed,
                &[Reason::ByPeer, Reason::Lost],
            );
            case.good += u64::from(ok);
        }
        server.stop();
        Ok(())
    }

    /// Clients that read some of their echo and then abort (SO_LINGER 0, so
    /// their close sends RST): the server must end each `Lost` at once.
    pub(super) fn resets(&mut self, case: &mut Case) -> Result<(), String> {
        let n = if self.quick { 4 } else { 16 };
        let link = self.link(Impairment::none())?;
        let server = Server::start(&link, Settings::default())?;
        let port = server.port;
        case.conns = n;
        for plan in self.plans(n, 64 << 10, 64 << 10) {
            let at = format!("{} conn {}", case.name, plan.conn);
            let seed = self.seed;
            let local = link
                .spawn_in(Side::B, move || -> std::io::Result<(u16, Instant)> {
                    let mut s = TcpStream::connect((TunLink::ADDR_A, port))?;
                    let local = s.local_addr()?.port();
                    let mut source = crate::pattern::Source::new(crate::pattern::Pattern::new(
                        seed, plan.conn, 0,
                    ));
                    let mut buf = Vec::new();
                    source.next(plan.size as usize, &mut buf);
                    s.write_all(&buf)?;
                    // Some of the echo, then the abort.
                    let mut got = vec![0u8; 1024];
                    s.read_exact(&mut got)?;
                    socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO))?;
                    drop(s);
                    Ok((local, Instant::now()))
                })
                .map_err(|e| format!("client thread: {e}"))?
                .join()
                .map_err(|_| "client thread panicked".to_string())?;
            let (local, reset) = match local {
                Ok(x) => x,
                Err(e) => {
                    self.v.add(&at, &format!("the client failed: {e}"));
                    continue;
                }
            };
            let ok = self.peer_ended(&at, &server, plan, local, reset, &[Reason::Lost]);
            case.good += u64::from(ok);
        }
        server.stop();
        Ok(())
    }

    /// Client processes wait; the server's process is then left a few
    /// descriptors only (its soft RLIMIT_NOFILE lowered to just above what it
    /// holds), and the clients all come at once. Accepting must pause on
    /// EMFILE and go on as connections end: every client is served intact.
    pub(super) fn emfile(&mut self, case: &mut Case) -> Result<(), String> {
        const SPARE: u64 = 3;
        let n = if self.quick { 8 } else { 40 };
        let link = self.link(Impairment::none())?;
        // The squeeze comes before the server starts: on io_uring a listener's
        // multishot accept keeps the descriptor limit in force when it was
        // armed (the kernel reads it when the request is prepared). So first
        // count what a server holds once started, on one started and stopped.
        let before = open_descriptors();
        let probe = Server::start(&link, Settings::default())?;
        let startup = open_descriptors().saturating_sub(before);
        let port = probe.port;
        probe.stop();
        let addr = format!("{}:{}", TunLink::ADDR_A, port);
        let plans = self.plans(n, 64 << 10, 256 << 10);
        case.conns = n;
        let mut peers = Vec::new();
        for &plan in &plans {
            peers.push((plan, Peer::spawn(&link, &addr, plan, self.seed)?));
        }
        // Room for the server to start (and what it opens for a moment
        // while it does), then SPARE for connections.
        let squeeze = Squeeze::to(SPARE + startup + 2)?;
        let server = Server::start(
            &link,
            Settings {
                port,
                ..Settings::default()
            },
        )?;
        let mut results = Vec::new();
        for (_, peer) in &mut peers {
            results.push(peer.go());
        }
        let mut outcomes = Vec::new();
        // Each peer's pipes stay open until the count is taken: closing
        // them would give the server's process descriptors the squeeze did
        // not (two a peer, enough to have let every connection in at once).
        let mut finished = Vec::new();
        for ((plan, mut peer), went) in peers.into_iter().zip(results) {
            let line = went.and_then(|()| peer.finish());
            outcomes.push((plan, line));
            finished.push(peer);
        }
        let most = server.most_open() as u64;
        drop(finished);
        drop(squeeze);
        let n_us = n as usize;
        server.wait_ended(n_us, SLACK);
        let seen = server.seen();
        for (plan, line) in outcomes {
            let at = format!("{} conn {}", case.name, plan.conn);
            match line {
                Ok((port, text)) if text == format!("ok {} 0", plan.size) => {
                    let o = Outcome::of_port(plan, port);
                    let ok =
                        self.server_end(&at, &o, &seen, &Expect::clean(&[Reason::ByPeer]), None);
                    case.good += u64::from(ok);
                }
                Ok((_, text)) => self.v.add(&at, &format!("the client said {text:?}")),
                Err(e) => self.v.add(&at, &format!("the client: {e}")),
            }
        }
        // Fewer than all at once: accepting waited for descriptors. (Not
        // exactly SPARE: a descriptor the process freed meanwhile is room too.)
        self.report.add(
            &format!("{}: most connections open at once", case.name),
            most as f64,
            Goal::AtMost((n - 1) as f64),
        );
        server.stop();
        Ok(())
    }
}

/// Descriptors the process has open now.
fn open_descriptors() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

/// The process left `spare` free descriptors: its soft RLIMIT_NOFILE lowered
/// to just above the highest it holds, the holes below filled with
/// `/dev/null`, then `spare` of those freed and the limit raised by as many.
/// Dropping it gives the limit and the descriptors back.
struct Squeeze {
    soft: Option<u64>,
    hard: Option<u64>,
    _fillers: Vec<std::fs::File>,
}

impl Squeeze {
    fn to(spare: u64) -> Result<Squeeze, String> {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
        let highest = std::fs::read_dir("/proc/self/fd")
            .map_err(|e| e.to_string())?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        let set = |soft| {
            setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(soft),
                    maximum,
                },
            )
            .map_err(|e| format!("setrlimit: {e}"))
        };
        set(highest + 1)?;
        let mut fillers = Vec::new();
        while let Ok(f) = std::fs::File::open("/dev/null") {
            fillers.push(f);
        }
        set(highest + 1 + spare)?;
        Ok(Squeeze {
            soft: current,
            hard: maximum,
            _fillers: fillers,
        })
    }
}

impl Drop for Squeeze {
    fn drop(&mut self) {
        let _ = rustix::process::setrlimit(
            rustix::process::Resource::Nofile,
            rustix::process::Rlimit {
                current: self.soft,
                maximum: self.hard,
            },
        );
    }
}

/// A client process in side B (`tether-torture fault-peer`).
struct Peer {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
    port: Option<u16>,
}

impl Peer {
    fn spawn(link: &TunLink, addr: &str, plan: Plan, seed: u64) -> Result<Peer, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = link
            .command(Side::B, &exe.to_string_lossy())
            .args([PEER, addr])
            .arg(plan.size.to_string())
            .arg(seed.to_string())
            .arg(plan.conn.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("fault-peer: {e}"))?;
        let out = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        Ok(Peer {
            child,
            out,
            port: None,
        })
    }

    fn go(&mut self) -> Result<(), String> {
        let stdin = self.child.stdin.as_mut().ok_or("no stdin")?;
        stdin.write_all(b"go\n").map_err(|e| e.to_string())
    }

    fn line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        self.out.read_line(&mut line).map_err(|e| e.to_string())?;
        Ok(line.trim().to_string())
    }

    /// The child's local port, once it says it connected.
    fn connected(&mut self) -> Result<u16, String> {
        let line = self.line()?;
        let port = line
            .strip_prefix("connected ")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("fault-peer said {line:?}"))?;
        self.port = Some(port);
        Ok(port)
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Its port and its last line, once it exited. (It gives up by itself
    /// when the server leaves it waiting a minute.)
    fn finish(&mut self) -> Result<(u16, String), String> {
        let port = self.connected()?;
        let line = self.line()?;
        self.child.wait().map_err(|e| e.to_string())?;
        Ok((port, line))
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
