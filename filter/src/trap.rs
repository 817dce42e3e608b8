//! TEST-ONLY fault injection (cargo feature `trap-test`; never in the release build, see the Makefile's
//! `build-trap` and tests/e2e/test_trap.py). A request carrying `x-grantwall-test-trap: 1` (or `headers`)
//! panics in the headers callback, `body` panics once its whole body has been buffered. With
//! `panic = "abort"` the panic is a Wasm trap, which is how we prove what Envoy does when the VM dies:
//! the request must be refused, never forwarded.

use crate::host;

pub const HEADER: &str = "x-grantwall-test-trap";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Trap {
    #[default]
    Never,
    InBody,
}

/// Read the header at the headers phase: trap now, or remember to trap in the body callback.
pub fn at_headers() -> Trap {
    let headers = host::request_headers();
    // black_box keeps the name as data in the module: compared inline, the optimiser can fold it into
    // immediates, and tests/e2e/test_trap.py tells the trap build from the release build by this string.
    match headers.as_ref().ok().and_then(|h| h.get(std::hint::black_box(HEADER))) {
        Some(v) if v == b"1" || v == b"headers" => die("headers"),
        Some(v) if v == b"body" => Trap::InBody,
        _ => Trap::Never,
    }
}

pub fn at_body(trap: Trap) {
    if trap == Trap::InBody {
        die("body");
    }
}

#[allow(clippy::panic)]
fn die(phase: &str) -> ! {
    panic!("grantwall trap-test: deliberate trap in the {phase} callback");
}
