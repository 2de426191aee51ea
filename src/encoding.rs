//! Byte encodings shared by both modes: Base64 (RFC 4648 §4: Basic and `client_secret_basic`
//! credentials, `=?base64?…?=` header values), unpadded Base64url (RFC 4648 §5, for JWTs,
//! RFC 7515 §2), `application/x-www-form-urlencoded` (token requests) and hex.
//! Pure functions; no IO. Written here rather than pulled in as crates: each is a dozen lines.

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Standard Base64 with padding.
pub fn base64(input: &[u8]) -> String {
    encode(input, BASE64, true)
}

/// Base64url without padding, as JWTs use it.
pub fn base64url(input: &[u8]) -> String {
    encode(input, BASE64URL, false)
}

fn encode(input: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(alphabet[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard Base64 (RFC 4648) strictly: the alphabet, padded to a multiple of four.
/// `None` for anything else (header values must not be read leniently: what a lenient
/// decoder accepts, a strict peer may read differently).
pub fn base64_decode(input: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let trimmed = input.trim_end_matches('=');
    if !input.len().is_multiple_of(4) || input.len() - trimmed.len() > 2 {
        return None;
    }
    let mut out = Vec::with_capacity(trimmed.len() * 3 / 4);
    for chunk in trimmed.as_bytes().chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        // A short last group's unused low bits must be zero (RFC 4648 3.5): otherwise two
        // texts would decode to the same bytes. Found by `scripts/fuzz` (base64_decode).
        let kept_bytes = chunk.len() - 1;
        if kept_bytes < 3 && n & ((1 << (24 - 8 * kept_bytes)) - 1) != 0 {
            return None;
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

/// Percent-encodes everything but RFC 3986 unreserved characters (so also valid in a form body,
/// where the OAuth spec wants `client_id`/`client_secret` encoded this way before Basic auth).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A form body from key/value pairs.
pub fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_rfc4648_vectors_both_ways() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
            ("cid:csec", "Y2lkOmNzZWM="),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
            assert_eq!(
                base64_decode(encoded).as_deref(),
                Some(plain.as_bytes()),
                "{encoded}"
            );
        }
    }

    #[test]
    fn base64_decode_is_strict() {
        assert_eq!(base64_decode("Zm9vYg"), None, "padding is required");
        assert_eq!(base64_decode("SGVs!!!bG8="), None);
        assert_eq!(base64_decode("Zm9v!"), None);
        assert_eq!(base64_decode("Z"), None);
        assert_eq!(base64_decode("Zg==="), None);
        // Non-zero unused bits in the last group (found by scripts/fuzz).
        assert_eq!(base64_decode("9gYmvZ=="), None);
        assert_eq!(base64_decode("Zh=="), None);
        assert_eq!(base64_decode("Zm9="), None);
        assert_eq!(base64_decode("Zm8=").unwrap(), b"fo");
        assert_eq!(base64_decode("9gYmvQ==").unwrap(), [0xf6, 0x06, 0x26, 0xbd]);
    }

    #[test]
    fn base64url_has_no_padding_and_the_url_safe_alphabet() {
        let cases: [(&[u8], &str); 6] = [
            (b"", ""),
            (b"f", "Zg"),
            (b"fo", "Zm8"),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg"),
            // 0xfb 0xff 0xbf: `+/+/` in standard Base64.
            (&[0xfb, 0xff, 0xbf, 0xfb, 0xff, 0xbf], "-_-_-_-_"),
        ];
        for (input, expected) in cases {
            assert_eq!(base64url(input), expected, "{input:?}");
        }
        // RFC 7515 appendix A.1: the JOSE header {"typ":"JWT",\r\n "alg":"HS256"}.
        assert_eq!(
            base64url(b"{\"typ\":\"JWT\",\r\n \"alg\":\"HS256\"}"),
            "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
        );
    }

    #[test]
    fn form_encoding() {
        assert_eq!(
            form(&[
                ("grant_type", "client_credentials"),
                ("resource", "http://h:1/mcp?a=b c")
            ]),
            "grant_type=client_credentials&resource=http%3A%2F%2Fh%3A1%2Fmcp%3Fa%3Db%20c"
        );
    }
}
