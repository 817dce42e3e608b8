//! Incremental Server-Sent Events framing (WHATWG HTML §9.2), for rewriting one event in a live stream.
//!
//! The filter sees a `text/event-stream` body in chunks split at arbitrary bytes. [`SseSplitter`] keeps only
//! the unfinished tail and hands back complete events as raw byte ranges, so events the filter does not
//! touch are forwarded byte for byte and as soon as their terminating blank line has arrived (a slow
//! stream is never held back by more than one event). Lines end in `\r\n`, `\n` or `\r`; an event ends at an
//! empty line. A `\r` at the very end of a chunk could be the first half of `\r\n`, so the splitter waits for
//! the next byte before treating it as a line end.

/// Splits a byte stream into complete SSE events.
#[derive(Debug, Default)]
pub struct SseSplitter {
    buf: Vec<u8>,
    /// Bytes of `buf` already scanned without finding an event end (avoids rescanning on every chunk).
    scanned: usize,
    /// Whether the previous scanned line ended (`scanned` sits at a line start).
    at_line_start: bool,
}

/// The fields of one event that matter to Grantwall.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// `data:` lines joined with `\n` (the SSE rule), None when the event has no data line.
    pub data: Option<String>,
    /// The last `id:` field, if any (kept when an event is rewritten: clients resume from it).
    pub id: Option<String>,
    /// The `event:` type, if any.
    pub event: Option<String>,
}

impl SseSplitter {
    pub fn new() -> Self {
        SseSplitter { buf: Vec::new(), scanned: 0, at_line_start: true }
    }

    /// Bytes buffered but not yet part of a complete event.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Append a chunk; call [`SseSplitter::next_event`] until it returns None.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete event's raw bytes (blank line included), removed from the buffer.
    pub fn next_event(&mut self) -> Option<Vec<u8>> {
        let end = self.find_event_end()?;
        let rest = self.buf.split_off(end);
        let event = std::mem::replace(&mut self.buf, rest);
        self.scanned = 0;
        self.at_line_start = true;
        Some(event)
    }

    /// What is left at the end of the stream (an unterminated event, which SSE clients discard).
    pub fn take_rest(&mut self) -> Vec<u8> {
        self.scanned = 0;
        self.at_line_start = true;
        std::mem::take(&mut self.buf)
    }

    /// Offset just past the blank line ending the first event, scanning from where the last call stopped.
    fn find_event_end(&mut self) -> Option<usize> {
        let buf = &self.buf;
        let mut i = self.scanned;
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
pub fn parse_event(raw: &[u8]) -> Result<SseEvent, std::str::Utf8Error> {
    let text = std::str::from_utf8(raw)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut event = SseEvent::default();
    let mut data: Option<String> = None;
    for line in text.split(['\n', '\r']) {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                // SSE: append the value and a newline; the final newline is removed at dispatch.
                let d = data.get_or_insert_with(String::new);
                d.push_str(value);
                d.push('\n');
            }
            "id" if !value.contains('\0') => event.id = Some(value.to_owned()),
            "event" => event.event = Some(value.to_owned()),
            _ => {}
        }
    }
    if let Some(d) = data.as_mut() {
        d.pop();
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
