//! Response side of a list request: filter the one JSON-RPC response that answers it.
//!
//! The request side remembers (per stream) that the request was `tools/list` & co. and its id. Here:
//! - `application/json`: buffer the whole body, filter, replace;
//! - `text/event-stream`: split events as chunks arrive; events other than our response (progress and other
//!   notifications, server requests) are forwarded at once, byte for byte; our response is rewritten;
//! - anything else on a 2xx (other media types, compressed bodies): replaced by a JSON-RPC error.
//!
//! Failing closed: a response Grantwall cannot read with certainty becomes a JSON-RPC error carrying the
//! request's id; an SSE stream that ends without our response gets that error as its last event.
//! Responses to other requests never come here, so long-lived streams are not buffered at all.

use grantwall_core::listfilter::{self, Filtered, ListItem, ListKind};
use grantwall_core::sse::{self, SseSplitter};

/// Largest list response (JSON body, or one SSE event) buffered for filtering.
pub const MAX_LIST_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// What the request side remembered about a list request.
pub struct ListWatch {
    pub kind: ListKind,
    /// The request's id as written (`"a"` or `7`).
    pub id: String,
    /// 2026-07-28 request: force `cacheScope: "private"`.
    pub modern: bool,
    mode: Mode,
    splitter: SseSplitter,
    /// Our response has been seen (and rewritten or replaced).
    done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Json,
    Sse,
    /// Not a success: no list to filter (HTTP errors, 202).
    PassThrough,
    /// A 2xx Grantwall cannot read: the body becomes a JSON-RPC error.
    Replace,
}

/// What the glue should do with the current body callback.
pub enum BodyStep {
    /// Keep buffering (JSON, not complete yet).
    Buffer,
    /// Forward (possibly rewritten) and continue.
    Forward,
}

/// Counts for the audit record of a filtered list.
#[derive(Default)]
pub struct ListStats {
    pub kept: usize,
    pub dropped: usize,
    pub unfilterable: Option<String>,
}

impl ListWatch {
    pub fn new(kind: ListKind, id: &str, modern: bool) -> Self {
        ListWatch { kind, id: id.to_owned(), modern, mode: Mode::PassThrough, splitter: SseSplitter::new(), done: false }
    }

    /// Response headers: pick the mode; the body length will change, so drop Content-Length.
    pub fn on_headers(&mut self, status: Option<&str>, content_type: Option<&str>, encoding: Option<&str>) {
        let success = status.is_some_and(|s| s.starts_with('2') && s != "202" && s != "204");
        let media = content_type.and_then(|c| c.split(';').next()).map(str::trim).unwrap_or("");
        let compressed = encoding.is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity"));
        self.mode = if !success {
            Mode::PassThrough
        } else if compressed {
            Mode::Replace
        } else if media.eq_ignore_ascii_case("application/json") {
            Mode::Json
        } else if media.eq_ignore_ascii_case("text/event-stream") {
            Mode::Sse
        } else {
            Mode::Replace
        };
    }

    pub fn passes_through(&self) -> bool {
        self.mode == Mode::PassThrough
    }

    /// Whether the response's media type becomes `application/json` (a replaced body).
    pub fn replaces_body(&self) -> bool {
        self.mode == Mode::Replace
    }

    /// One body callback. `read` returns the bytes visible now (for JSON, everything buffered; for SSE, the
    /// chunk), `judge` decides one listed item. Returns the replacement bytes, if any, and the step.
    pub fn on_body(
        &mut self,
        chunk: &[u8],
        end_of_stream: bool,
        stats: &mut ListStats,
        judge: &mut dyn FnMut(&ListItem<'_>) -> bool,
    ) -> (Option<Vec<u8>>, BodyStep) {
        match self.mode {
            Mode::PassThrough => (None, BodyStep::Forward),
            Mode::Replace => {
                if !end_of_stream {
                    // Swallow the chunk; the error goes out with the last one.
                    return (Some(Vec::new()), BodyStep::Forward);
                }
                stats.unfilterable = Some("list response in a media type or encoding Grantwall does not read".into());
                (Some(listfilter::unfilterable_reply(&self.id)), BodyStep::Forward)
            }
            Mode::Json => {
                if !end_of_stream {
                    if chunk.len() > MAX_LIST_RESPONSE_BYTES {
                        self.mode = Mode::Replace;
                        return (Some(Vec::new()), BodyStep::Forward);
                    }
                    return (None, BodyStep::Buffer);
                }
                let out = match listfilter::filter_message(self.kind, &self.id, chunk, self.modern, judge) {
                    Ok(Filtered::Rewritten { body, kept, dropped }) => {
                        stats.kept = kept;
                        stats.dropped = dropped;
                        body
                    }
                    Ok(Filtered::ErrorResponse) => return (None, BodyStep::Forward),
                    Ok(Filtered::NotOurs) => {
                        stats.unfilterable = Some("the JSON body is not the response to the list request".into());
                        listfilter::unfilterable_reply(&self.id)
                    }
                    Err(e) => {
                        stats.unfilterable = Some(e.0);
                        listfilter::unfilterable_reply(&self.id)
                    }
                };
                self.done = true;
                (Some(out), BodyStep::Forward)
            }
            Mode::Sse => (Some(self.on_sse_chunk(chunk, end_of_stream, stats, judge)), BodyStep::Forward),
        }
    }

    fn on_sse_chunk(
        &mut self,
        chunk: &[u8],
        end_of_stream: bool,
        stats: &mut ListStats,
        judge: &mut dyn FnMut(&ListItem<'_>) -> bool,
    ) -> Vec<u8> {
        self.splitter.push(chunk);
        let mut out = Vec::with_capacity(chunk.len());
        while let Some(raw) = self.splitter.next_event() {
            self.on_event(&raw, &mut out, stats, judge);
        }
        if self.splitter.pending() > MAX_LIST_RESPONSE_BYTES {
            let _ = self.splitter.take_rest();
            self.fail(&mut out, stats, "an SSE event larger than the list response limit");
        }
        if end_of_stream {
            // An unterminated last event is discarded by SSE clients; never forward it unjudged.
            let _ = self.splitter.take_rest();
            if !self.done {
                self.fail(&mut out, stats, "the SSE stream ended without the list response");
            }
        }
        out
    }

    fn on_event(
        &mut self,
        raw: &[u8],
        out: &mut Vec<u8>,
        stats: &mut ListStats,
        judge: &mut dyn FnMut(&ListItem<'_>) -> bool,
    ) {
        let event = match sse::parse_event(raw) {
            Ok(e) => e,
            Err(_) => {
                if !self.done {
                    self.fail(out, stats, "an SSE event is not UTF-8");
                }
                return;
            }
        };
        let Some(data) = event.data.as_deref() else {
            // Comments, retry/id-only events: nothing a client dispatches as a message.
            out.extend_from_slice(raw);
            return;
        };
        match listfilter::filter_message(self.kind, &self.id, data.as_bytes(), self.modern, judge) {
            Ok(Filtered::NotOurs) => out.extend_from_slice(raw),
            Ok(Filtered::ErrorResponse) if !self.done => {
                self.done = true;
                out.extend_from_slice(raw);
            }
            Ok(Filtered::Rewritten { body, kept, dropped }) if !self.done => {
                self.done = true;
                stats.kept = kept;
                stats.dropped = dropped;
                sse::write_event(out, event.id.as_deref(), &body);
            }
            // A second response with our id after we answered: never let it through unfiltered.
            Ok(_) => {}
            Err(e) if !self.done => self.fail(out, stats, &e.0),
            Err(_) => {}
        }
    }

    fn fail(&mut self, out: &mut Vec<u8>, stats: &mut ListStats, why: &str) {
        if self.done {
            return;
        }
        self.done = true;
        stats.unfilterable = Some(why.to_owned());
        sse::write_event(out, None, &listfilter::unfilterable_reply(&self.id));
    }
}

/// Any other allowed MCP response on a backend with policies: SSE events pass through as they complete,
/// except URL elicitations to hosts not on the backend's allowlist (removed, and reported); and the
/// response to a task-augmented request is read for the `taskId` it created (nothing is changed).
pub struct StreamWatch {
    /// Request id of a task-augmented request whose response creates a task.
    pub task_request_id: Option<String>,
    sse: bool,
    json: Vec<u8>,
    splitter: SseSplitter,
    /// Set when the stream must not carry anything more (an unreadable event that might be an elicitation).
    broken: bool,
}

/// What a stream chunk showed.
#[derive(Default)]
pub struct StreamFindings {
    /// Tasks created for the caller.
    pub created_tasks: Vec<String>,
    /// URL elicitations removed (the URLs).
    pub refused_urls: Vec<String>,
    pub unreadable: Option<String>,
}

impl StreamWatch {
    pub fn new(task_request_id: Option<String>) -> Self {
        StreamWatch { task_request_id, sse: false, json: Vec::new(), splitter: SseSplitter::new(), broken: false }
    }

    /// Response headers: only 2xx SSE or JSON bodies are read.
    pub fn on_headers(&mut self, status: Option<&str>, content_type: Option<&str>) -> bool {
        let success = status.is_some_and(|s| s.starts_with('2'));
        let media = content_type.and_then(|c| c.split(';').next()).map(str::trim).unwrap_or("");
        self.sse = media.eq_ignore_ascii_case("text/event-stream");
        let json = media.eq_ignore_ascii_case("application/json") && self.task_request_id.is_some();
        success && (self.sse || json)
    }

    /// Whether the SSE stream is being rewritten (Content-Length must go).
    pub fn is_sse(&self) -> bool {
        self.sse
    }

    /// One chunk: returns the bytes to forward instead (SSE), or None to forward the chunk unchanged.
    pub fn on_chunk(&mut self, chunk: &[u8], end_of_stream: bool, allowed_hosts: &[String], found: &mut StreamFindings) -> Option<Vec<u8>> {
        if !self.sse {
            // JSON: keep a bounded copy to read the created task at the end; the body itself flows on.
            if self.json.len() + chunk.len() <= MAX_LIST_RESPONSE_BYTES {
                self.json.extend_from_slice(chunk);
            }
            if end_of_stream {
                if let Some(id) = self.task_request_id.as_deref() {
                    let text = String::from_utf8_lossy(&self.json);
                    found.created_tasks.extend(grantwall_core::sidechannel::created_task_id(&text, id));
                }
            }
            return None;
        }
        self.splitter.push(chunk);
        let mut out = Vec::with_capacity(chunk.len());
        while let Some(raw) = self.splitter.next_event() {
            if self.broken {
                continue;
            }
            self.on_event(&raw, &mut out, allowed_hosts, found);
        }
        if self.splitter.pending() > MAX_LIST_RESPONSE_BYTES {
            let _ = self.splitter.take_rest();
            self.broken = true;
            found.unreadable = Some("an SSE event larger than the limit".into());
        }
        if end_of_stream {
            // An unterminated last event: judged like any other, then forwarded as it was.
            let rest = self.splitter.take_rest();
            if !rest.is_empty() && !self.broken {
                self.on_event(&rest, &mut out, allowed_hosts, found);
            }
        }
        Some(out)
    }

    fn on_event(&mut self, raw: &[u8], out: &mut Vec<u8>, allowed_hosts: &[String], found: &mut StreamFindings) {
        use grantwall_core::sidechannel;
        let Ok(event) = sse::parse_event(raw) else {
            self.broken = true;
            found.unreadable = Some("an SSE event is not UTF-8".into());
            return;
        };
        let Some(data) = event.data.as_deref() else {
            out.extend_from_slice(raw);
            return;
        };
        if let Some(id) = self.task_request_id.as_deref() {
            found.created_tasks.extend(sidechannel::created_task_id(data, id));
        }
        if sidechannel::may_be_elicitation(data) {
            match sidechannel::elicitation_url(data) {
                Ok(None) => {}
                Ok(Some(url)) if sidechannel::url_host_allowed(&url, allowed_hosts) => {}
                Ok(Some(url)) => {
                    found.refused_urls.push(url);
                    return;
                }
                Err(e) => {
                    // Cannot tell whether it is an elicitation: drop it (fail closed).
                    found.unreadable = Some(format!("an SSE event Grantwall cannot read: {e}"));
                    return;
                }
            }
        }
        out.extend_from_slice(raw);
    }
}
