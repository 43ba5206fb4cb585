//! Flags into library settings: the address checked, the TLS context built
//! from its files, the timeouts. Every problem is a [`UsageError`]: one line
//! that names the flag or file and what is wrong with it.

use std::path::Path;
use std::time::Duration;

use tether::{
    ClientCerts, Destination, DtlsContext, DtlsContextBuilder, Fingerprint, Keepalive, SockAddr,
    SrtpProfile, Timeouts, TlsContext, TlsContextBuilder, TlsError,
};

use crate::{Common, ConnectArgs, ListenArgs, OnEof};

/// A usage error: the message, without the `tether: ` prefix.
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

/// How bytes are carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A byte stream (TCP, TLS, Local): stdin and stdout as they are.
    Stream,
    /// Framed messages over a stream: one line, one message.
    Framed,
    /// UDP datagrams: one line, one datagram.
    Udp,
    /// DTLS over UDP: one line, one record in one datagram.
    Dtls,
}

impl Kind {
    /// One line of stdin is one message, and each message received is printed
    /// as one line.
    pub(crate) fn by_line(self) -> bool {
        self != Kind::Stream
    }
}

/// Everything `connect` and `listen` need, checked.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) addr: String,
    pub(crate) kind: Kind,
    pub(crate) tls: Option<Tls>,
    pub(crate) dtls: Option<Dtls>,
    /// Connect data (framed connect).
    pub(crate) hello: Vec<u8>,
    /// Disconnect data (framed).
    pub(crate) farewell: Option<Vec<u8>>,
    /// Refuse every client with this reason data (framed listen).
    pub(crate) reject: Option<Vec<u8>>,
    pub(crate) echo: bool,
    pub(crate) max_conns: Option<u32>,
    /// `listen --keep-open`: one client after another.
    pub(crate) keep_open: bool,
    /// `listen --http DIR`: the files served.
    pub(crate) http: Option<Http>,
    pub(crate) timeouts: Timeouts,
    pub(crate) keepalive: Option<Keepalive>,
    pub(crate) user_timeout: Option<Duration>,
    pub(crate) linger: Option<Duration>,
    pub(crate) on_eof: OnEof,
    pub(crate) events: bool,
}

/// `listen --http`: what is served, and how.
#[derive(Debug)]
pub(crate) struct Http {
    /// DIR, canonical: every file served is under it.
    pub(crate) root: std::path::PathBuf,
    /// `--http-keep-open`.
    pub(crate) keep_open: bool,
}

/// TLS settings: the context, and for a client the name to verify.
#[derive(Debug)]
pub(crate) struct Tls {
    pub(crate) ctx: TlsContext,
    pub(crate) server_name: String,
    /// `--insecure`: the server's certificate is not verified.
    pub(crate) insecure: bool,
}

/// DTLS settings: the context (with our certificate, made for the run when
/// none was given).
#[derive(Debug)]
pub(crate) struct Dtls {
    pub(crate) ctx: DtlsContext,
    /// `--insecure`: the server's certificate is not verified.
    pub(crate) insecure: bool,
}

/// Unanswered keepalive probes before giving up, when `--keepalive` does not
/// say.
pub(crate) const KEEPALIVE_COUNT: u32 = 3;

/// `--keepalive IDLE[,INTERVAL,COUNT]`: seconds, seconds, probes. INTERVAL
/// defaults to IDLE, COUNT to [`KEEPALIVE_COUNT`].
pub(crate) fn keepalive(text: &str) -> Result<Keepalive, String> {
    let parts: Vec<&str> = text.split(',').collect();
    if parts.len() > 3 {
        return Err(format!(
            "expected IDLE[,INTERVAL,COUNT], such as 60 or 60,10,5, not {text:?}"
        ));
    }
    // The kernel counts keepalive times in whole seconds.
    let whole = |what: &str, part: &str| -> Result<Duration, String> {
        match part.trim().parse::<u32>() {
            Ok(n) if (1..=i32::MAX as u32).contains(&n) => Ok(Duration::from_secs(n.into())),
            _ => Err(format!(
                "{what}: expected a whole number of seconds, 1 or more, not {part:?}"
            )),
        }
    };
    let idle = whole("IDLE", parts[0])?;
    let interval = match parts.get(1) {
        Some(p) => whole("INTERVAL", p)?,
        None => idle,
    };
    let count = match parts.get(2) {
        Some(p) => match p.trim().parse::<u32>() {
            Ok(n) if (1..=127).contains(&n) => n,
            _ => {
                return Err(format!(
                    "COUNT: expected a number of probes from 1 to 127, not {p:?}"
                ))
            }
        },
        None => KEEPALIVE_COUNT,
    };
    Ok(Keepalive {
        idle,
        interval,
        count,
    })
}

/// `--idle-timeout`: a positive number of seconds.
pub(crate) fn positive_secs(text: &str) -> Result<Duration, String> {
    match secs(text)? {
        d if d.is_zero() => Err("must be more than 0 seconds".into()),
        d => Ok(d),
    }
}

/// `--linger`: a number of seconds, 0 or more, fractions allowed.
pub(crate) fn secs(text: &str) -> Result<Duration, String> {
    let bad = || format!("expected a number of seconds, such as 5 or 0.5, not {text:?}");
    let value: f64 = text.trim().parse().map_err(|_| bad())?;
    if !value.is_finite() || value < 0.0 {
        return Err(bad());
    }
    Duration::try_from_secs_f64(value).map_err(|_| bad())
}

/// `--ca system`: the platform's trust roots (connect).
const SYSTEM: &str = "system";

/// A flag that only means something with another.
fn needs(given: bool, flag: &str, other: &str, why: &str) -> Result<(), UsageError> {
    if given {
        Err(UsageError(format!("{flag} needs {other}: {why}")))
    } else {
        Ok(())
    }
}

fn common(c: &Common) -> Result<(Settings, Destination), UsageError> {
    let addr = Destination::parse(&c.addr).map_err(|e| UsageError(e.to_string()))?;
    if !c.framed {
        needs(
            c.farewell.is_some(),
            "--farewell",
            "--framed",
            "only framed connections carry disconnect data",
        )?;
    }
    if !c.tls && !c.dtls {
        let tls = "it is a TLS setting";
        needs(c.ca.is_some(), "--ca", "--tls or --dtls", tls)?;
    }
    if !c.tls {
        needs(
            c.alpn.is_some(),
            "--alpn",
            "--tls",
            "it is a TLS setting (DTLS here carries no ALPN)",
        )?;
    }
    needs(
        c.srtp.is_some() && !c.dtls,
        "--srtp",
        "--dtls",
        "SRTP keys come from a DTLS handshake",
    )?;
    let kind = if c.dtls {
        if !matches!(
            &addr,
            Destination::Addr(SockAddr::Inet(_)) | Destination::Name { .. }
        ) {
            return Err(UsageError(format!(
                "--dtls needs an ip:port address, not {:?}",
                c.addr
            )));
        }
        Kind::Dtls
    } else if c.udp {
        if matches!(&addr, Destination::Addr(a) if a.is_local()) {
            return Err(UsageError(format!(
                "--udp needs an ip:port address, not {:?}",
                c.addr
            )));
        }
        Kind::Udp
    } else if c.framed {
        Kind::Framed
    } else {
        Kind::Stream
    };
    let settings = Settings {
        addr: c.addr.clone(),
        kind,
        tls: None,
        dtls: None,
        hello: Vec::new(),
        farewell: c.farewell.as_ref().map(|f| f.as_bytes().to_vec()),
        reject: None,
        echo: false,
        max_conns: None,
        keep_open: false,
        http: None,
        timeouts: Timeouts {
            idle: c.idle_timeout,
            ..Timeouts::default()
        },
        keepalive: c.keepalive,
        user_timeout: c.user_timeout,
        linger: c.linger,
        on_eof: c.on_eof,
        events: c.events,
    };
    Ok((settings, addr))
}

/// The files of a TLS context, by flag, for error messages.
#[derive(Default)]
struct Files<'a> {
    cert: Option<(&'static str, &'a Path)>,
    key: Option<(&'static str, &'a Path)>,
    ca: Option<&'a Path>,
}

/// The settings of `tether connect`.
pub(crate) fn for_connect(args: &ConnectArgs) -> Result<Settings, UsageError> {
    let c = &args.common;
    let (mut settings, addr) = common(c)?;
    // A UDP socket's peer is one address: a name's first, resolved before the
    // loop runs. A stream connect resolves on its own, off the loop.
    if let (true, Destination::Name { host, port }) = (c.udp || c.dtls, &addr) {
        settings.addr = resolve_first(host, *port)?;
    }
    if !c.framed {
        needs(
            args.hello.is_some(),
            "--hello",
            "--framed",
            "only framed connections carry connect data",
        )?;
    }
    if !c.tls && !c.dtls {
        let tls = "it is a TLS setting";
        let either = "--tls or --dtls";
        needs(args.client_cert.is_some(), "--client-cert", either, tls)?;
        needs(args.client_key.is_some(), "--client-key", either, tls)?;
        needs(args.server_name.is_some(), "--server-name", either, tls)?;
        needs(args.pin.is_some(), "--pin", either, tls)?;
        needs(args.insecure, "--insecure", either, tls)?;
    }
    let pin = match &args.pin {
        Some(text) => Some(
            text.parse::<Fingerprint>()
                .map_err(|e| UsageError(format!("--pin: {e}")))?,
        ),
        None => None,
    };
    needs(
        args.client_cert.is_some() && args.client_key.is_none(),
        "--client-cert",
        "--client-key FILE",
        "the certificate's private key",
    )?;
    needs(
        args.client_key.is_some() && args.client_cert.is_none(),
        "--client-key",
        "--client-cert FILE",
        "the certificate the key belongs to",
    )?;
    settings.timeouts.connect = args.connect_timeout;
    settings.hello = args
        .hello
        .as_ref()
        .map_or_else(Vec::new, |h| h.as_bytes().to_vec());
    if c.tls {
        let server_name = match (&args.server_name, &addr) {
            (Some(name), _) => name.clone(),
            (None, Destination::Addr(SockAddr::Inet(a))) => a.ip().to_string(),
            // The name as given; a name-scoped IPv6 address without its scope.
            (None, Destination::Name { host, .. }) => host
                .split_once('%')
                .map_or(host.as_str(), |(ip, _)| ip)
                .to_owned(),
            (None, _) => {
                return Err(UsageError(format!(
                "--tls over {:?} needs --server-name NAME: the name on the server's certificate",
                c.addr
            )))
            }
        };
        let system = c.ca.as_deref() == Some(Path::new(SYSTEM));
        let mut files = Files {
            ca: c.ca.as_deref().filter(|_| !system),
            ..Files::default()
        };
        // Without --ca, the platform's trust roots, as curl uses them; with
        // --pin alone, the pin is the trust; with --insecure, nothing is.
        let mut builder = match (&files.ca, &pin, args.insecure) {
            (_, _, true) => TlsContext::builder().insecure_no_verification(),
            (Some(ca), _, _) => TlsContext::builder()
                .roots_file(ca)
                .map_err(|e| file_error(e, &files))?,
            (None, Some(_), false) if !system => TlsContext::builder(),
            (None, _, false) => TlsContext::builder().system_roots(),
        };
        if let Some(pin) = pin {
            builder = builder.pin(pin);
        }
        if let (Some(cert), Some(key)) = (&args.client_cert, &args.client_key) {
            files.cert = Some(("--client-cert", cert));
            files.key = Some(("--client-key", key));
            builder = builder
                .certificate_files(cert, key)
                .map_err(|e| file_error(e, &files))?;
        }
        let ctx = finish(builder, c, &files)?;
        settings.tls = Some(Tls {
            ctx,
            server_name,
            insecure: args.insecure,
        });
    }
    if c.dtls {
        settings.dtls = Some(dtls_connect(args, &addr, pin)?);
    }
    Ok(settings)
}

/// The DTLS context of `connect --dtls`: a client must verify the server by
/// --pin, --ca FILE, or not at all (--insecure).
fn dtls_connect(
    args: &ConnectArgs,
    addr: &Destination,
    pin: Option<Fingerprint>,
) -> Result<Dtls, UsageError> {
    let c = &args.common;
    if c.ca.as_deref() == Some(Path::new(SYSTEM)) {
        return Err(UsageError(
            "--dtls cannot use the system's trust roots (--ca system): give --pin SHA256, \
             --ca FILE or --insecure"
                .into(),
        ));
    }
    if pin.is_none() && c.ca.is_none() && !args.insecure {
        return Err(UsageError(
            "connect --dtls needs --pin SHA256, --ca FILE or --insecure: a DTLS client must \
             verify the server (a generated certificate is trusted by its fingerprint, \
             which the server prints)"
                .into(),
        ));
    }
    let mut files = Files {
        ca: c.ca.as_deref(),
        ..Files::default()
    };
    let mut builder = DtlsContext::builder();
    if args.insecure {
        builder = builder.insecure_no_verification();
    }
    if let Some(ca) = &c.ca {
        builder = builder.roots_file(ca).map_err(|e| file_error(e, &files))?;
    }
    if let Some(pin) = pin {
        builder = builder.pin(pin);
    }
    match (&args.server_name, addr) {
        (Some(name), _) => builder = builder.server_name(name),
        (None, Destination::Name { host, .. }) => builder = builder.server_name(host),
        _ => {}
    }
    if let (Some(cert), Some(key)) = (&args.client_cert, &args.client_key) {
        files.cert = Some(("--client-cert", cert));
        files.key = Some(("--client-key", key));
        builder = builder
            .certificate_files(cert, key)
            .map_err(|e| file_error(e, &files))?;
    }
    let ctx = finish_dtls(builder, c, &files)?;
    Ok(Dtls {
        ctx,
        insecure: args.insecure,
    })
}

/// The DTLS context of `listen --dtls`: our certificate (or one made for the
/// run) and, with --ca, the CA of client certificates.
fn dtls_listen(args: &ListenArgs) -> Result<Dtls, UsageError> {
    let c = &args.common;
    let files = Files {
        cert: args.cert.as_deref().map(|p| ("--cert", p)),
        key: args.key.as_deref().map(|p| ("--key", p)),
        ca: c.ca.as_deref(),
    };
    let mut builder = DtlsContext::builder();
    match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => {
            builder = builder
                .certificate_files(cert, key)
                .map_err(|e| file_error(e, &files))?;
        }
        (None, None) => {}
        (Some(_), None) => {
            return Err(UsageError(
                "--cert needs --key FILE: the certificate's private key".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(UsageError(
                "--key needs --cert FILE: the certificate the key belongs to".into(),
            ))
        }
    }
    if let Some(ca) = &c.ca {
        builder = builder
            .roots_file(ca)
            .map_err(|e| file_error(e, &files))?
            .client_certs(if args.require_client_cert {
                ClientCerts::Required
            } else {
                ClientCerts::Optional
            });
    }
    let ctx = finish_dtls(builder, c, &files)?;
    Ok(Dtls {
        ctx,
        insecure: false,
    })
}

/// `--srtp PROFILE[,PROFILE]`: the profiles, each named as RFC 5764 and
/// OpenSSL name them.
pub(crate) fn srtp_profiles(list: &str) -> Result<Vec<SrtpProfile>, UsageError> {
    let valid = || {
        SrtpProfile::ALL
            .iter()
            .rev()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    list.split(',')
        .map(|name| {
            name.trim().parse::<SrtpProfile>().map_err(|_| {
                UsageError(format!(
                    "--srtp: unknown SRTP profile {name:?}; valid names: {}",
                    valid()
                ))
            })
        })
        .collect()
}

/// Add the SRTP profiles and build the DTLS context.
fn finish_dtls(
    builder: DtlsContextBuilder,
    c: &Common,
    files: &Files<'_>,
) -> Result<DtlsContext, UsageError> {
    let mut builder = builder;
    if let Some(list) = &c.srtp {
        builder = builder.srtp(&srtp_profiles(list)?);
    }
    builder.build().map_err(|e| file_error(e, files))
}

/// The settings of `tether listen`.
pub(crate) fn for_listen(args: &ListenArgs) -> Result<Settings, UsageError> {
    let c = &args.common;
    let (mut settings, addr) = common(c)?;
    // A listener binds one address: a name's first, resolved before the loop runs.
    if let Destination::Name { host, port } = &addr {
        settings.addr = resolve_first(host, *port)?;
    }
    if !c.framed {
        needs(
            args.reject.is_some(),
            "--reject",
            "--framed",
            "only framed connections carry reason data",
        )?;
    }
    if !c.tls && !c.dtls {
        let tls = "it is a TLS setting";
        let either = "--tls or --dtls";
        needs(args.cert.is_some(), "--cert", either, tls)?;
        needs(args.key.is_some(), "--key", either, tls)?;
        needs(
            args.require_client_cert,
            "--require-client-cert",
            either,
            tls,
        )?;
    }
    needs(
        args.max_conns.is_some() && !args.echo && args.http.is_none(),
        "--max-conns",
        "--echo or --http",
        "without one, listen serves one connection",
    )?;
    needs(
        args.http_keep_open && args.http.is_none(),
        "--http-keep-open",
        "--http DIR",
        "it keeps HTTP connections open between requests",
    )?;
    if let Some(dir) = &args.http {
        let root = std::fs::canonicalize(dir)
            .map_err(|e| UsageError(format!("--http {}: {e}", dir.display())))?;
        if !root.is_dir() {
            return Err(UsageError(format!(
                "--http {}: not a directory",
                dir.display()
            )));
        }
        settings.http = Some(Http {
            root,
            keep_open: args.http_keep_open,
        });
    }
    needs(
        args.require_client_cert && c.ca.is_none(),
        "--require-client-cert",
        "--ca FILE",
        "the CA that signs the client certificates",
    )?;
    settings.echo = args.echo;
    settings.max_conns = args.max_conns;
    settings.keep_open = args.keep_open;
    settings.reject = args.reject.as_ref().map(|r| r.as_bytes().to_vec());
    if c.tls {
        let (Some(cert), Some(key)) = (&args.cert, &args.key) else {
            return Err(UsageError(
                "listen --tls needs --cert FILE and --key FILE: the server's certificate \
                 chain and its private key"
                    .into(),
            ));
        };
        let files = Files {
            cert: Some(("--cert", cert)),
            key: Some(("--key", key)),
            ca: c.ca.as_deref(),
        };
        let mut builder = TlsContext::builder()
            .certificate_files(cert, key)
            .map_err(|e| file_error(e, &files))?;
        if let Some(ca) = &c.ca {
            builder = builder
                .roots_file(ca)
                .map_err(|e| file_error(e, &files))?
                .client_certs(if args.require_client_cert {
                    ClientCerts::Required
                } else {
                    ClientCerts::Optional
                });
        }
        let ctx = finish(builder, c, &files)?;
        settings.tls = Some(Tls {
            ctx,
            server_name: String::new(),
            insecure: false,
        });
    }
    if c.dtls {
        settings.dtls = Some(dtls_listen(args)?);
    }
    Ok(settings)
}

/// Add the ALPN list and build the context.
fn finish(
    builder: TlsContextBuilder,
    c: &Common,
    files: &Files<'_>,
) -> Result<TlsContext, UsageError> {
    let mut builder = builder;
    if let Some(list) = &c.alpn {
        let protocols: Vec<&str> = list.split(',').collect();
        if protocols.iter().any(|p| p.is_empty()) {
            return Err(UsageError(format!(
                "--alpn {list:?} has an empty protocol name; give names separated by commas, \
                 such as h2,http/1.1"
            )));
        }
        builder = builder
            .alpn(&protocols)
            .map_err(|e| UsageError(format!("--alpn: {e}")))?;
    }
    builder.build().map_err(|e| file_error(e, files))
}

/// A TLS error as one line that names the flag and the file it concerns.
fn file_error(e: TlsError, files: &Files<'_>) -> UsageError {
    let named = |file: Option<(&str, &Path)>| {
        file.map_or_else(
            || "TLS".to_string(),
            |(flag, path)| format!("{flag} {}", path.display()),
        )
    };
    let ca = files.ca.map(|p| ("--ca", p));
    let which = match &e {
        // The message names the file; say which flag gave it.
        TlsError::Read { path, .. } => [files.cert, files.key, ca]
            .into_iter()
            .flatten()
            .find(|(_, p)| p.display().to_string() == *path)
            .map_or("TLS", |(flag, _)| flag)
            .to_string(),
        TlsError::BadPem { what, .. } if *what == "private key" => named(files.key),
        TlsError::BadPem { what, .. } if *what == "trust roots" => named(ca),
        TlsError::NoPrivateKey => named(files.key),
        TlsError::BadRoot(_) => named(ca),
        TlsError::KeyMismatch => format!("{} and {}", named(files.key), named(files.cert)),
        TlsError::EmptyChain | TlsError::BadPem { .. } => named(files.cert),
        _ => "TLS".to_string(),
    };
    if let TlsError::BadPem { what, detail } = &e {
        return UsageError(format!("{which}: {}", bad_pem(what, detail)));
    }
    UsageError(format!("{which}: {e}"))
}

/// Why PEM did not parse, in words: the PEM parser's own messages carry
/// debug-formatted bytes (`InvalidCharacter(33)`, `[45, 45, ...]`).
fn bad_pem(what: &str, detail: &str) -> String {
    let verb = if what.ends_with('s') { "are" } else { "is" };
    let why = if detail.starts_with("base64 decode error") {
        "the base64 text inside a BEGIN/END section is broken"
    } else if detail.starts_with("missing section end marker") {
        "a BEGIN line has no matching END line"
    } else if detail.starts_with("illegal section start") {
        "a BEGIN line is malformed"
    } else {
        detail
    };
    format!("the {what} {verb} not valid PEM: {why}")
}

/// The first address `host` resolves to, as an address string: for what takes
/// no name (binding, a UDP peer), resolved at the start, before the loop runs.
pub(crate) fn resolve_first(host: &str, port: u16) -> Result<String, UsageError> {
    use std::net::ToSocketAddrs;
    let first = (host, port)
        .to_socket_addrs()
        .map_err(|e| UsageError(format!("cannot resolve {host:?}: {e}")))?
        .next();
    match first {
        Some(a) => Ok(a.to_string()),
        None => Err(UsageError(format!("{host:?} has no address"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_parts_and_defaults() {
        let k = keepalive("60").unwrap();
        let s = Duration::from_secs;
        assert_eq!(
            (k.idle, k.interval, k.count),
            (s(60), s(60), KEEPALIVE_COUNT)
        );
        let k = keepalive("60,10").unwrap();
        assert_eq!(
            (k.idle, k.interval, k.count),
            (s(60), s(10), KEEPALIVE_COUNT)
        );
        let k = keepalive("30,5,9").unwrap();
        assert_eq!((k.idle, k.interval, k.count), (s(30), s(5), 9));
    }

    #[test]
    fn keepalive_errors() {
        for bad in [
            "", "0", "-1", "1.5", "x", "60,", "60,0", "60,10,0", "60,10,x", "1,2,3,4",
        ] {
            assert!(keepalive(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(keepalive("60,10,x").unwrap_err().contains("COUNT"));
        assert!(keepalive("1.5").unwrap_err().contains("IDLE"));
    }
}
