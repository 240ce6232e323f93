//! A small HTTP/1.1 client over std `TcpStream`, for tests: keep-alive when the server allows
//! it, raw bytes when a test needs a malformed request, bounded by socket timeouts.

#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body is not JSON ({e}): {:?}",
                self.status,
                self.text()
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn pid(&self) -> u32 {
        self.header("x-worker-pid")
            .expect("x-worker-pid header")
            .parse()
            .expect("numeric pid")
    }

    fn wants_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// A keep-alive connection that reconnects after the server closes it.
pub struct Client {
    addr: String,
    conn: Option<BufReader<TcpStream>>,
    /// Connections opened so far.
    pub connects: usize,
}

impl Client {
    pub fn new(addr: &str) -> Client {
        Client {
            addr: addr.trim_start_matches("http://").to_owned(),
            conn: None,
            connects: 0,
        }
    }

    pub fn get(&mut self, path: &str) -> io::Result<Response> {
        self.send("GET", path, &[], b"")
    }

    pub fn post_json(&mut self, path: &str, body: &str) -> io::Result<Response> {
        self.send(
            "POST",
            path,
            &[("content-type", "application/json")],
            body.as_bytes(),
        )
    }

    pub fn put_json(&mut self, path: &str, body: &str) -> io::Result<Response> {
        self.send(
            "PUT",
            path,
            &[("content-type", "application/json")],
            body.as_bytes(),
        )
    }

    pub fn delete(&mut self, path: &str) -> io::Result<Response> {
        self.send("DELETE", path, &[], b"")
    }

    /// Sends one request. On an I/O error the connection is dropped and the error returned:
    /// the caller decides whether that is a failed request.
    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {}\r\n", self.addr);
        for (n, v) in headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        if !body.is_empty() || matches!(method, "POST" | "PUT") {
            head.push_str(&format!("content-length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        let result = self.round_trip(&bytes, method == "HEAD");
        match &result {
            Ok(r) if !r.wants_close() => {}
            _ => self.conn = None,
        }
        result
    }

    fn round_trip(&mut self, request: &[u8], head_only: bool) -> io::Result<Response> {
        if self.conn.is_none() {
            let stream = TcpStream::connect(&self.addr)?;
            stream.set_read_timeout(Some(Duration::from_secs(60)))?;
            stream.set_write_timeout(Some(Duration::from_secs(60)))?;
            stream.set_nodelay(true)?;
            self.conn = Some(BufReader::new(stream));
            self.connects += 1;
        }
        let conn = self.conn.as_mut().unwrap();
        conn.get_mut().write_all(request)?;
        read_response(conn, head_only)
    }
}

/// Sends raw bytes on a fresh connection and reads one response.
pub fn raw(addr: &str, request: &[u8]) -> io::Result<Response> {
    let stream = TcpStream::connect(addr.trim_start_matches("http://"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut conn = BufReader::new(stream);
    conn.get_mut().write_all(request)?;
    read_response(&mut conn, false)
}

/// One request on a fresh connection.
pub fn get(addr: &str, path: &str) -> io::Result<Response> {
    Client::new(addr).send("GET", path, &[("connection", "close")], b"")
}

fn read_response(conn: &mut BufReader<TcpStream>, head_only: bool) -> io::Result<Response> {
    let mut line = String::new();
    if conn.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a response",
        ));
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {line:?}"),
            )
        })?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if conn.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "eof in headers",
            ));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((n, v)) = l.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(response);
    }
    if let Some(len) = response.header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad length"))?;
        let mut body = vec![0; len];
        conn.read_exact(&mut body)?;
        response.body = body;
    } else if response
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            line.clear();
            conn.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            let mut chunk = vec![0; size + 2];
            conn.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            response.body.extend_from_slice(&chunk[..size]);
        }
    } else {
        conn.read_to_end(&mut response.body)?;
    }
    Ok(response)
}
