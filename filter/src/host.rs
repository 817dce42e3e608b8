//! Host calls that never panic.
//!
//! The proxy-wasm SDK's wrappers `panic!` on any status they did not expect, and a panic traps the VM for the
//! whole worker. These wrappers call the same ABI functions but take the status as a plain number and turn
//! every unexpected one into an error, so the filter can refuse the request instead of dying.

use std::ptr::{null, null_mut};

const STATUS_OK: u32 = 0;
const STATUS_NOT_FOUND: u32 = 1;
const STATUS_CAS_MISMATCH: u32 = 8;
/// Not a host status: our own "gave up after repeated CAS conflicts".
pub const STATUS_CAS_RETRIES: u32 = 0xffff;

/// Proxy-Wasm map and buffer type numbers (ABI 0.2.1).
const MAP_HTTP_REQUEST_HEADERS: u32 = 0;
const MAP_HTTP_RESPONSE_HEADERS: u32 = 2;
const BUFFER_HTTP_REQUEST_BODY: u32 = 0;
const BUFFER_HTTP_RESPONSE_BODY: u32 = 1;
const BUFFER_HTTP_CALL_RESPONSE_BODY: u32 = 4;
const BUFFER_GRPC_RECEIVE: u32 = 5;
const MAP_HTTP_CALL_RESPONSE_HEADERS: u32 = 6;
const STREAM_HTTP_REQUEST: u32 = 0;
const METRIC_COUNTER: u32 = 0;

/// A host call returned a status we cannot act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError(pub u32);

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(map_type: u32, return_map_data: *mut *mut u8, return_map_size: *mut usize) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_set_property(path_data: *const u8, path_size: usize, value_data: *const u8, value_size: usize) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_replace_header_map_value(map_type: u32, key_data: *const u8, key_size: usize, value_data: *const u8, value_size: usize) -> u32;
    fn proxy_add_header_map_value(map_type: u32, key_data: *const u8, key_size: usize, value_data: *const u8, value_size: usize) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_set_buffer_bytes(buffer_type: u32, start: usize, size: usize, buffer_data: *const u8, buffer_size: usize) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(key_data: *const u8, key_size: usize, value_data: *const u8, value_size: usize, cas: u32) -> u32;
    fn proxy_define_metric(metric_type: u32, name_data: *const u8, name_size: usize, return_id: *mut u32) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
}

/// Take ownership of a buffer the host allocated through the SDK's exported allocator.
///
/// # Safety
/// `data` must be null or a buffer of `size` bytes allocated by `proxy_on_memory_allocate`.
unsafe fn take_host_buffer(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        Vec::new()
    } else {
        Vec::from_raw_parts(data, size, size)
    }
}

/// Status for a pairs buffer that does not decode (the host broke the ABI's encoding).
const MALFORMED: u32 = u32::MAX;

/// The request headers, fetched in one host call: every single-header lookup is a crossing into the host
/// and an allocation callback back into the VM, and the filter reads about a dozen headers per request.
pub struct HeaderMap {
    raw: Vec<u8>,
    /// (name, value) byte ranges into `raw`, in the host's order.
    entries: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>,
}

impl HeaderMap {
    /// The first value of header `name` — what Envoy's single-header lookup returns. Case-insensitive like
    /// that lookup (Envoy hands header names over in lower case; configured names may not be).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|(k, _)| self.is_named(k, name))
            .and_then(|(_, v)| self.raw.get(v.clone()))
    }

    /// How many times header `name` appears.
    pub fn count(&self, name: &str) -> usize {
        self.entries.iter().filter(|(k, _)| self.is_named(k, name)).count()
    }

    /// Every (name, value), in the host's order.
    pub fn pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries.iter().filter_map(|(k, v)| Some((self.raw.get(k.clone())?, self.raw.get(v.clone())?)))
    }

    fn is_named(&self, key: &std::ops::Range<usize>, name: &str) -> bool {
        self.raw.get(key.clone()).is_some_and(|k| k.eq_ignore_ascii_case(name.as_bytes()))
    }
}

/// All request headers (pseudo-headers included), one host call.
pub fn request_headers() -> Result<HeaderMap, HostError> {
    header_map(MAP_HTTP_REQUEST_HEADERS)
}

/// The headers of the answer to our own HTTP call-out (ext_authz), one host call.
pub fn http_call_response_headers() -> Result<HeaderMap, HostError> {
    header_map(MAP_HTTP_CALL_RESPONSE_HEADERS)
}

fn header_map(map_type: u32) -> Result<HeaderMap, HostError> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: pointers are valid for the call; the host fills data/size from its allocator.
    let status = unsafe { proxy_get_header_map_pairs(map_type, &mut data, &mut size) };
    match status {
        // SAFETY: on OK the host hands us a buffer from our allocator.
        STATUS_OK => decode_pairs(unsafe { take_host_buffer(data, size) }).ok_or(HostError(MALFORMED)),
        STATUS_NOT_FOUND => Ok(HeaderMap { raw: Vec::new(), entries: Vec::new() }),
        other => Err(HostError(other)),
    }
}

/// Proxy-Wasm pairs encoding: count, then (name len, value len) per pair, then each name and value NUL-terminated.
fn decode_pairs(raw: Vec<u8>) -> Option<HeaderMap> {
    if raw.is_empty() {
        return Some(HeaderMap { raw, entries: Vec::new() });
    }
    let word = |at: usize| -> Option<usize> {
        let bytes: [u8; 4] = raw.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(bytes)).ok()
    };
    let count = word(0)?;
    let mut entries = Vec::with_capacity(count.min(raw.len() / 8));
    let mut at = count.checked_mul(8)?.checked_add(4)?;
    for i in 0..count {
        let (klen, vlen) = (word(4 + i * 8)?, word(8 + i * 8)?);
        let key = at..at.checked_add(klen)?;
        let value = key.end.checked_add(1)?..key.end.checked_add(1)?.checked_add(vlen)?;
        at = value.end.checked_add(1)?;
        if at > raw.len() {
            return None;
        }
        entries.push((key, value));
    }
    Some(HeaderMap { raw, entries })
}

/// One response header's raw bytes, or None when absent.
pub fn response_header(name: &str) -> Result<Option<Vec<u8>>, HostError> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: as request_headers.
    let status = unsafe { proxy_get_header_map_value(MAP_HTTP_RESPONSE_HEADERS, name.as_ptr(), name.len(), &mut data, &mut size) };
    match status {
        // SAFETY: as request_headers.
        STATUS_OK => Ok(Some(unsafe { take_host_buffer(data, size) })),
        STATUS_NOT_FOUND => Ok(None),
        other => Err(HostError(other)),
    }
}

/// Set (replace or add) a response header.
pub fn set_response_header(name: &str, value: &str) -> Result<(), HostError> {
    // SAFETY: buffers live for the call.
    let rc = unsafe {
        proxy_replace_header_map_value(MAP_HTTP_RESPONSE_HEADERS, name.as_ptr(), name.len(), value.as_ptr(), value.len())
    };
    ok(rc)
}

/// Set (replace or add) a request header; before the filter continues, later filters see it.
pub fn set_request_header(name: &str, value: &str) -> Result<(), HostError> {
    // SAFETY: buffers live for the call.
    let rc = unsafe {
        proxy_replace_header_map_value(MAP_HTTP_REQUEST_HEADERS, name.as_ptr(), name.len(), value.as_ptr(), value.len())
    };
    ok(rc)
}

/// Add a request header value (keeping any already there).
pub fn add_request_header(name: &str, value: &str) -> Result<(), HostError> {
    // SAFETY: buffers live for the call.
    let rc = unsafe { proxy_add_header_map_value(MAP_HTTP_REQUEST_HEADERS, name.as_ptr(), name.len(), value.as_ptr(), value.len()) };
    ok(rc)
}

/// Let a request held in an earlier callback continue (from the answer to a call-out).
pub fn continue_request() -> Result<(), HostError> {
    // SAFETY: plain value.
    ok(unsafe { proxy_continue_stream(STREAM_HTTP_REQUEST) })
}

/// Remove a response header (absent is fine).
pub fn remove_response_header(name: &str) -> Result<(), HostError> {
    // SAFETY: buffer lives for the call.
    let rc = unsafe { proxy_remove_header_map_value(MAP_HTTP_RESPONSE_HEADERS, name.as_ptr(), name.len()) };
    if rc == STATUS_NOT_FOUND {
        return Ok(());
    }
    ok(rc)
}

/// The response body bytes the current callback may see (the chunk, or everything buffered so far).
pub fn response_body(size: usize) -> Result<Vec<u8>, HostError> {
    let (mut data, mut len) = (null_mut(), 0usize);
    // SAFETY: as request_headers.
    let status = unsafe { proxy_get_buffer_bytes(BUFFER_HTTP_RESPONSE_BODY, 0, size, &mut data, &mut len) };
    match status {
        // SAFETY: as request_headers.
        STATUS_OK => Ok(unsafe { take_host_buffer(data, len) }),
        STATUS_NOT_FOUND => Ok(Vec::new()),
        other => Err(HostError(other)),
    }
}

/// Replace the first `size` bytes of the response body (the current chunk) with `bytes`.
pub fn set_response_body(size: usize, bytes: &[u8]) -> Result<(), HostError> {
    // SAFETY: buffer lives for the call.
    let rc = unsafe { proxy_set_buffer_bytes(BUFFER_HTTP_RESPONSE_BODY, 0, size, bytes.as_ptr(), bytes.len()) };
    ok(rc)
}

/// Replace the first `size` bytes of the buffered request body (the whole body, once it is complete).
pub fn set_request_body(size: usize, bytes: &[u8]) -> Result<(), HostError> {
    // SAFETY: buffer lives for the call.
    let rc = unsafe { proxy_set_buffer_bytes(BUFFER_HTTP_REQUEST_BODY, 0, size, bytes.as_ptr(), bytes.len()) };
    ok(rc)
}

/// A shared-data entry (shared by all workers of this VM) and its CAS token, or None when absent.
pub fn shared_data(key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
    let (mut data, mut size, mut cas) = (null_mut(), 0usize, 0u32);
    // SAFETY: as request_headers.
    let status = unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    match status {
        // SAFETY: as request_headers.
        STATUS_OK => Ok(Some((unsafe { take_host_buffer(data, size) }, cas))),
        STATUS_NOT_FOUND => Ok(None),
        other => Err(HostError(other)),
    }
}

/// Outcome of a compare-and-swap write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CasWrite {
    Written,
    /// Another worker wrote first: re-read and decide again.
    Conflict,
}

/// Write a shared-data entry if its CAS token is still `cas` (0: unconditionally).
pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> Result<CasWrite, HostError> {
    // SAFETY: buffers live for the call.
    let rc = unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) };
    match rc {
        STATUS_OK => Ok(CasWrite::Written),
        STATUS_CAS_MISMATCH => Ok(CasWrite::Conflict),
        other => Err(HostError(other)),
    }
}

/// Wall-clock time in whole seconds since the Unix epoch.
pub fn now_secs() -> Result<u64, HostError> {
    current_time_nanos().map(|n| n / 1_000_000_000)
}

fn ok(rc: u32) -> Result<(), HostError> {
    if rc == STATUS_OK {
        Ok(())
    } else {
        Err(HostError(rc))
    }
}

/// Remove a request header (the bearer token, before the upstream sees it).
pub fn remove_request_header(name: &str) -> Result<(), HostError> {
    // SAFETY: the name buffer lives for the call.
    let status = unsafe { proxy_remove_header_map_value(MAP_HTTP_REQUEST_HEADERS, name.as_ptr(), name.len()) };
    if status == STATUS_OK || status == STATUS_NOT_FOUND {
        Ok(())
    } else {
        Err(HostError(status))
    }
}

/// A host property (e.g. `connection.uri_san_peer_certificate`), or None when the host does not have it.
pub fn property(path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
    let encoded = encode_path(path);
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: as above.
    let status = unsafe { proxy_get_property(encoded.as_ptr(), encoded.len(), &mut data, &mut size) };
    match status {
        // SAFETY: as above.
        STATUS_OK => Ok(Some(unsafe { take_host_buffer(data, size) })).map(|v| v.filter(|b| !b.is_empty())),
        STATUS_NOT_FOUND => Ok(None),
        other => Err(HostError(other)),
    }
}

/// Write a property; in Envoy, `[name]` becomes filter state `wasm.<name>` readable by access logs.
pub fn set_property(path: &[&str], value: &[u8]) -> Result<(), HostError> {
    let encoded = encode_path(path);
    // SAFETY: both buffers live for the call.
    let status = unsafe { proxy_set_property(encoded.as_ptr(), encoded.len(), value.as_ptr(), value.len()) };
    if status == STATUS_OK {
        Ok(())
    } else {
        Err(HostError(status))
    }
}

/// The buffered request body (the first `size` bytes).
pub fn request_body(size: usize) -> Result<Option<Vec<u8>>, HostError> {
    buffer_bytes(BUFFER_HTTP_REQUEST_BODY, size)
}

/// The body of the answer to our own HTTP call-out (the first `size` bytes).
pub fn http_call_response_body(size: usize) -> Result<Option<Vec<u8>>, HostError> {
    buffer_bytes(BUFFER_HTTP_CALL_RESPONSE_BODY, size)
}

/// The message of the answer to our own gRPC call-out (the first `size` bytes).
pub fn grpc_receive_buffer(size: usize) -> Result<Option<Vec<u8>>, HostError> {
    buffer_bytes(BUFFER_GRPC_RECEIVE, size)
}

fn buffer_bytes(kind: u32, size: usize) -> Result<Option<Vec<u8>>, HostError> {
    let (mut data, mut len) = (null_mut(), 0usize);
    // SAFETY: as above.
    let status = unsafe { proxy_get_buffer_bytes(kind, 0, size, &mut data, &mut len) };
    match status {
        // SAFETY: as above.
        STATUS_OK if !data.is_null() => Ok(Some(unsafe { take_host_buffer(data, len) })),
        STATUS_OK | STATUS_NOT_FOUND => Ok(None),
        other => Err(HostError(other)),
    }
}

/// Answer the request locally; the upstream never sees it.
pub fn send_response(status: u32, headers: &[(&str, &str)], body: &[u8]) -> Result<(), HostError> {
    let encoded = encode_map(headers);
    let details = b"grantwall";
    // SAFETY: all buffers live for the call.
    let rc = unsafe {
        proxy_send_local_response(
            status,
            details.as_ptr(),
            details.len(),
            if body.is_empty() { null() } else { body.as_ptr() },
            body.len(),
            encoded.as_ptr(),
            encoded.len(),
            -1,
        )
    };
    if rc == STATUS_OK {
        Ok(())
    } else {
        Err(HostError(rc))
    }
}

/// The host's wall clock, nanoseconds since the Unix epoch (CEL `request.time`).
pub fn current_time_nanos() -> Result<u64, HostError> {
    let mut nanos = 0u64;
    // SAFETY: a plain out-parameter that lives for the call.
    let status = unsafe { proxy_get_current_time_nanoseconds(&mut nanos) };
    if status == STATUS_OK {
        Ok(nanos)
    } else {
        Err(HostError(status))
    }
}

pub fn define_counter(name: &str) -> Result<u32, HostError> {
    let mut id = 0u32;
    // SAFETY: as above.
    let rc = unsafe { proxy_define_metric(METRIC_COUNTER, name.as_ptr(), name.len(), &mut id) };
    if rc == STATUS_OK {
        Ok(id)
    } else {
        Err(HostError(rc))
    }
}

pub fn increment(metric: u32) {
    // SAFETY: plain values. A failed increment loses one count; nothing to do about it here.
    let _ = unsafe { proxy_increment_metric(metric, 1) };
}

/// Add `n` to a counter (token counts).
pub fn add(metric: u32, n: u64) {
    // SAFETY: plain values. A failed increment loses the count; nothing to do about it here.
    let _ = unsafe { proxy_increment_metric(metric, i64::try_from(n).unwrap_or(i64::MAX)) };
}

/// Property paths are NUL-separated segments.
fn encode_path(path: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.iter().map(|p| p.len() + 1).sum());
    for (i, segment) in path.iter().enumerate() {
        if i > 0 {
            out.push(0);
        }
        out.extend_from_slice(segment.as_bytes());
    }
    out
}

/// Proxy-Wasm header map encoding: count, then (key len, value len) pairs, then NUL-terminated keys/values.
fn encode_map(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}
