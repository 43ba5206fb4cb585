//! stdin on a plain thread: blocking reads work for pipes, terminals and
//! regular files alike (epoll cannot watch the last). Each chunk is posted to
//! the loop, and the thread waits for the loop to say the chunk reached the
//! kernel before it reads the next: at most one chunk is in memory, and a peer
//! that does not read holds stdin back.

use std::io::{BufRead, Read};
use std::sync::mpsc::{channel, Receiver, Sender};

use tether::{Cx, MuxHandle};

/// What the loop does with stdin, implemented by the state it runs on: the
/// thread posts each chunk, and then its end, to these.
pub(crate) trait Sink: Sized + 'static {
    /// A chunk (or line) of stdin.
    fn chunk(cx: &mut Cx<Self>, chunk: Vec<u8>);

    /// stdin ended (`error`: a read failed, which ends it too).
    fn ended(cx: &mut Cx<Self>, error: Option<String>);
}

/// How much one read takes in stream mode.
const CHUNK: usize = 64 * 1024;

/// Start reading stdin: by line when `by_line` (framed, UDP: one line, one
/// message, the newline dropped), else in chunks as they come. Returns the
/// sender the loop acknowledges each chunk with.
pub(crate) fn spawn<S: Sink>(handle: MuxHandle<S>, by_line: bool) -> std::io::Result<Sender<()>> {
    let (ack, acked) = channel();
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || read(&handle, by_line, &acked))?;
    Ok(ack)
}

fn read<S: Sink>(handle: &MuxHandle<S>, by_line: bool, acked: &Receiver<()>) {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut buf = vec![0; CHUNK];
    loop {
        let got = if by_line {
            let mut line = Vec::new();
            match input.read_until(b'\n', &mut line) {
                Ok(0) => Ok(None),
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                    }
                    Ok(Some(line))
                }
                Err(e) => Err(e),
            }
        } else {
            match input.read(&mut buf) {
                Ok(0) => Ok(None),
                Ok(n) => Ok(Some(buf[..n].to_vec())),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            }
        };
        match got {
            Ok(Some(chunk)) => {
                if handle.post(move |cx| S::chunk(cx, chunk)).is_err() {
                    return;
                }
                // The loop acknowledges once the chunk reached the kernel, or
                // drops the sender when nothing more can be sent.
                if acked.recv().is_err() {
                    return;
                }
            }
            Ok(None) => {
                let _ = handle.post(|cx| S::ended(cx, None));
                return;
            }
            Err(e) => {
                let why = e.to_string();
                let _ = handle.post(move |cx| S::ended(cx, Some(why)));
                return;
            }
        }
    }
}
