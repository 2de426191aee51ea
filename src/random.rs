//! Unpredictable numbers from the kernel (getrandom(2)), for session ids.
//! Works in an empty root: no /dev/urandom needed.

/// 128 random bits.
pub fn u128() -> u128 {
    let mut buf = [0u8; 16];
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `buf`, which we own.
        let n =
            unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n > 0 {
            filled += n as usize;
        } else if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            // getrandom(2) only fails before the kernel's pool is seeded (early boot) or on
            // kernels older than 3.17; no session id is better than a guessable one.
            panic!("getrandom failed: {}", std::io::Error::last_os_error());
        }
    }
    u128::from_ne_bytes(buf)
}
