//! A fault-injecting HTTP/1.1 proxy for tests: it sits on a loopback port in
//! front of one upstream service, and the test switches what it does to the
//! requests passing through at run time.
//!
//! - [`Mode::Pass`]: forward the request, return the upstream's answer.
//! - [`Mode::Refuse`]: close the client's connection without forwarding or
//!   answering (the peer looks down).
//! - [`Mode::Delay`]: hold the request, then forward it as in `Pass`. The
//!   request is forwarded even if the client gave up meanwhile, as a request
//!   already on the wire would be: a slow network, not a lost request.
//! - [`Mode::DropResponse`]: forward the request, read the upstream's whole
//!   answer (so the upstream has committed), then close the client's
//!   connection without sending it.
//! - [`Mode::HoldResponse`]: forward the request, read the upstream's whole
//!   answer (committed), and send it only after a while: the caller learns
//!   late what has already happened.
//!
//! The proxy reads one request at a time from each client connection, so
//! keep-alive clients (reqwest's pool) work, and each request is judged by
//! the mode in force when it arrives. Each request gets its own upstream
//! connection (`Connection: close` towards the upstream). It runs on its own
//! thread and runtime, so a test that blocks its own thread does not stall it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// What the proxy does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Refuse,
    Delay(Duration),
    DropResponse,
    HoldResponse(Duration),
}

/// How many requests met each mode, and how many answers the upstream gave
/// (whether or not they reached the client).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub passed: usize,
    pub refused: usize,
    pub delayed: usize,
    pub dropped: usize,
    pub held: usize,
    /// Complete answers read from the upstream.
    pub upstream_answers: usize,
}

impl Counts {
    /// Every request the proxy saw.
    pub fn requests(&self) -> usize {
        self.passed + self.refused + self.delayed + self.dropped + self.held
    }
}

#[derive(Default)]
struct Counters {
    passed: AtomicUsize,
    refused: AtomicUsize,
    delayed: AtomicUsize,
    dropped: AtomicUsize,
    held: AtomicUsize,
    upstream_answers: AtomicUsize,
}

struct Modes {
    standing: Mode,
    next: VecDeque<Mode>,
}

struct Shared {
    upstream: SocketAddr,
    modes: Mutex<Modes>,
    counters: Counters,
}

impl Shared {
    fn take_mode(&self) -> Mode {
        let mut modes = self.modes.lock().expect("mode lock");
        let mode = modes.next.pop_front().unwrap_or(modes.standing);
        let counter = match mode {
            Mode::Pass => &self.counters.passed,
            Mode::Refuse => &self.counters.refused,
            Mode::Delay(_) => &self.counters.delayed,
            Mode::DropResponse => &self.counters.dropped,
            Mode::HoldResponse(_) => &self.counters.held,
        };
        counter.fetch_add(1, Ordering::SeqCst);
        mode
    }
}

/// A running proxy; it stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
}

impl FaultProxy {
    /// Starts a proxy on `127.0.0.1:0` in front of `upstream`
    /// (`http://host:port`, as the services' base URLs are written), in
    /// pass-through mode.
    pub fn start(upstream: &str) -> FaultProxy {
        let authority = upstream.trim_start_matches("http://").trim_end_matches('/');
        let upstream: SocketAddr = authority.parse().expect("upstream is http://ip:port");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a proxy port");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            upstream,
            modes: Mutex::new(Modes { standing: Mode::Pass, next: VecDeque::new() }),
            counters: Counters::default(),
        });
        let (stop, mut stopped) = watch::channel(false);
        let accepting = shared.clone();
        std::thread::Builder::new()
            .name(format!("fault-proxy-{}", addr.port()))
            .spawn(move || {
                let runtime =
                    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("proxy runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    loop {
                        tokio::select! {
                            _ = stopped.changed() => break,
                            accepted = listener.accept() => {
                                if let Ok((client, _)) = accepted {
                                    tokio::spawn(serve(client, accepting.clone()));
                                }
                            }
                        }
                    }
                });
                // Dropping the runtime ends every connection still open.
            })
            .expect("proxy thread");
        FaultProxy { addr, shared, stop }
    }

    /// The proxy's base URL, to hand to the client service as the peer's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets the mode for every request from now on (after any queued by
    /// [`FaultProxy::once`]).
    pub fn set(&self, mode: Mode) {
        self.shared.modes.lock().expect("mode lock").standing = mode;
    }

    /// The next request gets `mode`; later ones the standing mode again.
    /// Calls queue up: `once(a); once(b)` treats the next two requests.
    pub fn once(&self, mode: Mode) {
        self.shared.modes.lock().expect("mode lock").next.push_back(mode);
    }

    pub fn counts(&self) -> Counts {
        let c = &self.shared.counters;
        Counts {
            passed: c.passed.load(Ordering::SeqCst),
            refused: c.refused.load(Ordering::SeqCst),
            delayed: c.delayed.load(Ordering::SeqCst),
            dropped: c.dropped.load(Ordering::SeqCst),
            held: c.held.load(Ordering::SeqCst),
            upstream_answers: c.upstream_answers.load(Ordering::SeqCst),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// One client connection: request after request until it closes, a mode
/// ends it, or something cannot be parsed.
async fn serve(client: TcpStream, shared: Arc<Shared>) {
    let _ = client.set_nodelay(true);
    let mut client = Wire::new(client);
    while let Ok(Some(request)) = client.read_message(Side::Request).await {
        let mode = shared.take_mode();
        let answer = match mode {
            Mode::Refuse => return,
            Mode::Delay(hold) => {
                tokio::time::sleep(hold).await;
                forward(&shared, &request).await
            }
            Mode::Pass | Mode::DropResponse | Mode::HoldResponse(_) => forward(&shared, &request).await,
        };
        // An unreachable upstream looks like a refusal to the client.
        let Some(answer) = answer else { return };
        shared.counters.upstream_answers.fetch_add(1, Ordering::SeqCst);
        match mode {
            Mode::DropResponse => return,
            Mode::HoldResponse(hold) => tokio::time::sleep(hold).await,
            _ => {}
        }
        let close = request.wants_close() || answer.framing == Framing::UntilClose;
        if client.stream.write_all(&answer.encode(close)).await.is_err() || close {
            return;
        }
    }
}

/// Sends `request` on a fresh upstream connection and reads the whole answer.
async fn forward(shared: &Shared, request: &Message) -> Option<Message> {
    let upstream = TcpStream::connect(shared.upstream).await.ok()?;
    let _ = upstream.set_nodelay(true);
    let mut upstream = Wire::new(upstream);
    upstream.stream.write_all(&request.encode(true)).await.ok()?;
    upstream.head_request = request.start.starts_with("HEAD ");
    upstream.read_message(Side::Response).await.ok().flatten()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Request,
    Response,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length,
    Chunked,
    /// A response whose body ends when the connection does.
    UntilClose,
}

/// One HTTP/1.1 message, its body kept exactly as framed on the wire.
struct Message {
    start: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    framing: Framing,
}

impl Message {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn wants_close(&self) -> bool {
        self.header("connection").is_some_and(|v| v.to_ascii_lowercase().contains("close"))
            || self.start.ends_with("HTTP/1.0")
    }

    /// The message with its hop-by-hop connection headers replaced.
    fn encode(&self, close: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 512);
        out.extend_from_slice(self.start.as_bytes());
        out.extend_from_slice(b"\r\n");
        for (name, value) in &self.headers {
            if name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("keep-alive") {
                continue;
            }
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        if close {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

const MAX_HEAD: usize = 64 * 1024;

/// A connection with its read buffer.
struct Wire {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The request this response answers was a HEAD: no body follows.
    head_request: bool,
}

type Io<T> = std::io::Result<T>;

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

impl Wire {
    fn new(stream: TcpStream) -> Wire {
        Wire { stream, buf: Vec::with_capacity(8192), head_request: false }
    }

    /// Reads more bytes into the buffer; false at end of stream.
    async fn fill(&mut self) -> Io<bool> {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    /// The bytes up to and including the first `\r\n\r\n`; `None` when the
    /// stream ends cleanly before a message starts.
    async fn read_head(&mut self) -> Io<Option<Vec<u8>>> {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return Ok(Some(self.buf.drain(..end + 4).collect()));
            }
            if self.buf.len() > MAX_HEAD {
                return Err(invalid("head too long"));
            }
            if !self.fill().await? {
                return if self.buf.is_empty() { Ok(None) } else { Err(invalid("truncated head")) };
            }
        }
    }

    async fn read_exact(&mut self, n: usize) -> Io<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill().await? {
                return Err(invalid("truncated body"));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    async fn read_line(&mut self) -> Io<Vec<u8>> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                return Ok(self.buf.drain(..end + 2).collect());
            }
            if !self.fill().await? {
                return Err(invalid("truncated chunk"));
            }
        }
    }

    /// A chunked body, raw: chunks, the last chunk and the trailers.
    async fn read_chunked(&mut self) -> Io<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line().await?;
            let text = String::from_utf8_lossy(&line);
            let size = text.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size.trim(), 16).map_err(|_| invalid("chunk size"))?;
            body.extend_from_slice(&line);
            if size == 0 {
                loop {
                    let trailer = self.read_line().await?;
                    body.extend_from_slice(&trailer);
                    if trailer == b"\r\n" {
                        return Ok(body);
                    }
                }
            }
            body.extend(self.read_exact(size + 2).await?);
        }
    }

    async fn read_message(&mut self, side: Side) -> Io<Option<Message>> {
        let Some(head) = self.read_head().await? else { return Ok(None) };
        let head = String::from_utf8(head).map_err(|_| invalid("head is not UTF-8"))?;
        let mut lines = head.split("\r\n").filter(|l| !l.is_empty());
        let start = lines.next().ok_or_else(|| invalid("no start line"))?.to_owned();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (name, value) = l.split_once(':').unwrap_or((l, ""));
                (name.trim().to_owned(), value.trim().to_owned())
            })
            .collect();
        let mut message = Message { start, headers, body: Vec::new(), framing: Framing::Length };
        let chunked = message.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let length = message.header("content-length").map(|v| v.parse::<usize>()).transpose();
        let length = length.map_err(|_| invalid("content-length"))?;
        let bodiless = side == Side::Response && {
            let status = message.start.split(' ').nth(1).unwrap_or("");
            self.head_request || status.starts_with('1') || status == "204" || status == "304"
        };
        if !bodiless {
            if chunked {
                message.framing = Framing::Chunked;
                message.body = self.read_chunked().await?;
            } else if let Some(n) = length {
                message.body = self.read_exact(n).await?;
            } else if side == Side::Response {
                message.framing = Framing::UntilClose;
                while self.fill().await? {}
                message.body = std::mem::take(&mut self.buf);
            }
        }
        Ok(Some(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A one-route upstream: answers every request with `hits=<n>`, keeping
    /// the connection open unless asked to close.
    async fn upstream() -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let counted = counted.clone();
                tokio::spawn(async move {
                    let mut wire = Wire::new(stream);
                    while let Ok(Some(req)) = wire.read_message(Side::Request).await {
                        let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
                        let body = format!("hits={n} body={}", String::from_utf8_lossy(&req.body));
                        let res = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len());
                        if wire.stream.write_all(res.as_bytes()).await.is_err() || req.wants_close() {
                            return;
                        }
                    }
                });
            }
        });
        (url, hits)
    }

    async fn raw(addr: SocketAddr, requests: &[&str]) -> Vec<Option<String>> {
        let mut wire = Wire::new(TcpStream::connect(addr).await.unwrap());
        let mut out = Vec::new();
        for r in requests {
            if wire.stream.write_all(r.as_bytes()).await.is_err() {
                out.push(None);
                continue;
            }
            match wire.read_message(Side::Response).await {
                Ok(Some(m)) => out.push(Some(String::from_utf8_lossy(&m.body).into_owned())),
                _ => out.push(None),
            }
        }
        out
    }

    const POST: &str = "POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 2\r\n\r\nhi";
    const CHUNKED: &str = "POST /x HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n";

    #[tokio::test]
    async fn passes_keep_alive_requests_one_at_a_time() {
        let (url, hits) = upstream().await;
        let proxy = FaultProxy::start(&url);
        let got = raw(proxy.addr(), &[POST, CHUNKED, POST]).await;
        assert_eq!(got[0].as_deref(), Some("hits=1 body=hi"));
        assert_eq!(got[1].as_deref(), Some("hits=2 body=2\r\nhi\r\n0\r\n\r\n"));
        assert_eq!(got[2].as_deref(), Some("hits=3 body=hi"));
        assert_eq!(hits.load(Ordering::SeqCst), 3);
        assert_eq!(proxy.counts(), Counts { passed: 3, upstream_answers: 3, ..Counts::default() });
    }

    #[tokio::test]
    async fn refuses_without_forwarding() {
        let (url, hits) = upstream().await;
        let proxy = FaultProxy::start(&url);
        proxy.set(Mode::Refuse);
        assert_eq!(raw(proxy.addr(), &[POST]).await, vec![None]);
        assert_eq!(hits.load(Ordering::SeqCst), 0);
        assert_eq!(proxy.counts().refused, 1);
    }

    #[tokio::test]
    async fn drops_the_answer_after_the_upstream_gave_it_once() {
        let (url, hits) = upstream().await;
        let proxy = FaultProxy::start(&url);
        proxy.once(Mode::DropResponse);
        assert_eq!(raw(proxy.addr(), &[POST]).await, vec![None]);
        assert_eq!(hits.load(Ordering::SeqCst), 1, "the upstream did the work");
        assert_eq!(raw(proxy.addr(), &[POST]).await, vec![Some("hits=2 body=hi".to_owned())]);
        assert_eq!(proxy.counts(), Counts { passed: 1, dropped: 1, upstream_answers: 2, ..Counts::default() });
    }

    #[tokio::test]
    async fn delays_then_forwards() {
        let (url, _) = upstream().await;
        let proxy = FaultProxy::start(&url);
        proxy.set(Mode::Delay(Duration::from_millis(300)));
        let started = std::time::Instant::now();
        assert_eq!(raw(proxy.addr(), &[POST]).await, vec![Some("hits=1 body=hi".to_owned())]);
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(proxy.counts().delayed, 1);
    }
}
