//! Chunked delivery: the filter buffers the whole body and decides once, so the decision must not depend
//! on where the transport cut it. The first 8 bytes seed the cut points; the rest is the body. The chunks
//! go through the same steps as the filter's body callback (size limit on what is buffered so far, no
//! decision before end of stream), then the decision (parse + engine, fixed policy) is compared with the
//! one on the body in one piece. This is a model of the filter; the end-to-end proof with real HTTP/1.1
//! chunks and HTTP/2 DATA frames through Envoy is tests/e2e/test_chunking.py.
#![no_main]

use grantwall_fuzz::{cut, decide_body, engine};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (seed, body) = data.split_at(data.len().min(8));
    let seed = seed.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b));
    let engine = engine();
    let whole = decide_body(engine, body);
    let limit = engine.settings().max_body_bytes as usize;
    let mut buffered = Vec::new();
    let mut refused = None;
    for chunk in cut(body, seed) {
        buffered.extend_from_slice(chunk);
        if buffered.len() > limit {
            refused = Some("refuse:body-too-large".to_owned());
            break;
        }
    }
    let chunked = refused.unwrap_or_else(|| decide_body(engine, &buffered));
    assert_eq!(chunked, whole);
});
