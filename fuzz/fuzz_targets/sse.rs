//! SSE framing of server→client streams (list filtering, side channels, LLM usage): `sse::SseSplitter` and
//! `sse::parse_event`. The first 8 bytes seed the chunk boundaries; the rest is the stream.
//!
//! Oracles beyond "no panic": the events and the unterminated rest are the same whatever the chunking, they
//! add up to the input byte for byte (untouched events are forwarded exactly), and an event the filter
//! rewrites (`write_event`) reads back with the same data and id.
#![no_main]

use grantwall_core::sse::{parse_event, write_event, SseSplitter};
use grantwall_fuzz::cut;
use libfuzzer_sys::fuzz_target;

fn split(chunks: &[&[u8]]) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut s = SseSplitter::new();
    let mut events = Vec::new();
    for chunk in chunks {
        s.push(chunk);
        while let Some(e) = s.next_event() {
            events.push(e);
        }
    }
    (events, s.take_rest())
}

fuzz_target!(|data: &[u8]| {
    let (seed, stream) = data.split_at(data.len().min(8));
    let seed = seed.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b));
    let whole = split(&[stream]);
    let chunked = split(&cut(stream, seed));
    assert_eq!(chunked, whole, "events depend on chunk boundaries");
    let (events, rest) = whole;
    let joined: Vec<u8> = events.iter().flatten().chain(rest.iter()).copied().collect();
    assert_eq!(joined, stream, "events plus rest must be the stream, byte for byte");

    for raw in &events {
        let Ok(event) = parse_event(raw) else { continue };
        let Some(data) = event.data.as_deref() else { continue };
        if data.contains(['\n', '\r']) || event.id.as_deref().is_some_and(|id| id.contains(['\n', '\r'])) {
            continue; // the filter only rewrites single-line JSON messages
        }
        let mut out = Vec::new();
        write_event(&mut out, event.id.as_deref(), data.as_bytes());
        let again = parse_event(&out).expect("a written event is UTF-8");
        assert_eq!(again.data.as_deref(), Some(data));
        assert_eq!(again.id, event.id);
        let (reframed, rest) = split(&[&out]);
        assert_eq!((reframed.len(), rest.len()), (1, 0), "a written event is exactly one complete event");
    }
});
