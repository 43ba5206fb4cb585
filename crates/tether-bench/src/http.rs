//! The `http` scenario: small GET responses (`hello world`, 11 bytes,
//! `Content-Type: text/plain`) from tether's HTTP mode and from hyper 1.x
//! (HTTP/1, tokio's current-thread runtime), over keep-alive connections and
//! one request per connection. Each server runs on its own thread; the load
//! (`load::http`) is a mio client on the calling thread.
#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::mpsc;

use bytes::Bytes;
use http_body_util::Full;
use tether::{
    Admission, Closed, Cx, HttpOptions, IoMux, PeerInfo, Request, Response, SocketId, SocketUser,
};
use tokio::io::AsyncReadExt;

use crate::common::{std_listener, Net, Target};
use crate::load;
use crate::report::Report;
use crate::servers::Kind;
use crate::Opts;

/// The report's columns: tether, and hyper in tokio's place (the ratio
/// column reads tether/hyper).
const TETHER: Kind = Kind::Tether;
const HYPER: Kind = Kind::Tokio;

const BODY: &[u8] = b"hello world";

/// A server on its own thread, stopped and joined when dropped.
struct HttpServer {
    addr: SocketAddr,
    stop: Option<Box<dyn FnOnce() + Send>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl HttpServer {
    fn start(kind: Kind, keep_alive: bool) -> HttpServer {
        if kind == TETHER {
            tether_server(keep_alive)
        } else {
            hyper_server(keep_alive)
        }
    }
}

/// tether in HTTP mode: a listener whose connections answer every request
/// with the same response; `keep_open` as asked.
fn tether_server(keep_open: bool) -> HttpServer {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("tether-http-server".into())
        .spawn(move || {
            let mut mux = IoMux::new(()).expect("tether loop");
            let l = mux.listen_on("127.0.0.1:0", Listener);
            mux.set_http(l, HttpOptions::default().keep_open(keep_open))
                .expect("set_http");
            let addr = match mux.local_addr(l) {
                Some(tether::SockAddr::Inet(a)) => a,
                other => panic!("unexpected local address {other:?}"),
            };
            tx.send((addr, mux.handle())).expect("report");
            mux.run().expect("tether loop");
        })
        .expect("spawn");
    let (addr, handle) = rx.recv().expect("tether server started");
    HttpServer {
        addr,
        stop: Some(Box::new(move || handle.terminate())),
        thread: Some(thread),
    }
}

struct Listener;

impl SocketUser<()> for Listener {
    fn on_incoming(&mut self, _: &mut Cx<()>, _: SocketId, _: &PeerInfo) -> Admission<()> {
        Admission::Accept(Box::new(Hello))
    }
    fn on_closed(&mut self, _: &mut Cx<()>, _: SocketId, _: &Closed) {}
}

/// One connection: `hello world` to every request.
struct Hello;

impl SocketUser<()> for Hello {
    fn wants_on_sent(&self) -> bool {
        false
    }
    fn on_request(&mut self, cx: &mut Cx<()>, s: SocketId, _: &Request) {
        let r = Response::new(200)
            .header("Content-Type", "text/plain")
            .body(BODY);
        cx.respond(s, r).expect("respond");
    }
    fn on_closed(&mut self, _: &mut Cx<()>, _: SocketId, _: &Closed) {}
}

/// hyper 1.x, HTTP/1 only, a task per connection on tokio's current-thread
/// runtime, `keep_alive` as asked, as hyper's server example has it.
fn hyper_server(keep_alive: bool) -> HttpServer {
    let (sock, target) = std_listener(Net::Tcp).expect("listener");
    let Target::Tcp(addr) = target else {
        unreachable!()
    };
    sock.set_nonblocking(true).expect("non-blocking");
    let (stop_tx, stop_rx) = std::os::unix::net::UnixStream::pair().expect("pair");
    stop_rx.set_nonblocking(true).expect("non-blocking");
    let thread = std::thread::Builder::new()
        .name("hyper-server".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(sock.into()).expect("listener");
                tokio::spawn(async move {
                    loop {
                        let Ok((stream, _)) = l.accept().await else {
                            continue;
                        };
                        let io = hyper_util::rt::TokioIo::new(stream);
                        tokio::spawn(async move {
                            let service = hyper::service::service_fn(|_req| async {
                                Ok::<_, Infallible>(
                                    hyper::Response::builder()
                                        .header(hyper::header::CONTENT_TYPE, "text/plain")
                                        .body(Full::new(Bytes::from_static(BODY)))
                                        .expect("response"),
                                )
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .keep_alive(keep_alive)
                                .serve_connection(io, service)
                                .await;
                        });
                    }
                });
                let mut stop = tokio::net::UnixStream::from_std(stop_rx).expect("stop");
                let _ = stop.read(&mut [0u8]).await;
            });
            drop(rt);
        })
        .expect("spawn");
    HttpServer {
        addr,
        stop: Some(Box::new(move || drop(stop_tx))),
        thread: Some(thread),
    }
}

/// A fixed amount of keep-alive work against one server, untimed, for
/// counting its instructions under callgrind: `conns` connections each make
/// `requests` requests, then close; the server is stopped a moment later.
pub(crate) fn callgrind_http(kind: Kind, conns: usize, requests: u64) {
    let server = HttpServer::start(kind, true);
    let t = std::time::Instant::now();
    let n = load::http::keep_alive_requests(server.addr, conns, requests);
    let elapsed = t.elapsed();
    std::thread::sleep(std::time::Duration::from_millis(100));
    drop(server);
    eprintln!(
        "tether-bench: callgrind-http server={} conns={conns} requests={n} in {:.2} s",
        if kind == TETHER { "tether" } else { "hyper" },
        elapsed.as_secs_f64()
    );
}

/// One case: keep-alive over `n` connections, or one request per
/// connection with `n` in parallel.
#[derive(Clone, Copy)]
struct Case {
    keep_alive: bool,
    n: usize,
}

pub(crate) fn http(opts: &Opts) -> Report {
    let mut report = Report::new(
        "http",
        format!(
            "{}; hyper column = hyper 1.x HTTP/1 server on tokio's current-thread runtime",
            crate::scenarios::about(
                opts,
                "GET / answered 200 `hello world` (11 B, text/plain); keep-alive: one \
                 request in flight per connection; per connection: connect, GET, read to \
                 the server's close"
            )
        ),
        &[TETHER, HYPER],
        opts.rounds,
    )
    .labels(&[(TETHER, "tether"), (HYPER, "hyper")]);
    let cases: &[Case] = if opts.quick {
        &[
            Case {
                keep_alive: true,
                n: 64,
            },
            Case {
                keep_alive: false,
                n: 16,
            },
        ]
    } else {
        &[
            Case {
                keep_alive: true,
                n: 1,
            },
            Case {
                keep_alive: true,
                n: 64,
            },
            Case {
                keep_alive: true,
                n: 256,
            },
            Case {
                keep_alive: false,
                n: 1,
            },
            Case {
                keep_alive: false,
                n: 16,
            },
        ]
    };
    let name = |c: &Case| {
        if c.keep_alive {
            format!("keep-alive conns={}", c.n)
        } else {
            format!("per connection parallel={}", c.n)
        }
    };
    let wanted = |n: &str| opts.case.as_ref().is_none_or(|c| n.contains(c.as_str()));
    let kinds = [TETHER, HYPER];
    for r in 0..opts.rounds {
        for c in cases {
            let case = name(c);
            if !wanted(&case) {
                continue;
            }
            for i in 0..kinds.len() {
                let kind = kinds[(i + r) % kinds.len()];
                if opts.only.as_ref().is_some_and(|o| !o.contains(&kind)) {
                    continue;
                }
                let server = HttpServer::start(kind, c.keep_alive);
                let m = if c.keep_alive {
                    load::http::keep_alive(server.addr, c.n, opts.window)
                } else {
                    load::http::per_connection(server.addr, c.n, opts.window)
                };
                drop(server);
                report.add(&case, kind, "requests/s ↑", m.per_sec());
                report.add(
                    &case,
                    kind,
                    "server CPU µs/req ↓",
                    m.server_cpu.as_secs_f64() * 1e6 / m.count.max(1) as f64,
                );
                report.add(&case, kind, "client busy % ↓", m.client_busy());
                if !c.keep_alive {
                    report.add(&case, kind, "failed ↓", m.errors as f64);
                }
            }
        }
    }
    report
}
