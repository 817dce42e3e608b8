//! Incremental Server-Sent Events framing (WHATWG HTML §9.2), for rewriting one event in a live stream.
//!
//! The filter sees a `text/event-stream` body in chunks split at arbitrary bytes. [`SseSplitter`] keeps only
//! the unfinished tail and hands back complete events as raw byte ranges, so events the filter does not
//! touch are forwarded byte for byte and as soon as their terminating blank line has arrived (a slow
//! stream is never held back by more than one event). Lines end in `\r\n`, `\n` or `\r`; an event ends at an
//! empty line. A `\r` at the very end of a chunk could be the first half of `\r\n`, so the splitter waits for
//! the next byte before treating it as a line end.

use std::borrow::Cow;

/// Splits a byte stream into complete SSE events.
#[derive(Debug, Default)]
pub struct SseSplitter {
    buf: Vec<u8>,
    /// Start of the first event not yet handed out (consumed bytes are dropped in one go, not per event).
    start: usize,
    /// Bytes of `buf` already scanned without finding an event end (avoids rescanning on every chunk).
    scanned: usize,
    /// Whether the previous scanned line ended (`scanned` sits at a line start).
    at_line_start: bool,
}

/// The fields of one event that matter to Grantwall.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent<'a> {
    /// `data:` lines joined with `\n` (the SSE rule), None when the event has no data line. Borrowed from
    /// the raw event when it has a single data line (the usual JSON-RPC message).
    pub data: Option<Cow<'a, str>>,
    /// The last `id:` field, if any (kept when an event is rewritten: clients resume from it).
    pub id: Option<String>,
    /// The `event:` type, if any.
    pub event: Option<String>,
}

impl SseSplitter {
    pub fn new() -> Self {
        SseSplitter { buf: Vec::new(), start: 0, scanned: 0, at_line_start: true }
    }

    /// Bytes buffered but not yet part of a complete event.
    pub fn pending(&self) -> usize {
        self.buf.len().saturating_sub(self.start)
    }

    /// Append a chunk; call [`SseSplitter::next_event`] until it returns None.
    pub fn push(&mut self, chunk: &[u8]) {
        self.compact();
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete event's raw bytes (blank line included).
    pub fn next_event(&mut self) -> Option<Vec<u8>> {
        let Some(end) = self.find_event_end() else {
            self.compact();
            return None;
        };
        let event = self.buf.get(self.start..end).map(<[u8]>::to_vec);
        self.start = end;
        self.scanned = end;
        self.at_line_start = true;
        event
    }

    /// What is left at the end of the stream (an unterminated event, which SSE clients discard).
    pub fn take_rest(&mut self) -> Vec<u8> {
        self.compact();
        self.scanned = 0;
        self.at_line_start = true;
        std::mem::take(&mut self.buf)
    }

    /// Drop the bytes already handed out.
    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start.min(self.buf.len()));
            self.scanned = self.scanned.saturating_sub(self.start);
            self.start = 0;
        }
    }

    /// Offset just past the blank line ending the first event, scanning from where the last call stopped.
    fn find_event_end(&mut self) -> Option<usize> {
        let buf = &self.buf;
        let mut i = self.scanned.max(self.start);
        let mut line_start = self.at_line_start;
        while let Some(&b) = buf.get(i) {
            let term = match b {
                b'\n' => 1,
                b'\r' => match buf.get(i + 1) {
                    Some(b'\n') => 2,
                    Some(_) => 1,
                    // A trailing `\r` may be half of `\r\n`: wait for the next chunk.
                    None => break,
                },
                _ => {
                    line_start = false;
                    i += 1;
                    continue;
                }
            };
            if line_start {
                return Some(i + term);
            }
            line_start = true;
            i += term;
        }
        self.scanned = i;
        self.at_line_start = line_start;
        None
    }
}

/// Parse the fields of one raw event. Comments (`:` lines) and unknown fields are ignored, a single space
/// after the colon is dropped, as the SSE spec says. Invalid UTF-8 is an error: the caller cannot be sure
/// what a client would read.
pub fn parse_event(raw: &[u8]) -> Result<SseEvent<'_>, std::str::Utf8Error> {
    let text = std::str::from_utf8(raw)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut event = SseEvent::default();
    let mut data: Option<Cow<'_, str>> = None;
    for line in text.split(['\n', '\r']) {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            // SSE: each data line is appended followed by a newline, and the last newline is removed at
            // dispatch; so one line is the value itself (borrowed), several are joined with `\n`.
            "data" => match data.as_mut() {
                None => data = Some(Cow::Borrowed(value)),
                Some(d) => {
                    let d = d.to_mut();
                    d.push('\n');
                    d.push_str(value);
                }
            },
            "id" if !value.contains('\0') => event.id = Some(value.to_owned()),
            "event" => event.event = Some(value.to_owned()),
            _ => {}
        }
    }
    event.data = data;
    Ok(event)
}

/// Serialize one event carrying `data` (single line: JSON has no raw newlines) and an optional id.
pub fn write_event(out: &mut Vec<u8>, id: Option<&str>, data: &[u8]) {
    if let Some(id) = id {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"event: message\ndata: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
}
