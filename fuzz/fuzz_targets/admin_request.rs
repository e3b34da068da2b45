//! The admin socket's NDJSON decoding (admin::protocol): a request line as the
//! server reads it, and a frame line as the client reads it. Properties: no
//! panic; whatever decodes encodes to JSON that decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use listrelay::admin::protocol::{Frame, Request};

fuzz_target!(|line: &[u8]| {
    if let Ok(request) = serde_json::from_slice::<Request>(line) {
        let wire = serde_json::to_vec(&request).expect("a request encodes");
        let back: Request = serde_json::from_slice(&wire).expect("an encoded request decodes");
        assert_eq!(back, request);
    }
    if let Ok(frame) = serde_json::from_slice::<Frame>(line) {
        let wire = serde_json::to_vec(&frame).expect("a frame encodes");
        let back: Frame = serde_json::from_slice(&wire).expect("an encoded frame decodes");
        assert_eq!(back, frame);
    }
});
