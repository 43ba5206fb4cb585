//! `tether demo` run as a user would run it.

use std::process::Command;

fn demo(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .arg("demo")
        .args(args)
        .output()
        .expect("run tether");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_client_is_echoed_and_ends_gracefully() {
    for transport in [&[][..], &["--local"][..]] {
        let mut args = vec!["--clients", "3", "--messages", "50", "--size", "100"];
        args.extend_from_slice(transport);
        let (code, stdout, stderr) = demo(&args);
        assert_eq!(code, 0, "{args:?}\n{stdout}\n{stderr}");
        let clients: Vec<&str> = stdout.lines().filter(|l| l.starts_with("client")).collect();
        assert_eq!(clients.len(), 3, "{stdout}");
        for line in clients {
            assert!(line.contains("50/50 echoed"), "{line}");
            assert!(
                line.contains(
                    "connected -> no_send -> peer_shutdown -> closed: normal (unsent 0, unread 0)"
                ),
                "{line}"
            );
        }
        assert!(stdout.contains("3/3 clients ended gracefully"), "{stdout}");
    }
}

#[test]
fn bad_options_are_usage_errors() {
    for args in [
        &["--clients", "0"][..],
        &["--messages", "many"],
        &["--bogus"],
    ] {
        let (code, _, stderr) = demo(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains("error:"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
