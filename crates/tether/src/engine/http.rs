//! HTTP mode in the engine: requests read and decoded, delivered one at a
//! time, responses written in order, and the connection ended by the layer.
//!
//! The layer reads through the socket's own recv (so a TLS session's
//! plaintext, and the lifecycle's accounting, are as for any stream), keeps
//! what the decoder has not consumed, and delivers the next request only once
//! the last one's response is out: responses go in request order by
//! construction. The end is the layer's: after a response that does not keep
//! the connection open it calls the lifecycle's `close` — the FIN after the
//! response's last byte, then reading and discarding until the client's end
//! or the linger time (the lingering close nginx and Apache do), so a client
//! still sending a body the handler never read gets its response rather than
//! a reset. The application's `close`, `reset` and `discard` are refused
//! meanwhile.

use std::time::Duration;

use tether_proto::http::{self, BodyKind, HttpError, Item, RequestHead, ResponseBody as Framing};

use crate::engine::task::Task;
use crate::engine::timers::TimerId;
use crate::engine::Engine;
use crate::log::Target;
use crate::message::http::{HttpConn, Outgoing, Phase};
use tether_proto::State;

use crate::engine::io::Io;
use crate::id::Gen;
use crate::{ApiError, Cx, HttpOptions, RecvMode, Request, Response, ResponseBody, SocketId};

/// How much one read of the layer asks for.
const READ: usize = 16 * 1024;

/// How long a client may take to send a request's head when the socket has
/// no handshake timeout of its own.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// The sockets in HTTP mode, by slot index (a socket's layer is found with
/// no hashing: HTTP mode does several lookups per request).
#[derive(Default)]
pub(crate) struct HttpSockets {
    slots: Vec<Option<(Gen, HttpSlot)>>,
    live: usize,
    /// Where response heads are written (reused).
    out: Vec<u8>,
    /// Sockets put in HTTP mode before their `listen`, which hands the
    /// options to the listener (a few at most: a list).
    before_listen: Vec<(SocketId, HttpOptions)>,
}

impl HttpSockets {
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.live == 0
    }

    pub(crate) fn contains_key(&self, s: &SocketId) -> bool {
        self.get(s).is_some()
    }

    pub(crate) fn get(&self, s: &SocketId) -> Option<&HttpSlot> {
        match self.slots.get(s.idx as usize) {
            Some(Some((gen, h))) if *gen == s.gen => Some(h),
            _ => None,
        }
    }

    pub(crate) fn get_mut(&mut self, s: &SocketId) -> Option<&mut HttpSlot> {
        match self.slots.get_mut(s.idx as usize) {
            Some(Some((gen, h))) if *gen == s.gen => Some(h),
            _ => None,
        }
    }

    fn insert(&mut self, s: SocketId, h: HttpSlot) {
        let i = s.idx as usize;
        if self.slots.len() <= i {
            self.slots.resize_with(i + 1, || None);
        }
        if self.slots[i].replace((s.gen, h)).is_none() {
            self.live += 1;
        }
    }

    /// The options a socket was given before its `listen`, taken.
    pub(crate) fn take_before_listen(&mut self, s: SocketId) -> Option<HttpOptions> {
        let i = self.before_listen.iter().position(|(id, _)| *id == s)?;
        Some(self.before_listen.swap_remove(i).1)
    }

    fn remove(&mut self, s: &SocketId) -> Option<HttpSlot> {
        self.get(s)?;
        self.live -= 1;
        self.slots[s.idx as usize].take().map(|(_, h)| h)
    }
}

/// A connection in HTTP mode, as the engine keeps it.
pub(crate) struct HttpSlot {
    pub(crate) conn: Box<HttpConn>,
    /// The deadline for a request's head (408), while one is armed.
    timer: Option<TimerId>,
    /// When the head under way began; `None` between requests.
    head_since: Option<std::time::Instant>,
}

impl<S: 'static> Engine<S> {
    /// Put a connected (or accepted) stream in HTTP mode.
    pub(crate) fn start_http(&mut self, s: SocketId, opts: HttpOptions) {
        self.http.insert(
            s,
            HttpSlot {
                conn: Box::new(HttpConn::new(opts)),
                timer: None,
                head_since: None,
            },
        );
        io_log!(debug, Target::Tcp, self.mux_id, socket = %s, keep_open = opts.keep_open, "HTTP mode");
        self.head_began(s);
        self.http_read(s);
    }

    #[inline]
    pub(crate) fn is_http(&self, s: SocketId) -> bool {
        !self.http.is_empty() && self.http.contains_key(&s)
    }

    /// The socket closed: its layer goes.
    pub(crate) fn end_http(&mut self, s: SocketId) {
        if !self.http.before_listen.is_empty() {
            self.http.take_before_listen(s);
        }
        if let Some(timer) = self.http.remove(&s).and_then(|h| h.timer) {
            self.timers.cancel(timer);
        }
    }

    /// `set_http`: on a listener (before or after its `listen`), for every
    /// connection it takes; on an open stream, from now.
    pub(crate) fn set_http(&mut self, s: SocketId, opts: HttpOptions) -> Result<(), ApiError> {
        let already = self.is_http(s);
        let slot = self.live(s)?;
        if slot.life.is_datagram() {
            return Err(ApiError::Unsupported {
                op: "HTTP mode",
                transport: crate::Transport::Udp,
            });
        }
        if slot.extra.framed().is_some() {
            return Err(ApiError::Http("a framed socket cannot be in HTTP mode"));
        }
        if let Io::Listener(l) = &mut slot.io {
            l.http = Some(opts);
            return Ok(());
        }
        if slot.want.is_some() {
            return Err(ApiError::RecvPending);
        }
        if already {
            return Err(ApiError::Http("the socket is in HTTP mode already"));
        }
        if slot.life.state() == State::NotConnected {
            // Not open yet: a listener to be, whose `listen` takes these.
            self.http.take_before_listen(s);
            self.http.before_listen.push((s, opts));
            return Ok(());
        }
        if !matches!(slot.life.state(), State::Connected | State::Connecting) {
            return Err(ApiError::Http(
                "HTTP mode is for a listener (before or after listen) or an open stream",
            ));
        }
        self.start_http(s, opts);
        Ok(())
    }

    /// How long a request's head may take: the socket's handshake timeout
    /// (30 s without one).
    fn head_wait(&self, s: SocketId) -> Duration {
        self.slot(s)
            .and_then(|slot| slot.extra.timeouts())
            .and_then(|d| d.config.handshake)
            .unwrap_or(HEAD_TIMEOUT)
    }

    /// A request's head began (or, on a new connection, is awaited): it must
    /// be complete within `head_wait`, else 408. One timer per connection,
    /// armed when none is, and re-armed when it fires early: a kept-open
    /// connection's requests do not each set and cancel one.
    pub(crate) fn head_began(&mut self, s: SocketId) {
        let now = self.call_time();
        let Some(h) = self.http.get_mut(&s) else {
            return;
        };
        h.head_since = Some(now);
        if h.timer.is_none() {
            let at = now + self.head_wait(s);
            self.arm_head_at(s, at);
        }
    }

    fn arm_head_at(&mut self, s: SocketId, at: std::time::Instant) {
        let id = self.timers.add(
            at,
            None,
            Box::new(move |cx: &mut Cx<S>| cx.http_head_late(s)),
        );
        if let Some(old) = self.http.get_mut(&s).and_then(|h| h.timer.replace(id)) {
            self.timers.cancel(old);
        }
    }

    /// Ask for more input if the layer wants it and none is asked for.
    fn http_read(&mut self, s: SocketId) {
        let wants = self.http.get(&s).is_some_and(|h| h.conn.wants_input());
        let asked = self.slot(s).is_some_and(|slot| slot.want.is_some());
        if wants
            && !asked
            && self
                .slot(s)
                .is_some_and(|slot| slot.life.check_recv().is_ok())
        {
            let _ = self.recv(s, READ, RecvMode::Partial);
        }
    }

    /// The layer's own end of the connection: the lingering close.
    fn http_close(&mut self, s: SocketId) {
        if let Some(h) = self.http.get_mut(&s) {
            h.conn.phase = Phase::Done;
        }
        self.cancel_head_timer(s);
        let now = self.call_time();
        if let Some(slot) = crate::engine::slot::find(&mut self.slots, s) {
            if slot.life.closed().is_none() {
                let linger = slot.linger();
                let _ = slot.life.close(now, linger);
                slot.want = None;
            }
        }
        self.settle(s);
    }

    fn cancel_head_timer(&mut self, s: SocketId) {
        if let Some(id) = self.http.get_mut(&s).and_then(|h| h.timer.take()) {
            self.timers.cancel(id);
        }
    }

    /// Write a response head (and a whole body), and decide what follows.
    pub(crate) fn respond(&mut self, s: SocketId, response: Response) -> Result<(), ApiError> {
        let date = self.date.now();
        // The loop's one buffer for response heads, reused.
        let mut out = std::mem::take(&mut self.http.out);
        out.clear();
        let Some(h) = self.http.get_mut(&s) else {
            return Err(ApiError::Http("the socket is not in HTTP mode"));
        };
        let c = &mut h.conn;
        if c.phase != Phase::Serving {
            return Err(ApiError::Http("no request waits for a response"));
        }
        let head_request = c.head_request;
        let framing = match &response.body {
            ResponseBody::Bytes(b) => Framing::Length(b.len() as u64),
            ResponseBody::Length(n) => Framing::Length(*n),
            ResponseBody::Chunked => Framing::Chunked,
        };
        let keep = http::keep_alive(c.opts.keep_open, c.client_keep_alive, response.status);
        let must_close = http::encode_head(
            &mut out,
            response.status,
            &response.headers,
            framing,
            date,
            !keep,
            c.version,
            head_request,
        );
        let keep = keep && !must_close;
        c.keep = keep;
        let body_allowed = http::body_allowed(response.status, head_request);
        let streamed = match (&response.body, body_allowed) {
            (ResponseBody::Bytes(b), true) => {
                out.extend_from_slice(b);
                None
            }
            (ResponseBody::Length(n), true) if *n > 0 => Some(Outgoing::Length(*n)),
            (ResponseBody::Chunked, true) => Some(Outgoing::Chunked),
            _ => None,
        };
        c.outgoing = streamed;
        c.phase = if streamed.is_some() {
            Phase::Streaming
        } else {
            Phase::Serving
        };
        let sent = self.send(s, &out);
        self.http.out = out;
        sent?;
        if streamed.is_none() {
            self.http_done(s);
        }
        Ok(())
    }

    /// Part of a streamed response body.
    pub(crate) fn send_body(&mut self, s: SocketId, data: &[u8]) -> Result<(), ApiError> {
        let Some(h) = self.http.get_mut(&s) else {
            return Err(ApiError::Http("the socket is not in HTTP mode"));
        };
        match h.conn.outgoing {
            Some(Outgoing::Length(left)) => {
                if data.len() as u64 > left {
                    return Err(ApiError::Http(
                        "more body than the response's Content-Length",
                    ));
                }
                let left = left - data.len() as u64;
                h.conn.outgoing = Some(Outgoing::Length(left));
                self.send(s, data)?;
                if left == 0 {
                    self.http_done(s);
                }
                Ok(())
            }
            Some(Outgoing::Chunked) => {
                let mut out = Vec::with_capacity(data.len() + 16);
                http::encode_chunk(&mut out, data);
                self.send(s, &out)
            }
            None => Err(ApiError::Http("no response body is being sent")),
        }
    }

    /// Keep the connection open no longer: it ends after the response under
    /// way, or now (gracefully, by the layer) if no request is under way. A
    /// request whose first bytes have arrived, read or not, is under way: it
    /// is answered (`Connection: close`) rather than drained unanswered.
    pub(crate) fn end_keep_alive(&mut self, s: SocketId) -> Result<(), ApiError> {
        let Some(h) = self.http.get_mut(&s) else {
            return Err(ApiError::Http("the socket is not in HTTP mode"));
        };
        let c = &mut h.conn;
        c.opts.keep_open = false;
        c.keep = false;
        let idle = c.phase == Phase::Head && c.input.is_empty() && c.decoder.is_idle();
        if idle && !self.input_arrived(s) {
            self.http_close(s);
        }
        Ok(())
    }

    /// Ask for the next part of a request body that comes in parts.
    pub(crate) fn recv_body(&mut self, s: SocketId) -> Result<(), ApiError> {
        let Some(h) = self.http.get_mut(&s) else {
            return Err(ApiError::Http("the socket is not in HTTP mode"));
        };
        let c = &mut h.conn;
        let serving = matches!(c.phase, Phase::Serving | Phase::Streaming);
        if !serving || !c.body_in_parts || c.body_read {
            return Err(ApiError::Http("no request body waits to be read"));
        }
        if c.body_wanted {
            return Err(ApiError::RecvPending);
        }
        c.body_wanted = true;
        // Decoded from what is buffered once the current callback returns.
        self.tasks.push_back(Task::Http(s));
        self.http_read(s);
        Ok(())
    }

    /// The end of a chunked response body.
    pub(crate) fn end_body(&mut self, s: SocketId) -> Result<(), ApiError> {
        let Some(h) = self.http.get_mut(&s) else {
            return Err(ApiError::Http("the socket is not in HTTP mode"));
        };
        match h.conn.outgoing {
            Some(Outgoing::Chunked) => {
                let mut out = Vec::with_capacity(8);
                http::encode_last_chunk(&mut out);
                self.send(s, &out)?;
                self.http_done(s);
                Ok(())
            }
            Some(Outgoing::Length(_)) => Err(ApiError::Http(
                "a response with a Content-Length ends with its last byte",
            )),
            None => Err(ApiError::Http("no response body is being sent")),
        }
    }

    /// The response is out (queued in order): close, or wait for the next
    /// request (after throwing away what is left of this one's body).
    fn http_done(&mut self, s: SocketId) {
        let Some(h) = self.http.get_mut(&s) else {
            return;
        };
        let c = &mut h.conn;
        c.outgoing = None;
        if !c.keep {
            self.http_close(s);
            return;
        }
        c.phase = Phase::Head;
        c.body_in_parts = false;
        c.body_wanted = false;
        // Between requests the idle timeout applies; the head's own deadline
        // starts with the next request's first byte.
        // What is left of the body is read and dropped before the next head.
        self.tasks.push_back(Task::Http(s));
        self.http_read(s);
    }
}

/// The `Date` header's text, made once a second. The wall clock's time, which
/// the loop's clock (monotonic, maybe a test's) cannot give.
#[derive(Debug, Default)]
pub(crate) struct DateCache {
    secs: u64,
    text: String,
}

impl DateCache {
    fn now(&mut self) -> &str {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if secs != self.secs || self.text.is_empty() {
            self.secs = secs;
            self.text = http::http_date(secs);
        }
        &self.text
    }
}

impl<S: 'static> Cx<S> {
    /// Bytes the layer's recv got: decode and deliver.
    pub(crate) fn http_received(&mut self, s: SocketId, data: &[u8]) {
        let Some(h) = self.engine.http.get_mut(&s) else {
            return;
        };
        h.conn.input.extend_from_slice(data);
        if h.conn.phase == Phase::Head && h.head_since.is_none() {
            self.engine.head_began(s);
        }
        self.http_step(s);
    }

    /// Decode what is buffered, delivering at most one request.
    pub(crate) fn http_step(&mut self, s: SocketId) {
        loop {
            let Some(h) = self.engine.http.get_mut(&s) else {
                return;
            };
            let c = &mut h.conn;
            if !c.wants_input() {
                break;
            }
            let input = std::mem::take(&mut c.input);
            let step = c.decoder.decode(&input);
            let (used, item) = match step {
                Ok(step) => step,
                Err(e) => {
                    c.input = input;
                    self.http_refuse(s, &e);
                    return;
                }
            };
            let mut rest = input;
            let keep_going = match item {
                Item::NeedMore => {
                    rest.drain(..used);
                    c.input = rest;
                    false
                }
                Item::Head(head) => {
                    rest.drain(..used);
                    c.input = rest;
                    c.client_keep_alive = head.keep_alive;
                    c.head_request = head.is_head();
                    c.version = head.version;
                    c.body_read = head.body == BodyKind::None;
                    let expect = head.expect_continue && !c.body_read;
                    c.request = Some(Request {
                        method: head.method,
                        target: head.target,
                        version: head.version,
                        headers: head.headers,
                        body: Vec::new(),
                        body_complete: c.body_read,
                    });
                    c.phase = Phase::Body;
                    if expect {
                        let _ = self.engine.send(s, http::CONTINUE);
                    }
                    true
                }
                Item::Body { start, len } => {
                    let part = &rest[start..start + len];
                    if c.body_in_parts {
                        let part = part.to_vec();
                        rest.drain(..used);
                        c.input = rest;
                        c.body_wanted = false;
                        self.call(s, |u, cx| u.on_request_body(cx, s, &part, false));
                        true
                    } else if c.phase == Phase::Body {
                        let req = c.request.as_mut().expect("a request is being read");
                        req.body.extend_from_slice(part);
                        let full = req.body.len() >= c.opts.buffer;
                        rest.drain(..used);
                        c.input = rest;
                        if full {
                            // Deliver what came; the rest follows in parts.
                            c.body_in_parts = true;
                            self.deliver_request(s);
                        }
                        true
                    } else {
                        // A body nobody reads any more: dropped.
                        rest.drain(..used);
                        c.input = rest;
                        true
                    }
                }
                Item::End => {
                    rest.drain(..used);
                    c.input = rest;
                    c.body_read = true;
                    let in_parts = c.body_in_parts;
                    if c.phase == Phase::Body {
                        if let Some(req) = c.request.as_mut() {
                            req.body_complete = true;
                        }
                        self.deliver_request(s);
                    } else if in_parts {
                        c.body_wanted = false;
                        self.call(s, |u, cx| u.on_request_body(cx, s, &[], true));
                    }
                    // The next request waits for this one's response.
                    self.engine
                        .http
                        .get(&s)
                        .is_some_and(|h| h.conn.phase == Phase::Head)
                }
            };
            if !keep_going {
                break;
            }
        }
        self.engine.http_read(s);
    }

    /// Hand the request read to the user.
    fn deliver_request(&mut self, s: SocketId) {
        let Some(h) = self.engine.http.get_mut(&s) else {
            return;
        };
        let Some(request) = h.conn.request.take() else {
            return;
        };
        h.conn.phase = Phase::Serving;
        // The timer stays; it finds no head under way when it fires.
        h.head_since = None;
        self.call(s, |u, cx| u.on_request(cx, s, &request));
        // Its strings serve the next request's head.
        if let Some(h) = self.engine.http.get_mut(&s) {
            h.conn.decoder.recycle(RequestHead {
                method: request.method,
                target: request.target,
                headers: request.headers,
                ..RequestHead::default()
            });
        }
    }

    /// A request the layer will not serve: answer with its status, and end.
    fn http_refuse(&mut self, s: SocketId, e: &HttpError) {
        io_log!(debug, Target::Tcp, self.engine.mux_id, socket = %s, error = %e, status = e.status(), "bad request");
        self.error_response(s, e.status());
    }

    /// A response the layer makes itself (400, 408, 413, 431, 501), then the
    /// close. Only where nothing else was answered for the current request.
    fn error_response(&mut self, s: SocketId, status: u16) {
        let date = self.engine.date.now();
        let Some(h) = self.engine.http.get_mut(&s) else {
            return;
        };
        let c = &mut h.conn;
        let answerable = matches!(c.phase, Phase::Head | Phase::Body | Phase::Serving);
        if answerable {
            let mut out = Vec::with_capacity(128);
            http::encode_head(
                &mut out,
                status,
                &[] as &[(&str, &str)],
                Framing::Length(0),
                date,
                true,
                c.version,
                false,
            );
            let _ = self.engine.send(s, &out);
        }
        self.engine.http_close(s);
    }

    /// The head timer fired: a request's head (or its buffered body) is
    /// still awaited — 408, and the end; a client that connected and sent
    /// nothing just ends.
    pub(crate) fn http_head_late(&mut self, s: SocketId) {
        let Some(h) = self.engine.http.get_mut(&s) else {
            return;
        };
        h.timer = None;
        let Some(since) = h.head_since else {
            return;
        };
        let due = since + self.engine.head_wait(s);
        if self.engine.now < due {
            // Set for an earlier head: wait for this one's deadline.
            return self.engine.arm_head_at(s, due);
        }
        let Some(h) = self.engine.http.get_mut(&s) else {
            return;
        };
        match h.conn.phase {
            Phase::Head if h.conn.input.is_empty() && h.conn.decoder.is_idle() => {
                self.engine.http_close(s)
            }
            Phase::Head | Phase::Body => self.error_response(s, 408),
            _ => {}
        }
    }

    /// The client ended its side: between requests that is its goodbye;
    /// within one, the request is cut short.
    pub(crate) fn http_peer_end(&mut self, s: SocketId) {
        let Some(h) = self.engine.http.get(&s) else {
            return;
        };
        match h.conn.phase {
            Phase::Head if h.conn.input.is_empty() => self.engine.http_close(s),
            Phase::Head | Phase::Body => self.error_response(s, 400),
            // The response will still go out; the layer closes after it.
            Phase::Serving | Phase::Streaming => {
                if let Some(h) = self.engine.http.get_mut(&s) {
                    h.conn.keep = false;
                    h.conn.body_read = true;
                }
            }
            Phase::Done => {}
        }
    }
}
