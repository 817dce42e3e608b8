//! The benchmark's upstream: answers every HTTP/1.1 request with a fixed JSON-RPC result, keeping the
//! connection alive. The request body is read and discarded (Content-Length or chunked), so large bodies
//! cost the upstream only a copy. Requests for a path under `/mcp/list` get a `tools/list` result of 100
//! tools (`tool-00` .. `tool-99`), everything else a small `tools/call` result; both answer id 42, the
//! id of every benchmark request. One thread per connection: Envoy opens at most as many upstream
//! connections as the load generator has, so the count stays small.
//!
//! Usage: `bench-upstream [127.0.0.1:PORT]` (default port 0); prints the bound port on stdout.
//! Every response carries `x-bench-upstream: 1`, which is how the harness tells "reached the upstream"
//! from a proxy's own reply.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;

const CALL_RESULT: &str = r#"{"jsonrpc":"2.0","id":42,"result":{"content":[{"type":"text","text":"ok"}],"isError":false}}"#;
const LIST_PATH: &str = "/mcp/list";
const LIST_TOOLS: usize = 100;

fn list_result() -> String {
    let tools: Vec<String> = (0..LIST_TOOLS)
        .map(|i| {
            format!(
                r#"{{"name":"tool-{i:02}","description":"Benchmark tool number {i}: echoes its text argument.","inputSchema":{{"type":"object","properties":{{"text":{{"type":"string"}}}},"required":["text"]}}}}"#
            )
        })
        .collect();
    format!(r#"{{"jsonrpc":"2.0","id":42,"result":{{"tools":[{}]}}}}"#, tools.join(","))
}

fn response(body: &str) -> &'static [u8] {
    let text = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-bench-upstream: 1\r\n\r\n{body}",
        body.len()
    );
    Box::leak(text.into_bytes().into_boxed_slice())
}

fn main() -> io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let listener = TcpListener::bind(&addr)?;
    if !listener.local_addr()?.ip().is_loopback() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "bench upstream listens on loopback only"));
    }
    println!("{}", listener.local_addr()?.port());
    io::stdout().flush()?;
    let answers = Answers { call: response(CALL_RESULT), list: response(&list_result()) };
    for stream in listener.incoming() {
        let stream = stream?;
        thread::spawn(move || {
            // A peer closing mid-request is normal at the end of a run; nothing to report.
            let _ = serve(stream, answers);
        });
    }
    Ok(())
}

#[derive(Clone, Copy)]
struct Answers {
    call: &'static [u8],
    list: &'static [u8],
}

/// Serve requests on one connection until the peer closes it.
fn serve(stream: TcpStream, answers: Answers) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let mut line = String::new();
    loop {
        // Request line; EOF here is a clean close.
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let path = line.split(' ').nth(1).unwrap_or("");
        let response = if path.starts_with(LIST_PATH) { answers.list } else { answers.call };
        let (mut length, mut chunked) = (0u64, false);
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse().map_err(|_| bad("bad content-length"))?;
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value.eq_ignore_ascii_case("chunked");
                }
            }
        }
        if chunked {
            discard_chunked(&mut reader, &mut line)?;
        } else {
            discard(&mut reader, length)?;
        }
        writer.write_all(response)?;
    }
}

fn discard(reader: &mut impl Read, n: u64) -> io::Result<()> {
    let copied = io::copy(&mut reader.take(n), &mut io::sink())?;
    if copied == n {
        Ok(())
    } else {
        Err(bad("body shorter than content-length"))
    }
}

fn discard_chunked(reader: &mut impl BufRead, line: &mut String) -> io::Result<()> {
    loop {
        line.clear();
        reader.read_line(line)?;
        let size = line.trim_end().split(';').next().unwrap_or("");
        let size = u64::from_str_radix(size.trim(), 16).map_err(|_| bad("bad chunk size"))?;
        if size == 0 {
            // Trailers, then the empty line.
            loop {
                line.clear();
                if reader.read_line(line)? == 0 || line.trim_end().is_empty() {
                    return Ok(());
                }
            }
        }
        discard(reader, size + 2)?; // chunk data and its CRLF
    }
}

fn bad(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_owned())
}
