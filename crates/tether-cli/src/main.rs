//! The `tether` command: nc, ncat and socat for people who need to see and
//! control how connections end.
//!
//! Thin by design: this file defines the command line and the exit statuses,
//! `options` turns flags into library settings, `relay` wires the library's
//! callbacks to stdin, stdout and `--events`, and the library does the rest.
#![forbid(unsafe_code)]

mod app;
mod demo;
mod events;
mod http;
mod options;
mod relay;
mod report;
mod signals;
mod stdin;
mod stdio;
mod users;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Exit status of a usage error (bad flag, bad address, unusable file).
const USAGE: u8 = 2;

/// See and control how connections end.
#[derive(Parser, Debug)]
#[command(name = "tether", version, about)]
#[command(after_help = "\
Exit status: 0 when the connection ended gracefully (normal or by_peer), 1 when it \
did not, 2 for a usage error.

Run 'tether <command> --help' for a command's flags and examples.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Connect to ADDR: stdin goes to the socket, the socket goes to stdout.
    ///
    /// When stdin ends, the sending side is shut down (half-close) and what the
    /// peer still sends is printed until it ends too; then tether exits 0.
    #[command(after_help = CONNECT_EXAMPLES)]
    Connect(ConnectArgs),
    /// Listen on ADDR: relay stdin and stdout for the first connection and exit
    /// when it ends, or with --echo (or --http DIR, files over HTTP/1.1) serve
    /// any number of clients at once.
    #[command(after_help = LISTEN_EXAMPLES)]
    Listen(ListenArgs),
    /// Run the transactions scenario on loopback; exit 0 only if every number
    /// adds up.
    ///
    /// Clients run request/response transactions over the framed transport,
    /// say their count as disconnect data, and the server answers with the
    /// running grand total. Exit status: 0 when every number adds up, 1
    /// otherwise, 2 for a usage error.
    Demo(demo::Options),
}

const CONNECT_EXAMPLES: &str = "\
Examples:
  printf 'GET / HTTP/1.0\\r\\n\\r\\n' | tether connect 192.0.2.10:80
  tether connect --events unix:/run/app.sock < request.bin
  tether connect --events localhost:7000
  tether connect --tls --ca ca.pem --alpn h2,http/1.1 127.0.0.1:8443
  tether connect --tls --ca ca.pem --server-name localhost unix:/tmp/tls.sock
  printf 'one\\ntwo\\n' | tether connect --framed --hello me --farewell bye 127.0.0.1:7000
  echo ping | tether connect --udp 127.0.0.1:5353
  tether connect --on-eof reset --events 127.0.0.1:7000 < /dev/null
  tether connect --connect-timeout 5 --keepalive 60,10,5 --user-timeout 30 192.0.2.10:7000
  tether connect --tls --pin \"$(openssl x509 -in server.pem -noout -fingerprint -sha256 | cut -d= -f2)\" 127.0.0.1:8443
  tether connect --tls --insecure --log tether::tls=debug 127.0.0.1:8443
  tether connect --dtls --pin 5E:0F:...:9A --srtp SRTP_AES128_CM_SHA1_80 --events 127.0.0.1:4433
  tether connect --dtls --ca ca.pem --server-name localhost 127.0.0.1:4433

Addresses: 1.2.3.4:80, [::1]:80, unix:/path, unix:rel/path, unix:@abstract, or a host
name (localhost:7000), resolved without blocking, its addresses raced (IPv6 first).
Exit status: 0 graceful end (normal, by_peer), 1 any other end, 2 usage error.";

const LISTEN_EXAMPLES: &str = "\
Examples:
  tether listen 127.0.0.1:7000 > received.bin
  tether listen --echo --events 127.0.0.1:7000
  tether listen --echo --max-conns 4 unix:/tmp/echo.sock
  tether listen --tls --cert server.pem --key server.key --alpn h2 --echo 127.0.0.1:8443
  tether listen --tls --cert server.pem --key server.key --ca ca.pem --require-client-cert 127.0.0.1:8443
  tether listen --framed --echo --farewell 'see you' 127.0.0.1:7000
  tether listen --framed --reject 'full, come back later' 127.0.0.1:7000
  tether listen --udp --echo 127.0.0.1:5353
  tether listen --dtls --echo --events 127.0.0.1:4433
  tether listen --dtls --cert ec.pem --key ec.key --srtp SRTP_AES128_CM_SHA1_80 127.0.0.1:4433
  tether listen --echo --keepalive 30 --user-timeout 20 127.0.0.1:7000
  tether listen --http ./site --events 127.0.0.1:8080
  tether listen --http ./site --http-keep-open --tls --cert server.pem --key server.key --alpn http/1.1 127.0.0.1:8443
  tether listen --http ./site unix:/tmp/site.sock

Port 0 lets the system pick; --events reports it in the 'bound' event. A host
name is resolved before listening, to its first address.
Exit status: 0 graceful end (normal, by_peer), 1 any other end, 2 usage error.";

/// What stdin's end does to the connection.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnEof {
    /// Shut down our sending side (FIN; TLS close_notify; framed FAREWELL) and
    /// keep printing what the peer sends until it ends.
    HalfClose,
    /// Close gracefully: FIN, then read and discard until the peer's end;
    /// past --linger, reset.
    Close,
    /// Reset now (RST): queued data is dropped.
    Reset,
    /// Drop the connection without telling the peer where the system allows
    /// it (TCP_REPAIR), else reset.
    Discard,
}

impl OnEof {
    /// The name written in `--events` (`half_close`, ...).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            OnEof::HalfClose => "half_close",
            OnEof::Close => "close",
            OnEof::Reset => "reset",
            OnEof::Discard => "discard",
        }
    }
}

/// The flags `connect` and `listen` share.
#[derive(Args, Debug)]
pub(crate) struct Common {
    /// Where to connect or listen: 1.2.3.4:80, [::1]:80, unix:/path,
    /// unix:@abstract, or a host name such as localhost:7000.
    #[arg(value_name = "ADDR")]
    pub(crate) addr: String,

    /// UDP: each line of stdin is one datagram, each datagram received one
    /// line.
    #[arg(long, help_heading = "Transport", conflicts_with_all = ["tls", "framed"])]
    pub(crate) udp: bool,
    /// TLS over TCP or a unix: socket.
    #[arg(long, help_heading = "Transport")]
    pub(crate) tls: bool,
    /// DTLS 1.2 over UDP (implies --udp): each line of stdin is one record in
    /// one datagram, each record received one line. Without --cert (listen)
    /// or --client-cert (connect), a self-signed ECDSA certificate is made
    /// for the run; its SHA-256 fingerprint is printed (a `certificate`
    /// event with --events) for the peer to --pin.
    #[arg(long, help_heading = "Transport", conflicts_with_all = ["tls", "framed"])]
    pub(crate) dtls: bool,
    /// Framed messages (length-prefixed, with connect and disconnect data):
    /// each line of stdin is one message, each message received one line.
    #[arg(long, help_heading = "Transport")]
    pub(crate) framed: bool,

    /// Disconnect data sent with our shutdown (FAREWELL); a listen --echo
    /// server sends it in answer to each client's.
    #[arg(long, value_name = "DATA", help_heading = "Framed")]
    pub(crate) farewell: Option<String>,

    /// PEM file of trust roots: the CA that signed the server, or the server's
    /// own self-signed certificate (connect; `system` or no --ca: the system's
    /// roots; with --dtls, a file is needed), or the CA that signs client
    /// certificates (listen; asks clients for one). With --tls or --dtls.
    #[arg(long, value_name = "FILE", help_heading = "TLS")]
    pub(crate) ca: Option<PathBuf>,
    /// ALPN protocols, most preferred first, comma-separated (h2,http/1.1).
    #[arg(long, value_name = "a,b", help_heading = "TLS")]
    pub(crate) alpn: Option<String>,
    /// DTLS-SRTP (with --dtls): the SRTP protection profiles accepted,
    /// comma-separated: SRTP_AES128_CM_SHA1_80, SRTP_AEAD_AES_128_GCM,
    /// SRTP_AEAD_AES_256_GCM (any case). The exported keys are printed in a
    /// `keying_material` event with --events.
    #[arg(long, value_name = "PROFILE[,PROFILE]", help_heading = "TLS")]
    pub(crate) srtp: Option<String>,

    /// End the connection with a reset (exit 1, reason idle_timeout) after SECS
    /// with no data either way.
    #[arg(
        long,
        value_name = "SECS",
        value_parser = options::positive_secs,
        allow_negative_numbers = true,
        help_heading = "Ending"
    )]
    pub(crate) idle_timeout: Option<Duration>,
    /// How long a graceful close may wait for the peer's end before it resets
    /// (reason linger_timeout; default 30). With --udp: how long to wait for
    /// more datagrams after stdin ends (connect: default 1).
    #[arg(
        long,
        value_name = "SECS",
        value_parser = options::secs,
        allow_negative_numbers = true,
        help_heading = "Ending"
    )]
    pub(crate) linger: Option<Duration>,
    /// TCP keepalive: probe after IDLE seconds without traffic, then every
    /// INTERVAL seconds (default: IDLE), giving up after COUNT unanswered
    /// probes (default 3) with reason lost. On listen, every connection
    /// taken inherits it.
    #[arg(
        long,
        value_name = "IDLE[,INTERVAL,COUNT]",
        value_parser = options::keepalive,
        allow_negative_numbers = true,
        help_heading = "Ending"
    )]
    pub(crate) keepalive: Option<tether::Keepalive>,
    /// TCP_USER_TIMEOUT: give the connection up (reason lost) when sent data
    /// stays unacknowledged for SECS. On listen, every connection taken
    /// inherits it.
    #[arg(
        long,
        value_name = "SECS",
        value_parser = options::positive_secs,
        allow_negative_numbers = true,
        help_heading = "Ending"
    )]
    pub(crate) user_timeout: Option<Duration>,
    /// What stdin's end does.
    #[arg(
        long,
        value_enum,
        value_name = "ACTION",
        default_value = "half-close",
        help_heading = "Ending"
    )]
    pub(crate) on_eof: OnEof,

    /// Print every lifecycle event as one JSON object per line on stderr.
    #[arg(long, help_heading = "Output")]
    pub(crate) events: bool,
    /// Library log lines on stderr, by tracing target and level
    /// (tether::tls=debug,tether::tcp=trace); without it, RUST_LOG.
    #[arg(long, value_name = "FILTER", help_heading = "Output")]
    pub(crate) log: Option<String>,
}

/// `tether connect`.
#[derive(Args, Debug)]
pub(crate) struct ConnectArgs {
    #[command(flatten)]
    pub(crate) common: Common,

    /// Give up a connect still not up after SECS (exit 1, reason
    /// connect_timeout), as nc -w.
    #[arg(
        long,
        value_name = "SECS",
        value_parser = options::positive_secs,
        allow_negative_numbers = true,
        help_heading = "Ending"
    )]
    pub(crate) connect_timeout: Option<Duration>,

    /// Connect data sent in the HELLO; the listener sees it before admitting us.
    #[arg(long, value_name = "DATA", help_heading = "Framed")]
    pub(crate) hello: Option<String>,

    /// Our certificate chain (PEM), for servers that ask for one (with
    /// --dtls: an ECDSA key; without it, a self-signed one is made).
    #[arg(long, value_name = "FILE", help_heading = "TLS")]
    pub(crate) client_cert: Option<PathBuf>,
    /// The private key of --client-cert (PEM).
    #[arg(long, value_name = "FILE", help_heading = "TLS")]
    pub(crate) client_key: Option<PathBuf>,
    /// The name to verify the server's certificate against, sent as SNI
    /// (default: the host name or IP address of ADDR).
    #[arg(long, value_name = "NAME", help_heading = "TLS")]
    pub(crate) server_name: Option<String>,
    /// Accept only a server certificate with this SHA-256 fingerprint (hex,
    /// with or without colons). Without --ca, the pin alone is the trust.
    /// With --dtls, one of --pin, --ca or --insecure is required.
    #[arg(long, value_name = "SHA256", help_heading = "TLS")]
    pub(crate) pin: Option<String>,
    /// Do not verify the server's certificate at all (debugging only; a
    /// warning is printed), as curl -k.
    #[arg(long, help_heading = "TLS", conflicts_with_all = ["ca", "pin"])]
    pub(crate) insecure: bool,
}

/// `tether listen`.
#[derive(Args, Debug)]
pub(crate) struct ListenArgs {
    #[command(flatten)]
    pub(crate) common: Common,

    /// Serve any number of clients at once, sending back what each sends
    /// (stdin is not read); runs until interrupted (Ctrl-C or SIGTERM end it gracefully).
    #[arg(long, help_heading = "Serving", conflicts_with = "on_eof")]
    pub(crate) echo: bool,
    /// With --echo or --http: at most N connections at once; the rest wait in the
    /// kernel's backlog.
    #[arg(
        long,
        value_name = "N",
        help_heading = "Serving",
        conflicts_with = "udp",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub(crate) max_conns: Option<u32>,
    /// Serve one client after another (nc -k), each relayed to stdin and
    /// stdout in turn; runs until interrupted (Ctrl-C or SIGTERM end it gracefully). stdin goes to the current client;
    /// after stdin's end, each later client gets --on-eof at once.
    #[arg(
        long,
        help_heading = "Serving",
        conflicts_with_all = ["echo", "reject", "udp", "dtls"]
    )]
    pub(crate) keep_open: bool,
    /// Serve the files under DIR over HTTP/1.1 (GET and HEAD) to any number
    /// of clients: Content-Type by extension, 404 for what is missing, 403
    /// for a path that would leave DIR (`..`, encoded or not, or a symlink
    /// pointing outside), a directory's index.html, no listings. Each
    /// connection closes after its response; runs until interrupted.
    #[arg(
        long,
        value_name = "DIR",
        help_heading = "Serving",
        conflicts_with_all = ["echo", "udp", "dtls", "framed", "keep_open", "on_eof"]
    )]
    pub(crate) http: Option<PathBuf>,
    /// With --http: keep connections open between requests (keep-alive, as
    /// HTTP/1.1's rules allow).
    #[arg(long, help_heading = "Serving")]
    pub(crate) http_keep_open: bool,
    /// Refuse every client with this reason data (REJECT); runs until interrupted (Ctrl-C or SIGTERM end it gracefully).
    #[arg(long, value_name = "DATA", help_heading = "Framed")]
    pub(crate) reject: Option<String>,

    /// Our certificate chain (PEM): required with --tls; with --dtls (ECDSA
    /// keys only) optional, else a self-signed one is made for the run.
    #[arg(long, value_name = "FILE", help_heading = "TLS")]
    pub(crate) cert: Option<PathBuf>,
    /// The private key of --cert (PEM).
    #[arg(long, value_name = "FILE", help_heading = "TLS")]
    pub(crate) key: Option<PathBuf>,
    /// Refuse clients without a certificate signed by --ca.
    #[arg(long, help_heading = "TLS")]
    pub(crate) require_client_cert: bool,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_error(e),
    };
    let filter = match &cli.command {
        Command::Connect(a) => a.common.log.clone(),
        Command::Listen(a) => a.common.log.clone(),
        Command::Demo(_) => None,
    };
    if let Err(message) = init_log(filter) {
        eprintln!("tether: {message}");
        return ExitCode::from(USAGE);
    }
    let run = match cli.command {
        Command::Demo(options) => return demo::run(&options),
        Command::Connect(args) => options::for_connect(&args).and_then(relay::connect),
        Command::Listen(args) => options::for_listen(&args).and_then(relay::listen),
    };
    match run {
        Ok(code) => ExitCode::from(code),
        Err(options::UsageError(message)) => {
            eprintln!("tether: {message}");
            ExitCode::from(USAGE)
        }
    }
}

/// Library log lines (tracing) on stderr: `--log FILTER`, else `RUST_LOG`,
/// else none.
fn init_log(filter: Option<String>) -> Result<(), String> {
    use tracing_subscriber::EnvFilter;
    let filter = match filter {
        Some(text) => EnvFilter::builder()
            .parse(&text)
            .map_err(|e| format!("--log {text:?}: {e}"))?,
        None => match std::env::var("RUST_LOG") {
            Ok(text) if !text.is_empty() => EnvFilter::builder()
                .parse(&text)
                .map_err(|e| format!("RUST_LOG {text:?}: {e}"))?,
            _ => return Ok(()),
        },
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    Ok(())
}

/// Help and version go out as clap writes them; an error becomes one line
/// (clap's own words and tips), exit status 2.
fn clap_error(e: clap::Error) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        _ => {
            eprintln!("{}", one_line(&e.render().to_string()));
            ExitCode::from(USAGE)
        }
    }
}

/// clap's error text as one line: the error, the items of a list it
/// announces, its tips, and which --help to read.
fn one_line(text: &str) -> String {
    let mut line = String::new();
    let mut tips = Vec::new();
    for l in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if l.starts_with("Usage: ") {
        } else if let Some(tip) = l.strip_prefix("tip: ") {
            tips.push(tip.trim_end_matches('.').to_string());
        } else if l.starts_with("For more information") {
        } else if line.is_empty() {
            line = l.to_string();
        } else {
            // An item of the list the first line announced ("...: --key").
            let sep = if line.ends_with(':') || l.starts_with('[') {
                " "
            } else {
                ", "
            };
            line.push_str(sep);
            line.push_str(l);
        }
    }
    let sub = std::env::args_os().nth(1);
    let command = match sub.as_ref().and_then(|s| s.to_str()) {
        Some(sub @ ("connect" | "listen" | "demo")) => format!("tether {sub}"),
        _ => "tether".to_string(),
    };
    tips.push(format!("see '{command} --help'"));
    format!("{line} ({})", tips.join("; "))
}
