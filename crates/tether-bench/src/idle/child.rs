//! A child process of idle-memory, spoken to in lines on its stdin and
//! answering in lines on its stdout.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// A child process speaking lines; killed (and waited for) when dropped
/// unless it was finished, so a panic anywhere leaves no process behind.
pub(super) struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    finished: bool,
}

impl Proc {
    pub(super) fn spawn(args: &[String]) -> Proc {
        let exe = std::env::current_exe().expect("own executable");
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("child process");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Proc {
            child,
            stdin,
            stdout,
            finished: false,
        }
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(super) fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").expect("child's stdin");
        stdin.flush().expect("child's stdin");
    }

    /// The next line, which must start with `word`; the rest of it.
    pub(super) fn expect(&mut self, word: &str) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("child's stdout");
        let rest = line
            .trim()
            .strip_prefix(word)
            .unwrap_or_else(|| panic!("child said {line:?}, expected {word}"));
        rest.trim().to_string()
    }

    /// End its stdin (the child's signal to close everything and exit) and
    /// wait for it.
    pub(super) fn finish(mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
        self.finished = true;
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
