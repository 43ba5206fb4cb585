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

/// Every client's count, the totals the server gave them, and the grand total.
#[test]
fn every_number_adds_up_over_tcp_and_tls() {
    for tls in [false, true] {
        let mut args = vec!["--clients", "5", "--transactions", "40"];
        if tls {
            args.push("--tls");
        }
        let (code, stdout, stderr) = demo(&args);
        assert_eq!(code, 0, "{args:?}\n{stdout}\n{stderr}");
        let clients: Vec<&str> = stdout.lines().filter(|l| l.starts_with("client")).collect();
        assert_eq!(clients.len(), 5, "{stdout}");
        let mut totals: Vec<u64> = clients
            .iter()
            .map(|line| {
                assert!(
                    line.contains(": 40 transactions, farewell sent 40,"),
                    "{line}"
                );
                assert!(
                    line.contains("closed normal (unsent 0, unread 0)"),
                    "{line}"
                );
                let total = line.split("server's farewell ").nth(1).unwrap();
                total.split(',').next().unwrap().parse().unwrap()
            })
            .collect();
        totals.sort();
        assert_eq!(totals, [40, 80, 120, 160, 200], "{stdout}");
        assert!(stdout.contains("server grand total 200;"), "{stdout}");
        assert!(stdout.contains("every number adds up"), "{stdout}");
    }
}

#[test]
fn bad_options_are_usage_errors() {
    for args in [
        &["--clients", "0"][..],
        &["--transactions", "many"],
        &["--bogus"],
    ] {
        let (code, _, stderr) = demo(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains("error:"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
