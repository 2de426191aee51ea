//! Fuzz target: strict Base64 decoding (src/encoding.rs).
//!
//! Input: any bytes. Checks:
//! 1. `base64_decode` never panics on any UTF-8 text.
//! 2. What it accepts re-encodes to the input: one spelling per byte string (this found
//!    `9gYmvZ==` decoding as `9gYmvQ==` does; non-zero pad bits are now refused).
//! 3. Decoding what `base64` encodes gives back the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../src/encoding.rs"]
mod encoding;

fuzz_target!(|input: &[u8]| {
    if let Ok(text) = std::str::from_utf8(input)
        && let Some(bytes) = encoding::base64_decode(text)
    {
        let again = encoding::base64(&bytes);
        assert_eq!(again, text, "a second spelling was accepted");
    }
    assert_eq!(
        encoding::base64_decode(&encoding::base64(input)).as_deref(),
        Some(input),
        "round trip"
    );
});
