//! Request framing, checked before hyper sees a byte, so that a request hyper would refuse
//! on its own (with a bare, non-JSON answer) is refused here instead, with a JSON error.
//!
//! ```text
//! socket ─► Framing::feed ─► bytes hyper may read
//!             Head: buffered until complete, then validated as hyper would parse it
//!             Length(n) / Chunked: passed through, counted, back to Head at the end
//!             Rejected: nothing more passes; the caller answers the rejection and closes
//! ```
//!
//! Invariants:
//! - A head reaches hyper only whole and only if hyper would accept it: httparse with
//!   hyper's limits, a valid method, URI and version, at most one Content-Length value, no
//!   Transfer-Encoding without `chunked` last, never both Content-Length and
//!   Transfer-Encoding (a request-smuggling shape: refused outright rather than guessed).
//! - Message boundaries follow RFC 9112 section 6 exactly as hyper's decoder does, so the
//!   next head is found where hyper will look for it. A chunked body this tracker cannot
//!   follow is passed on unchanged and tracking stops: hyper's own decoder then fails the
//!   body, which the app answers with a JSON 400 and `Connection: close`.

use axum::http::{Method, StatusCode, Uri};

/// The most headers one request may carry. hyper's own limit is its default, also 100
/// (`max_headers` is left unset: setting it makes hyper allocate that many slots on the heap
/// for every request); every head hyper reads was checked here first, so hyper's bare
/// refusal never fires as long as this is not above it.
pub const MAX_HEADERS: usize = 100;
const _: () = assert!(
    MAX_HEADERS <= 100,
    "hyper's default header limit (100) would refuse first"
);

/// Why a request was refused before hyper saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: StatusCode,
    pub message: &'static str,
}

fn reject(status: StatusCode, message: &'static str) -> Rejection {
    Rejection { status, message }
}

#[derive(Debug)]
enum State {
    /// Waiting for (part of) a head, buffered in `head`.
    Head,
    /// Inside a body of this many remaining bytes.
    Length(u64),
    /// Inside a chunked body.
    Chunked(Chunk),
    /// Tracking gave up (see the module docs): everything passes.
    Opaque,
    /// A head was refused: nothing more passes.
    Rejected,
}

#[derive(Debug, Clone, Copy)]
enum Chunk {
    /// Hex digits of a chunk size (`digits` so far, `size` accumulated).
    Size {
        size: u64,
        digits: u8,
    },
    /// Whitespace after the size.
    SizeLws(u64),
    /// A chunk extension, up to CR.
    Extension(u64),
    /// LF ending the size line.
    SizeLf(u64),
    /// Chunk data left.
    Data(u64),
    /// CR, then LF after chunk data.
    DataCr,
    DataLf,
    /// After the last chunk: a trailer line (`empty` while nothing is on it yet).
    Trailer {
        empty: bool,
    },
    /// LF ending a trailer line (`empty`: the line was empty, ending the message).
    TrailerLf {
        empty: bool,
    },
}

/// One connection's framing state.
#[derive(Debug)]
pub struct Framing {
    state: State,
    head: Vec<u8>,
    max_head: usize,
}

impl Framing {
    /// Framing that refuses heads over `max_head` bytes.
    pub fn new(max_head: usize) -> Framing {
        Framing {
            state: State::Head,
            head: Vec::new(),
            max_head,
        }
    }

    /// Whether the connection sits between messages with nothing of the next one received.
    pub fn at_rest(&self) -> bool {
        matches!(self.state, State::Head) && self.head.is_empty()
    }

    /// Takes bytes read from the client and appends to `out` those hyper may read now. After
    /// an `Err`, everything is refused.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), Rejection> {
        while !input.is_empty() {
            match &mut self.state {
                State::Rejected => {
                    return Err(reject(StatusCode::BAD_REQUEST, "request refused"));
                }
                State::Opaque => {
                    out.extend_from_slice(input);
                    return Ok(());
                }
                State::Length(left) => {
                    let n = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(input.len());
                    out.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    *left -= n as u64;
                    if *left == 0 {
                        self.state = State::Head;
                    }
                }
                State::Chunked(chunk) => {
                    let (used, next) = step_chunked(*chunk, input);
                    out.extend_from_slice(&input[..used]);
                    input = &input[used..];
                    self.state = match next {
                        Some(Some(chunk)) => State::Chunked(chunk),
                        Some(None) => State::Head,
                        None => State::Opaque,
                    };
                }
                State::Head => {
                    // Copy only what could belong to this head; the rest is fed again below.
                    let room = self.max_head + 1 - self.head.len().min(self.max_head + 1);
                    let take = input.len().min(room.max(1));
                    let before = self.head.len();
                    self.head.extend_from_slice(&input[..take]);
                    // A head can only end at a line feed: skip re-parsing until one comes.
                    let decisive =
                        input[..take].contains(&b'\n') || self.head.len() > self.max_head;
                    let checked = if decisive {
                        self.check_head()
                    } else {
                        Ok(None)
                    };
                    match checked {
                        Err(rejection) => {
                            self.state = State::Rejected;
                            self.head = Vec::new();
                            return Err(rejection);
                        }
                        Ok(None) => input = &input[take..],
                        Ok(Some((len, body))) => {
                            // Bytes past the head go back to the input for the body.
                            let used = len - before;
                            out.extend_from_slice(&self.head[..len]);
                            self.head.clear();
                            // An idle connection keeps no large head's buffer.
                            self.head.shrink_to(1024);
                            input = &input[used..];
                            self.state = body;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// `Ok(None)`: incomplete. `Ok(Some((len, state)))`: a valid head of `len` bytes,
    /// followed by a body framed as `state`.
    fn check_head(&self) -> Result<Option<(usize, State)>, Rejection> {
        // Uninitialized slots: httparse writes the ones it fills, and 100 zeroed headers
        // (3.2 KiB) per request showed up in profiles.
        let mut headers =
            [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut []);
        let len = match request.parse_with_uninit_headers(&self.head, &mut headers) {
            Ok(httparse::Status::Partial) => {
                if self.head.len() > self.max_head {
                    return Err(head_too_large());
                }
                return Ok(None);
            }
            Ok(httparse::Status::Complete(len)) => len,
            Err(httparse::Error::TooManyHeaders) => {
                return Err(reject(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "too many request headers",
                ));
            }
            Err(httparse::Error::Version) => {
                return Err(reject(
                    StatusCode::HTTP_VERSION_NOT_SUPPORTED,
                    "only HTTP/1.0 and HTTP/1.1 are served",
                ));
            }
            Err(_) => {
                return Err(reject(
                    StatusCode::BAD_REQUEST,
                    "the request line or a header is malformed",
                ));
            }
        };
        if len > self.max_head {
            return Err(head_too_large());
        }
        let method = request.method.unwrap_or_default();
        if Method::from_bytes(method.as_bytes()).is_err() {
            return Err(reject(StatusCode::BAD_REQUEST, "the method is malformed"));
        }
        if Uri::try_from(request.path.unwrap_or_default()).is_err() {
            return Err(reject(
                StatusCode::BAD_REQUEST,
                "the request target is malformed",
            ));
        }
        let http11 = request.version == Some(1);
        let mut length: Option<u64> = None;
        let mut chunked = None;
        for h in request.headers.iter() {
            if h.name.eq_ignore_ascii_case("transfer-encoding") {
                if !http11 {
                    return Err(reject(
                        StatusCode::BAD_REQUEST,
                        "Transfer-Encoding is not allowed in HTTP/1.0",
                    ));
                }
                // As hyper: each Transfer-Encoding line decides afresh.
                chunked = Some(is_chunked(h.value));
            } else if h.name.eq_ignore_ascii_case("content-length") {
                let n = digits(h.value).ok_or(reject(
                    StatusCode::BAD_REQUEST,
                    "Content-Length is not a number",
                ))?;
                if length.is_some_and(|m| m != n) {
                    return Err(reject(
                        StatusCode::BAD_REQUEST,
                        "Content-Length is given twice, differently",
                    ));
                }
                length = Some(n);
            }
        }
        let body = match (chunked, length) {
            (Some(_), Some(_)) => {
                return Err(reject(
                    StatusCode::BAD_REQUEST,
                    "a request may not carry both Content-Length and Transfer-Encoding",
                ));
            }
            (Some(false), None) => {
                return Err(reject(
                    StatusCode::BAD_REQUEST,
                    "Transfer-Encoding must end with chunked",
                ));
            }
            (Some(true), None) => State::Chunked(Chunk::Size { size: 0, digits: 0 }),
            // hyper's largest body length.
            (None, Some(n)) if n >= u64::MAX - 1 => {
                return Err(reject(
                    StatusCode::BAD_REQUEST,
                    "Content-Length is out of range",
                ));
            }
            (None, Some(0)) | (None, None) => State::Head,
            (None, Some(n)) => State::Length(n),
        };
        Ok(Some((len, body)))
    }
}

fn head_too_large() -> Rejection {
    reject(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "the request head is larger than the limit",
    )
}

/// Decimal digits only (no sign, no spaces), as hyper parses Content-Length.
fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// Whether the last coding of a Transfer-Encoding value is `chunked`, as hyper decides it.
fn is_chunked(value: &[u8]) -> bool {
    std::str::from_utf8(value).is_ok_and(|v| {
        v.rsplit(',')
            .next()
            .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
    })
}

/// Advances a chunked body over `input`. Returns the bytes consumed and the next state:
/// `Some(Some(_))` still in the body, `Some(None)` the body ended (bytes after it are not
/// consumed), `None` framing this tracker cannot follow (bytes from there are not consumed).
fn step_chunked(mut chunk: Chunk, input: &[u8]) -> (usize, Option<Option<Chunk>>) {
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        chunk = match chunk {
            Chunk::Data(left) => {
                let n = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(input.len() - i);
                i += n;
                let left = left - n as u64;
                chunk = if left == 0 {
                    Chunk::DataCr
                } else {
                    Chunk::Data(left)
                };
                continue;
            }
            Chunk::Size { size, digits } => match (b as char).to_digit(16) {
                Some(d) if digits < 16 => Chunk::Size {
                    size: size * 16 + u64::from(d),
                    digits: digits + 1,
                },
                Some(_) => return (i, None),
                None if digits == 0 => return (i, None),
                None => match b {
                    b' ' | b'\t' => Chunk::SizeLws(size),
                    b';' => Chunk::Extension(size),
                    b'\r' => Chunk::SizeLf(size),
                    _ => return (i, None),
                },
            },
            Chunk::SizeLws(size) => match b {
                b' ' | b'\t' => Chunk::SizeLws(size),
                b';' => Chunk::Extension(size),
                b'\r' => Chunk::SizeLf(size),
                _ => return (i, None),
            },
            Chunk::Extension(size) => match b {
                b'\r' => Chunk::SizeLf(size),
                b'\n' => return (i, None),
                _ => Chunk::Extension(size),
            },
            Chunk::SizeLf(size) => match (b, size) {
                (b'\n', 0) => Chunk::Trailer { empty: true },
                (b'\n', size) => Chunk::Data(size),
                _ => return (i, None),
            },
            Chunk::DataCr => match b {
                b'\r' => Chunk::DataLf,
                _ => return (i, None),
            },
            Chunk::DataLf => match b {
                b'\n' => Chunk::Size { size: 0, digits: 0 },
                _ => return (i, None),
            },
            Chunk::Trailer { empty } => match b {
                b'\r' => Chunk::TrailerLf { empty },
                b'\n' => return (i, None),
                _ => Chunk::Trailer { empty: false },
            },
            Chunk::TrailerLf { empty } => match b {
                b'\n' if empty => return (i + 1, Some(None)),
                b'\n' => Chunk::Trailer { empty: true },
                _ => return (i, None),
            },
        };
        i += 1;
    }
    (i, Some(Some(chunk)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(framing: &mut Framing, input: &[u8], split: usize) -> Result<Vec<u8>, Rejection> {
        let mut out = Vec::new();
        for piece in input.chunks(split.max(1)) {
            framing.feed(piece, &mut out)?;
        }
        Ok(out)
    }

    #[test]
    fn valid_pipelines_pass_whole_however_they_arrive() {
        let stream: &[u8] = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n\
            POST /dogs HTTP/1.1\r\ncontent-length: 5\r\n\r\nhello\
            POST /dogs HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n0\r\nt: 1\r\n\r\n\
            GET /count HTTP/1.1\r\n\r\n";
        for split in [1, 2, 7, 64, stream.len()] {
            let mut f = Framing::new(1024);
            assert_eq!(run(&mut f, stream, split).unwrap(), stream, "split {split}");
            assert!(f.at_rest(), "split {split}: {f:?}");
        }
    }

    #[test]
    fn what_hyper_would_answer_itself_is_refused_here() {
        let cases: &[(&[u8], u16)] = &[
            (b"GET / HTTP/1.1\r\nx: y\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\ncontent-length: -1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\ncontent-length: 99999999999999999999999\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n", 400),
            (b"GET / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n", 400),
            (b"G\x01T / HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/2.0\r\n\r\n", 505),
            (b"GET /\x7f HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nbad header\r\n\r\n", 400),
        ];
        for (input, status) in cases {
            let mut f = Framing::new(1024);
            let err = run(&mut f, input, input.len()).unwrap_err();
            assert_eq!(
                err.status.as_u16(),
                *status,
                "{}",
                String::from_utf8_lossy(input)
            );
            // Nothing of the bad head reached hyper, and nothing after it will.
            let mut out = Vec::new();
            assert!(f.feed(b"GET / HTTP/1.1\r\n\r\n", &mut out).is_err());
            assert!(out.is_empty());
        }
        let mut f = Framing::new(1024);
        let head = [b"GET / HTTP/1.1\r\nx: ".as_slice(), &[b'a'; 2000]].concat();
        assert_eq!(run(&mut f, &head, 100).unwrap_err().status, 431);
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "a: b\r\n".repeat(101));
        let mut f = Framing::new(4096);
        assert_eq!(run(&mut f, many.as_bytes(), 4096).unwrap_err().status, 431);
    }

    #[test]
    fn a_request_after_a_valid_one_is_checked_too() {
        let mut f = Framing::new(1024);
        let mut out = Vec::new();
        let good = b"POST / HTTP/1.1\r\ncontent-length: 2\r\n\r\nab";
        let input = [
            good.as_slice(),
            b"GET / HTTP/1.1\r\ncontent-length: x\r\n\r\n",
        ]
        .concat();
        assert!(f.feed(&input, &mut out).is_err());
        assert_eq!(out, good);
    }

    #[test]
    fn a_chunked_body_it_cannot_follow_is_passed_to_hyper_unchanged() {
        let mut f = Framing::new(1024);
        let input =
            b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nGET / HTTP/9\r\n\r\n";
        assert_eq!(run(&mut f, input, 3).unwrap(), input);
    }
}
