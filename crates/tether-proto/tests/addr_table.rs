//! Table-driven tests for `SockAddr::parse`, plus a panic hunt over mangled inputs.

use std::net::SocketAddr;
use std::path::PathBuf;

use tether_proto::{AddrError, Destination, SockAddr};

type Row = (String, Result<SockAddr, AddrError>);

fn inet(input: &str) -> Row {
    let addr: SocketAddr = input.parse().expect("test row is a valid std SocketAddr");
    (input.to_owned(), Ok(SockAddr::Inet(addr)))
}

fn ok(input: &str, addr: SockAddr) -> Row {
    (input.to_owned(), Ok(addr))
}

fn err(input: &str, make: fn(String) -> AddrError) -> Row {
    (input.to_owned(), Err(make(input.to_owned())))
}

fn rows() -> Vec<Row> {
    let path_107 = format!("/{}", "a".repeat(106));
    let path_108 = format!("/{}", "a".repeat(107));
    let name_107 = "n".repeat(107);
    let name_108 = "n".repeat(108);
    vec![
        // Good: IPv4.
        inet("1.2.3.4:80"),
        inet("0.0.0.0:0"),
        inet("127.0.0.1:65535"),
        inet("255.255.255.255:1"),
        // Good: IPv6.
        inet("[::1]:80"),
        inet("[::]:0"),
        inet("[2001:db8::1]:65535"),
        inet("[fe80::1%2]:80"),
        inet("[::ffff:1.2.3.4]:443"),
        // Good: Unix.
        ok(
            "unix:/tmp/tether.sock",
            SockAddr::Unix("/tmp/tether.sock".into()),
        ),
        ok("unix:/", SockAddr::Unix("/".into())),
        ok(
            "unix:/dir with space/s",
            SockAddr::Unix("/dir with space/s".into()),
        ),
        ok(
            &format!("unix:{path_107}"),
            SockAddr::Unix(PathBuf::from(&path_107)),
        ),
        ok("unix:@tether", SockAddr::Abstract(b"tether".to_vec())),
        ok(
            "unix:@ünïcode",
            SockAddr::Abstract("ünïcode".as_bytes().to_vec()),
        ),
        ok(
            "unix:@/looks/like/path",
            SockAddr::Abstract(b"/looks/like/path".to_vec()),
        ),
        ok(
            &format!("unix:@{name_107}"),
            SockAddr::Abstract(name_107.clone().into_bytes()),
        ),
        // Empty and whitespace.
        err("", |_| AddrError::Empty),
        err("   \t\n", |_| AddrError::Empty),
        err(" 1.2.3.4:80", AddrError::Whitespace),
        err("1.2.3.4:80 ", AddrError::Whitespace),
        err("unix:/tmp/s\n", AddrError::Whitespace),
        // Schemes.
        err("tcp://1.2.3.4:80", AddrError::UnknownScheme),
        err("udp:1.2.3.4:80", AddrError::UnknownScheme),
        err("UNIX:/tmp/s", AddrError::UnknownScheme),
        err("Unix:@name", AddrError::UnknownScheme),
        // Host names are never resolved.
        err("localhost:80", AddrError::HostName),
        err("example.com:443", AddrError::HostName),
        err("my-host:80", AddrError::HostName),
        err("localhost", AddrError::HostName),
        // Missing pieces.
        err(":80", AddrError::MissingHost),
        err("1.2.3.4", AddrError::MissingPort),
        err("[::1]", AddrError::MissingPort),
        // Ports.
        err("1.2.3.4:", AddrError::BadPort),
        err("1.2.3.4:65536", AddrError::BadPort),
        err("[::1]:65536", AddrError::BadPort),
        err("1.2.3.4:99999999999999999999", AddrError::BadPort),
        err("1.2.3.4:http", AddrError::BadPort),
        err("1.2.3.4:+80", AddrError::BadPort),
        err("1.2.3.4:-1", AddrError::BadPort),
        err("1.2.3.4:080", AddrError::BadPort),
        err("1.2.3.4: 80", AddrError::BadPort),
        err("1.2.3.4:80:90", AddrError::BadPort),
        // IP addresses.
        err("999.1.1.1:80", AddrError::BadIp),
        err("1.2.3:80", AddrError::BadIp),
        err("01.2.3.4:80", AddrError::BadIp),
        err("1.2.3.4 :80", AddrError::BadIp),
        err("[::g]:80", AddrError::BadIp),
        err("[1.2.3.4]:80", AddrError::BadIp),
        // Scoped by an interface name: a name only a lookup resolves.
        err("[fe80::1%eth0]:80", AddrError::HostName),
        err("[fe80::1%lo]:7000", AddrError::HostName),
        err("[fe80::1%eth0]", AddrError::MissingPort),
        err("[fe80::1%eth0]80", AddrError::BadBrackets),
        err("[fe80::1%eth/0]:80", AddrError::BadIp),
        err("[fe80::1%]:80", AddrError::BadIp),
        // Brackets and bare IPv6.
        err("[::1:80", AddrError::BadBrackets),
        err("::1]:80", AddrError::BadBrackets),
        err("[[::1]]:80", AddrError::BadBrackets),
        err("[]:80", AddrError::BadBrackets),
        err("[::1]80", AddrError::BadBrackets),
        err("[::1]]:80", AddrError::BadBrackets),
        err("::1", AddrError::BadBrackets),
        err("::1:80", AddrError::BadBrackets),
        err("2001:db8::1:443", AddrError::BadBrackets),
        err("fe80::1%2:80", AddrError::BadBrackets),
        // Unix paths and abstract names.
        err("unix:", |_| AddrError::EmptyPath),
        err("unix:@", |_| AddrError::EmptyAbstractName),
        // Relative paths are relative to the working directory.
        ok("unix:relative", SockAddr::Unix("relative".into())),
        ok("unix:relative/path", SockAddr::Unix("relative/path".into())),
        ok("unix:./sock", SockAddr::Unix("./sock".into())),
        ok("unix:echo.sock", SockAddr::Unix("echo.sock".into())),
        err(&format!("unix:{path_108}"), AddrError::PathTooLong),
        err(&format!("unix:@{name_108}"), AddrError::PathTooLong),
        err("unix:/tmp/a\0b", AddrError::NulInPath),
        err("unix:@a\0b", AddrError::NulInPath),
    ]
}

#[test]
fn table() {
    let rows = rows();
    assert!(rows.len() >= 30);
    for (input, expected) in &rows {
        let got = SockAddr::parse(input);
        assert_eq!(&got, expected, "parse({input:?})");
        assert_eq!(&input.parse::<SockAddr>(), expected, "from_str({input:?})");

        match got {
            Ok(addr) => {
                let shown = addr.to_string();
                assert_eq!(
                    SockAddr::parse(&shown),
                    Ok(addr.clone()),
                    "round trip of {input:?}"
                );
                assert_eq!(
                    addr.is_local(),
                    input.starts_with("unix:"),
                    "is_local({input:?})"
                );
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(!msg.is_empty(), "empty message for {input:?}");
                match e {
                    // No payload: the message can only quote what it knows.
                    AddrError::Empty => assert!(input.trim().is_empty()),
                    _ => assert!(
                        msg.contains(&format!("{input:?}")),
                        "message for {input:?} does not quote it: {msg}"
                    ),
                }
            }
        }
    }
}

fn name(host: &str, port: u16) -> Result<Destination, AddrError> {
    Ok(Destination::Name {
        host: host.to_owned(),
        port,
    })
}

/// `Destination::parse` takes what `SockAddr::parse` takes, and names too.
#[test]
fn destinations() {
    let rows: Vec<(&str, Result<Destination, AddrError>)> = vec![
        ("localhost:7000", name("localhost", 7000)),
        ("db.internal:5432", name("db.internal", 5432)),
        ("my-host:0", name("my-host", 0)),
        ("no-such-host.invalid:80", name("no-such-host.invalid", 80)),
        ("[fe80::1%lo]:7000", name("fe80::1%lo", 7000)),
        ("[fe80::1%eth0]:80", name("fe80::1%eth0", 80)),
        (
            "1.2.3.4:80",
            Ok(Destination::Addr(SockAddr::Inet(
                "1.2.3.4:80".parse().unwrap(),
            ))),
        ),
        (
            "[fe80::1%2]:80",
            Ok(Destination::Addr(SockAddr::Inet(
                "[fe80::1%2]:80".parse().unwrap(),
            ))),
        ),
        (
            "unix:echo.sock",
            Ok(Destination::Addr(SockAddr::Unix("echo.sock".into()))),
        ),
        ("localhost", Err(AddrError::MissingPort("localhost".into()))),
        ("localhost:", Err(AddrError::BadPort("localhost:".into()))),
        (
            "localhost:http",
            Err(AddrError::BadPort("localhost:http".into())),
        ),
        (
            "localhost:65536",
            Err(AddrError::BadPort("localhost:65536".into())),
        ),
        (
            "local host:80",
            Err(AddrError::BadIp("local host:80".into())),
        ),
        ("999.1.1.1:80", Err(AddrError::BadIp("999.1.1.1:80".into()))),
        (
            "[fe80::1%eth0]",
            Err(AddrError::MissingPort("[fe80::1%eth0]".into())),
        ),
        (
            "tcp://localhost:80",
            Err(AddrError::UnknownScheme("tcp://localhost:80".into())),
        ),
        ("", Err(AddrError::Empty)),
    ];
    for (input, expected) in rows {
        let got = Destination::parse(input);
        assert_eq!(got, expected, "parse({input:?})");
        assert_eq!(
            input.parse::<Destination>(),
            expected,
            "from_str({input:?})"
        );
        if let Ok(d) = got {
            assert_eq!(d.to_string(), input, "display of {input:?}");
            assert_eq!(d.host().is_some(), matches!(d, Destination::Name { .. }));
        }
    }
}

#[test]
fn display_forms() {
    let v6: SocketAddr = "[::1]:80".parse().unwrap();
    assert_eq!(SockAddr::from(v6).to_string(), "[::1]:80");
    assert_eq!(
        SockAddr::parse("1.2.3.4:80").unwrap().to_string(),
        "1.2.3.4:80"
    );
    assert_eq!(SockAddr::Unix("/p".into()).to_string(), "unix:/p");
    assert_eq!(
        SockAddr::Abstract(b"name".to_vec()).to_string(),
        "unix:@name"
    );
    // Hand-built names need not be UTF-8; they are shown lossily.
    assert_eq!(
        SockAddr::Abstract(vec![b'a', 0xff]).to_string(),
        "unix:@a\u{fffd}"
    );
}

#[test]
fn error_is_std_error() {
    fn takes_error(_: &dyn std::error::Error) {}
    takes_error(&AddrError::Empty);
}

/// Splices prefixes and suffixes of sample addresses at every byte boundary
/// (lossily re-decoded where a cut splits a character) and checks that parsing
/// never panics and that every accepted result still round-trips.
#[test]
fn mangled_inputs_never_panic() {
    let samples = [
        "1.2.3.4:80",
        "[fe80::1%2]:65535",
        "unix:/tmp/sock",
        "unix:@é名",
        "[::ffff:1.2.3.4]:0",
        "tcp://h:1",
        " :[]@%\0",
    ];
    let mut checked = 0usize;
    for a in samples {
        for b in samples {
            for i in 0..=a.len() {
                for j in 0..=b.len() {
                    let head = String::from_utf8_lossy(&a.as_bytes()[..i]);
                    let tail = String::from_utf8_lossy(&b.as_bytes()[j..]);
                    let input = format!("{head}{tail}");
                    match SockAddr::parse(&input) {
                        Ok(addr) => assert_eq!(
                            SockAddr::parse(&addr.to_string()),
                            Ok(addr),
                            "round trip of {input:?}"
                        ),
                        Err(e) => assert!(!e.to_string().is_empty()),
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 1000);
}
