//! Parsing and printing of the addresses tether binds and connects to.
//!
//! The parser is deliberately strict and never touches the network or the
//! filesystem: an address string either names exactly one socket address or
//! is rejected with an error that says why. [`SockAddr`] is an address that
//! needs no lookup; [`Destination`] is what a connect may also take: a host
//! name (or an IPv6 address scoped by interface name) with a port, which the
//! driver resolves, because resolution is I/O and this crate does none.

use std::error::Error;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::path::PathBuf;
use std::str::FromStr;

/// Longest Unix socket path or abstract name, in bytes.
///
/// `sun_path` is 108 bytes on Linux; a path needs one of them for its NUL
/// terminator and an abstract name needs one for its leading NUL.
const MAX_UNIX_LEN: usize = 107;

/// Longest host name DNS allows, in bytes.
const MAX_HOST_LEN: usize = 253;

/// Longest interface name (`IFNAMSIZ` less its NUL).
const MAX_IFNAME_LEN: usize = 15;

/// An address tether can bind or connect to.
///
/// Its [`Display`](fmt::Display) form is the same syntax [`SockAddr::parse`]
/// accepts, so an address can be logged, stored in a config file and read
/// back unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SockAddr {
    /// An IPv4 or IPv6 address with a port (TCP or UDP).
    ///
    /// The IPv6 flow label is not part of the text form, so it does not
    /// survive a round trip through [`Display`](fmt::Display).
    Inet(SocketAddr),
    /// A Unix-domain socket at a filesystem path: `unix:/path`.
    Unix(PathBuf),
    /// A Linux abstract Unix-domain socket name: `unix:@name` (bytes after the `@`).
    ///
    /// Abstract sockets live outside the filesystem, so they need no cleanup
    /// and no directory permissions.
    Abstract(Vec<u8>),
}

impl SockAddr {
    /// Parses an address string.
    ///
    /// Accepted forms:
    ///
    /// * `1.2.3.4:80`: IPv4 as a strict dotted quad, then a port.
    /// * `[::1]:80`, `[fe80::1%2]:80`: IPv6 always in brackets, with an
    ///   optional numeric scope id. An interface name as scope id
    ///   (`[fe80::1%lo]:80`) needs a system lookup: it is a
    ///   [`AddrError::HostName`] here and a [`Destination::Name`] for
    ///   [`Destination::parse`].
    /// * `unix:/path`: a Unix socket path of at most 107 bytes; a relative
    ///   one (`unix:echo.sock`) is relative to the working directory, as
    ///   `nc -U` takes it.
    /// * `unix:@name`: a Linux abstract socket name of at most 107 bytes.
    ///
    /// Ports are decimal from 0 to 65535 without sign or leading zeros, so
    /// every address has exactly one spelling; port 0 asks the OS to choose.
    /// Surrounding whitespace is an error rather than silently trimmed, so a
    /// stray space in a config file is noticed instead of hidden.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use tether_proto::addr::{AddrError, SockAddr};
    ///
    /// let addr = SockAddr::parse("[::1]:8080")?;
    /// assert_eq!(addr, SockAddr::Inet("[::1]:8080".parse::<SocketAddr>().unwrap()));
    /// assert_eq!(addr.to_string(), "[::1]:8080");
    ///
    /// assert!(SockAddr::parse("unix:@tether").unwrap().is_local());
    /// assert_eq!(
    ///     SockAddr::parse("localhost:80"),
    ///     Err(AddrError::HostName("localhost:80".to_owned()))
    /// );
    /// # Ok::<(), AddrError>(())
    /// ```
    pub fn parse(s: &str) -> Result<SockAddr, AddrError> {
        if s.trim().is_empty() {
            return Err(AddrError::Empty);
        }
        if s.trim() != s {
            return Err(AddrError::Whitespace(s.to_owned()));
        }
        if let Some(rest) = s.strip_prefix("unix:") {
            return parse_unix(s, rest);
        }
        // `get` rather than slicing: the input may start with a multi-byte char.
        let looks_unix = s.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("unix:"));
        if looks_unix || s.contains("://") {
            return Err(AddrError::UnknownScheme(s.to_owned()));
        }
        parse_inet(s).map(SockAddr::Inet)
    }

    /// Returns `true` for Unix-domain addresses (paths and abstract names).
    ///
    /// Local sockets cannot be reached from another machine, which matters
    /// for choices such as skipping TLS or Nagle tuning.
    pub fn is_local(&self) -> bool {
        matches!(self, SockAddr::Unix(_) | SockAddr::Abstract(_))
    }
}

fn parse_unix(s: &str, rest: &str) -> Result<SockAddr, AddrError> {
    let err = |make: fn(String) -> AddrError| Err(make(s.to_owned()));
    if let Some(name) = rest.strip_prefix('@') {
        if name.is_empty() {
            return Err(AddrError::EmptyAbstractName);
        }
        // The kernel would accept NUL in an abstract name, but such a name
        // could not be typed, printed or passed on a command line faithfully.
        if name.contains('\0') {
            return err(AddrError::NulInPath);
        }
        if name.len() > MAX_UNIX_LEN {
            return err(AddrError::PathTooLong);
        }
        return Ok(SockAddr::Abstract(name.as_bytes().to_vec()));
    }
    if rest.is_empty() {
        return Err(AddrError::EmptyPath);
    }
    if rest.contains('\0') {
        return err(AddrError::NulInPath);
    }
    if rest.len() > MAX_UNIX_LEN {
        return err(AddrError::PathTooLong);
    }
    Ok(SockAddr::Unix(PathBuf::from(rest)))
}

fn parse_inet(s: &str) -> Result<SocketAddr, AddrError> {
    let err = |make: fn(String) -> AddrError| Err(make(s.to_owned()));
    if let Some(bracketed) = s.strip_prefix('[') {
        let Some((inside, after)) = bracketed.split_once(']') else {
            return err(AddrError::BadBrackets);
        };
        if inside.is_empty() || inside.contains('[') {
            return err(AddrError::BadBrackets);
        }
        // Scoped by an interface name: well formed, but a name.
        let ip = match parse_ipv6(inside) {
            Some(ip) => Some(ip),
            None if is_scoped_by_name(inside) => None,
            None => return err(AddrError::BadIp),
        };
        if after.is_empty() {
            return err(AddrError::MissingPort);
        }
        let Some(port) = after.strip_prefix(':') else {
            return err(AddrError::BadBrackets);
        };
        let port = parse_port(port).ok_or_else(|| AddrError::BadPort(s.to_owned()))?;
        let Some(ip) = ip else {
            return err(AddrError::HostName);
        };
        return Ok(SocketAddr::V6(SocketAddrV6::new(ip.0, port, 0, ip.1)));
    }
    if s.contains(['[', ']']) {
        return err(AddrError::BadBrackets);
    }
    let Some((host, port)) = s.split_once(':') else {
        return Err(host_error(s, s).unwrap_or_else(|| AddrError::MissingPort(s.to_owned())));
    };
    if port.contains(':') {
        // Two or more colons: most likely IPv6 written without brackets,
        // which is ambiguous because the port would look like a last group.
        let before_last = s.rsplit_once(':').map_or(s, |(h, _)| h);
        if parse_ipv6(s).is_some() || parse_ipv6(before_last).is_some() {
            return err(AddrError::BadBrackets);
        }
        if is_scheme(host) {
            return err(AddrError::UnknownScheme);
        }
    }
    if host.is_empty() {
        return err(AddrError::MissingHost);
    }
    if let Some(e) = host_error(s, host) {
        return Err(e);
    }
    let ip: Ipv4Addr = host.parse().map_err(|_| AddrError::BadIp(s.to_owned()))?;
    let port = parse_port(port).ok_or_else(|| AddrError::BadPort(s.to_owned()))?;
    Ok(SocketAddr::V4(SocketAddrV4::new(ip, port)))
}

/// Says what is wrong with an unbracketed host, or `None` if it is valid IPv4.
fn host_error(s: &str, host: &str) -> Option<AddrError> {
    if host.parse::<Ipv4Addr>().is_ok() {
        return None;
    }
    Some(if is_host_name(host) {
        AddrError::HostName(s.to_owned())
    } else {
        AddrError::BadIp(s.to_owned())
    })
}

/// Parses `addr` or `addr%scope` where the scope id is numeric.
fn parse_ipv6(s: &str) -> Option<(Ipv6Addr, u32)> {
    let (addr, scope) = match s.split_once('%') {
        Some((addr, scope)) => (addr, parse_decimal(scope)?),
        None => (s, 0),
    };
    Some((addr.parse().ok()?, scope))
}

/// `addr%name`: an IPv6 address scoped by an interface name, which only the
/// system can turn into an index.
fn is_scoped_by_name(s: &str) -> bool {
    s.split_once('%').is_some_and(|(addr, scope)| {
        addr.parse::<Ipv6Addr>().is_ok()
            && !scope.is_empty()
            && scope.len() <= MAX_IFNAME_LEN
            && !scope.bytes().all(|b| b.is_ascii_digit())
            && scope
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    })
}

/// A host name as DNS and `/etc/hosts` spell them: letters, digits, `-`,
/// `_` and `.`, not all digits and dots (that is a malformed IPv4 address).
fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= MAX_HOST_LEN
        && !host.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

fn parse_port(s: &str) -> Option<u16> {
    parse_decimal(s)?.try_into().ok()
}

/// Strict decimal: digits only, no sign, no leading zeros (except "0").
fn parse_decimal(s: &str) -> Option<u32> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if canonical {
        s.parse().ok()
    } else {
        None
    }
}

/// A URI-style scheme name such as `tcp` or `udp`.
fn is_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

impl FromStr for SockAddr {
    type Err = AddrError;

    /// Same as [`SockAddr::parse`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SockAddr::parse(s)
    }
}

impl fmt::Display for SockAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SockAddr::Inet(addr) => write!(f, "{addr}"),
            SockAddr::Unix(path) => write!(f, "unix:{}", path.display()),
            // Lossy because a name built by hand need not be UTF-8; names
            // produced by `parse` always are, so those round-trip exactly.
            SockAddr::Abstract(name) => write!(f, "unix:@{}", String::from_utf8_lossy(name)),
        }
    }
}

impl From<SocketAddr> for SockAddr {
    fn from(addr: SocketAddr) -> Self {
        SockAddr::Inet(addr)
    }
}

/// Why a string is not an address.
///
/// Variants that carry a `String` hold the whole input, so the message can
/// quote it. The enum is non-exhaustive so that new checks can be added
/// without a breaking change.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddrError {
    /// The input is empty or only whitespace.
    Empty,
    /// The input has leading or trailing whitespace.
    ///
    /// Rejected rather than trimmed so that a stray space or newline in a
    /// config file is reported instead of silently accepted.
    Whitespace(String),
    /// The input starts with a scheme other than `unix:` (for example
    /// `tcp://` or `Unix:`); schemes are case-sensitive.
    UnknownScheme(String),
    /// The host is a name such as `localhost` (or an IPv6 address scoped by
    /// an interface name), which only a lookup turns into an address:
    /// [`SockAddr::parse`] refuses it, [`Destination::parse`] takes it.
    HostName(String),
    /// The input has a port but nothing before the colon, as in `:80`.
    MissingHost(String),
    /// The input is an IP address without a port, as in `1.2.3.4` or `[::1]`.
    MissingPort(String),
    /// The port is not a canonical decimal number from 0 to 65535.
    BadPort(String),
    /// The IP address is malformed, or is IPv4 written inside brackets.
    BadIp(String),
    /// Brackets are unbalanced, empty or nested, or an IPv6 address was
    /// written without them.
    BadBrackets(String),
    /// The input is exactly `unix:`, with no path.
    EmptyPath,
    /// The input is exactly `unix:@`, with no abstract name.
    EmptyAbstractName,
    /// The Unix socket path is relative. No longer returned: a relative
    /// path is taken relative to the working directory.
    RelativePath(String),
    /// The path or abstract name is longer than 107 bytes, which does not
    /// fit in `sun_path`.
    PathTooLong(String),
    /// The path or abstract name contains a NUL byte.
    NulInPath(String),
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrError::Empty => f.write_str(
                "the address is empty; expected ip:port, [ipv6]:port, unix:/path or unix:@name",
            ),
            AddrError::Whitespace(s) => {
                write!(f, "address {s:?} has leading or trailing whitespace")
            }
            AddrError::UnknownScheme(s) => write!(
                f,
                "address {s:?} has an unknown scheme; only lower-case \"unix:\" is recognised \
                 and IP addresses take no scheme, as in 1.2.3.4:80"
            ),
            AddrError::HostName(s) => write!(
                f,
                "address {s:?} contains a host name, which needs resolving; only a connect \
                 takes one, anything else needs an IP address such as 127.0.0.1:80"
            ),
            AddrError::MissingHost(s) => write!(
                f,
                "address {s:?} has no host; use 0.0.0.0 or [::] to mean every interface"
            ),
            AddrError::MissingPort(s) => write!(
                f,
                "address {s:?} has no port; add one as in 1.2.3.4:80 or [::1]:80 \
                 (port 0 lets the OS choose)"
            ),
            AddrError::BadPort(s) => write!(
                f,
                "address {s:?} has an invalid port; expected a number from 0 to 65535 \
                 without sign, spaces or leading zeros"
            ),
            AddrError::BadIp(s) => write!(
                f,
                "address {s:?} has an invalid IP address; expected a dotted-quad IPv4 \
                 address such as 1.2.3.4 or a bracketed IPv6 address such as [::1]"
            ),
            AddrError::BadBrackets(s) => write!(
                f,
                "address {s:?} has misplaced brackets; write IPv6 addresses as [addr]:port, \
                 as in [::1]:80"
            ),
            AddrError::EmptyPath => f.write_str(
                "address \"unix:\" has no path; write unix:/absolute/path or unix:@name",
            ),
            AddrError::EmptyAbstractName => {
                f.write_str("address \"unix:@\" has no abstract socket name after the '@'")
            }
            AddrError::RelativePath(s) => write!(
                f,
                "address {s:?} has a relative path, which is not accepted here"
            ),
            AddrError::PathTooLong(s) => write!(
                f,
                "address {s:?} is too long; a Unix socket path or abstract name may be \
                 at most {MAX_UNIX_LEN} bytes"
            ),
            AddrError::NulInPath(s) => write!(
                f,
                "address {s:?} contains a NUL byte, which a Unix socket path or abstract \
                 name cannot hold"
            ),
        }
    }
}

impl Error for AddrError {}

/// Where a connect goes: an address, or a name the driver resolves first.
///
/// Its [`Display`](fmt::Display) form is the one [`Destination::parse`]
/// accepts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Destination {
    /// An address that needs no lookup.
    Addr(SockAddr),
    /// A host name (`db.internal`, `localhost`) or an IPv6 address scoped by
    /// an interface name (`fe80::1%eth0`, written in brackets), and a port.
    Name {
        /// The name, without brackets.
        host: String,
        /// The port.
        port: u16,
    },
}

impl Destination {
    /// Parses what [`SockAddr::parse`] accepts, and also `host:port` with a
    /// host name (`localhost:7000`, `db.internal:5432`) and
    /// `[ipv6%interface]:port` (`[fe80::1%lo]:7000`).
    ///
    /// ```
    /// use tether_proto::addr::{Destination, SockAddr};
    ///
    /// let name = Destination::parse("localhost:7000").unwrap();
    /// assert_eq!(name, Destination::Name { host: "localhost".into(), port: 7000 });
    /// assert_eq!(name.to_string(), "localhost:7000");
    /// assert_eq!(
    ///     Destination::parse("unix:echo.sock").unwrap(),
    ///     Destination::Addr(SockAddr::Unix("echo.sock".into()))
    /// );
    /// ```
    pub fn parse(s: &str) -> Result<Destination, AddrError> {
        match SockAddr::parse(s) {
            Ok(addr) => Ok(Destination::Addr(addr)),
            Err(AddrError::HostName(_)) => parse_name(s),
            Err(e) => Err(e),
        }
    }

    /// The host name, if this is a name.
    pub fn host(&self) -> Option<&str> {
        match self {
            Destination::Addr(_) => None,
            Destination::Name { host, .. } => Some(host),
        }
    }
}

/// `s` is a name as `SockAddr::parse` saw it; now its port.
fn parse_name(s: &str) -> Result<Destination, AddrError> {
    let (host, port) = match s.strip_prefix('[') {
        // Only a name-scoped IPv6 address is a bracketed name.
        Some(bracketed) => match bracketed.split_once("]:") {
            Some((inside, port)) => (inside, port),
            None => return Err(AddrError::MissingPort(s.to_owned())),
        },
        None => match s.split_once(':') {
            Some((host, port)) if is_host_name(host) => (host, port),
            Some(_) => return Err(AddrError::BadIp(s.to_owned())),
            None => return Err(AddrError::MissingPort(s.to_owned())),
        },
    };
    let port = parse_port(port).ok_or_else(|| AddrError::BadPort(s.to_owned()))?;
    Ok(Destination::Name {
        host: host.to_owned(),
        port,
    })
}

impl FromStr for Destination {
    type Err = AddrError;

    /// Same as [`Destination::parse`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Destination::parse(s)
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Addr(addr) => write!(f, "{addr}"),
            Destination::Name { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Destination::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

impl From<SockAddr> for Destination {
    fn from(addr: SockAddr) -> Self {
        Destination::Addr(addr)
    }
}
