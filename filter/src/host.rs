//! Host calls that never panic.
//!
//! The proxy-wasm SDK's wrappers `panic!` on any status they did not expect, and a panic traps the VM for the
//! whole worker. These wrappers call the same ABI functions but take the status as a plain number and turn
//! every unexpected one into an error, so the filter can refuse the request instead of dying.

use std::ptr::{null, null_mut};

const STATUS_OK: u32 = 0;
const STATUS_NOT_FOUND: u32 = 1;

/// Proxy-Wasm map and buffer type numbers (ABI 0.2.1).
const MAP_HTTP_REQUEST_HEADERS: u32 = 0;
const BUFFER_HTTP_REQUEST_BODY: u32 = 0;
const METRIC_COUNTER: u32 = 0;

/// A host call returned a status we cannot act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError(pub u32);

#[link(wasm_import_module = "env")]
extern "C" {
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

/// One request header's raw bytes, or None when absent.
pub fn request_header(name: &str) -> Result<Option<Vec<u8>>, HostError> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: pointers are valid for the call; the host fills data/size from its allocator.
    let status = unsafe { proxy_get_header_map_value(MAP_HTTP_REQUEST_HEADERS, name.as_ptr(), name.len(), &mut data, &mut size) };
    match status {
        // SAFETY: on OK the host hands us a buffer from our allocator.
        STATUS_OK => Ok(Some(unsafe { take_host_buffer(data, size) })),
        STATUS_NOT_FOUND => Ok(None),
        other => Err(HostError(other)),
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
    let (mut data, mut len) = (null_mut(), 0usize);
    // SAFETY: as above.
    let status = unsafe { proxy_get_buffer_bytes(BUFFER_HTTP_REQUEST_BODY, 0, size, &mut data, &mut len) };
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
