//! `moat metrics --listen ADDR`: the zones' and containers' figures for Prometheus, served as
//! its text format on `GET /metrics` and gathered afresh at each scrape.
//!
//! One connection at a time: a scrape takes a moment and Prometheus sends one at a time, so a
//! thread per connection would only let a slow or hostile client start more zone requests. A
//! client gets [`READ_TIMEOUT`] and [`MAX_REQUEST_HEAD`] bytes to say what it wants.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use moat_runtime::{metrics, Runtime};

/// Most bytes of a request's line and headers read; a longer head is refused.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request, and to take the answer.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

const PATH: &str = "/metrics";

#[derive(clap::Args)]
pub struct MetricsArgs {
    /// Address and port to serve on, such as 127.0.0.1:9100 (port 0: any free one).
    #[arg(long, value_name = "ADDR")]
    listen: String,
}

pub fn run(root: &Path, args: MetricsArgs) -> anyhow::Result<ExitCode> {
    let address: SocketAddr = args.listen.parse().map_err(|_| anyhow::anyhow!("--listen {:?} is not an address and port, such as 127.0.0.1:9100", args.listen))?;
    let runtime = Runtime::open(root, moat_runtime::pods::default_supervisor(root)?)?;
    let listener = TcpListener::bind(address).with_context(|| format!("listening on {address}"))?;
    eprintln!("listening on {}", listener.local_addr()?);
    for stream in listener.incoming() {
        let served = stream.and_then(|stream| serve(&runtime, stream));
        if let Err(err) = served {
            eprintln!("moat: a metrics client: {err}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn serve(runtime: &Runtime, mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let head = read_head(&mut stream)?;
    let response = answer(head.as_deref(), || {
        runtime.scrape().map(|scrape| metrics::render(&scrape)).map_err(|err| {
            eprintln!("moat: gathering metrics: {err}");
            err.to_string()
        })
    });
    stream.write_all(&response.bytes())?;
    stream.flush()
}

/// The request's line and headers, up to the blank line; `None` when the client closed first or
/// they would pass [`MAX_REQUEST_HEAD`].
fn read_head(stream: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::new();
    const CHUNK: usize = 1024;
    let mut chunk = [0u8; CHUNK];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let room = MAX_REQUEST_HEAD - head.len();
        if room == 0 {
            return Ok(None);
        }
        let n = stream.read(&mut chunk[..room.min(CHUNK)])?;
        if n == 0 {
            return Ok(None);
        }
        head.extend_from_slice(&chunk[..n]);
    }
    Ok(Some(head))
}

struct Response {
    status: &'static str,
    content_type: &'static str,
    /// Only a 405 says which method would do.
    allow_get: bool,
    body: String,
}

impl Response {
    fn text(status: &'static str, body: impl Into<String>) -> Self {
        Self { status, content_type: "text/plain; charset=utf-8", allow_get: false, body: body.into() }
    }

    fn bytes(&self) -> Vec<u8> {
        let allow = if self.allow_get { "Allow: GET\r\n" } else { "" };
        format!("HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n{}", self.status, self.content_type, self.body.len(), self.body).into_bytes()
    }
}

/// The answer to a request `head` (`None`: unreadable or too long); `scrape` runs only for
/// `GET /metrics`.
fn answer(head: Option<&[u8]>, scrape: impl FnOnce() -> Result<String, String>) -> Response {
    let request_line = head.and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| h.lines().next());
    let Some([method, target, _version]) = request_line.map(|l| l.split(' ').collect::<Vec<_>>()).and_then(|parts| <[&str; 3]>::try_from(parts).ok()) else {
        return Response::text("400 Bad Request", "bad request\n");
    };
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    if path != PATH {
        return Response::text("404 Not Found", format!("not found; the metrics are at {PATH}\n"));
    }
    if method != "GET" {
        return Response { allow_get: true, ..Response::text("405 Method Not Allowed", "only GET\n") };
    }
    match scrape() {
        Ok(text) => Response { content_type: metrics::CONTENT_TYPE, ..Response::text("200 OK", text) },
        Err(err) => Response::text("500 Internal Server Error", format!("{err}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(request: &str) -> &'static str {
        answer(Some(request.as_bytes()), || Ok("moat_zones 0\n".into())).status
    }

    #[test]
    fn only_get_metrics_is_served() {
        assert_eq!(status("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), "200 OK");
        assert_eq!(status("GET /metrics?name[]=x HTTP/1.0\r\n\r\n"), "200 OK");
        assert_eq!(status("GET /nope HTTP/1.1\r\n\r\n"), "404 Not Found");
        assert_eq!(status("POST /metrics HTTP/1.1\r\n\r\n"), "405 Method Not Allowed");
        assert_eq!(status("GET\r\n\r\n"), "400 Bad Request");
        assert_eq!(answer(None, || unreachable!("no scrape for a bad request")).status, "400 Bad Request");
    }

    #[test]
    fn answers_carry_their_length_and_type() {
        let ok = String::from_utf8(answer(Some(b"GET /metrics HTTP/1.1\r\n\r\n"), || Ok("moat_zones 0\n".into())).bytes()).unwrap();
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: 13\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\nmoat_zones 0\n"), "{ok}");
        let refused = String::from_utf8(answer(Some(b"PUT /metrics HTTP/1.1\r\n\r\n"), || unreachable!()).bytes()).unwrap();
        assert!(refused.contains("\r\nAllow: GET\r\n"), "{refused}");
        let failed = answer(Some(b"GET /metrics HTTP/1.1\r\n\r\n"), || Err("the state root is unreadable".into()));
        assert_eq!((failed.status, failed.body.as_str()), ("500 Internal Server Error", "the state root is unreadable\n"));
    }

    #[test]
    fn request_heads_are_bounded() {
        let mut endless = std::io::repeat(b'a');
        assert_eq!(read_head(&mut endless).unwrap(), None);
        let mut short: &[u8] = b"GET /metrics HTTP/1.1\r\n";
        assert_eq!(read_head(&mut short).unwrap(), None, "closed before the blank line");
        let mut whole: &[u8] = b"GET /metrics HTTP/1.1\r\n\r\n";
        assert_eq!(read_head(&mut whole).unwrap().as_deref(), Some(&b"GET /metrics HTTP/1.1\r\n\r\n"[..]));
    }
}
