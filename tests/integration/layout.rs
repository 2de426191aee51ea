//! The binary's layout: build.rs links it with link/cold-code.ld, which keeps the code server
//! mode never runs out of the pages it maps. Nothing fails if the script is dropped, except
//! idle memory; this notices.

use super::support::PROXY;

/// Names and sizes of an ELF64 little-endian file's sections.
fn sections(elf: &[u8]) -> Vec<(String, u64)> {
    let u16_at = |at: usize| u16::from_le_bytes(elf[at..at + 2].try_into().unwrap()) as usize;
    let u32_at = |at: usize| u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) as usize;
    let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap());
    assert_eq!(&elf[..6], b"\x7fELF\x02\x01", "an ELF64 little-endian file");
    let (table, entry, count, names) = (
        u64_at(0x28) as usize,
        u16_at(0x3a),
        u16_at(0x3c),
        u16_at(0x3e),
    );
    let header = |i: usize| table + i * entry;
    let strings = u64_at(header(names) + 0x18) as usize;
    (0..count)
        .map(|i| {
            let start = strings + u32_at(header(i));
            let len = elf[start..].iter().position(|b| *b == 0).unwrap();
            let name = String::from_utf8_lossy(&elf[start..start + len]).into_owned();
            (name, u64_at(header(i) + 0x20))
        })
        .collect()
}

#[test]
fn client_only_code_is_linked_apart() {
    let elf = std::fs::read(PROXY).unwrap();
    let sections = sections(&elf);
    let size = |name: &str| sections.iter().find(|(n, _)| n == name).map(|(_, s)| *s);
    let cold = size(".text.cold").expect("no .text.cold: build.rs did not link link/cold-code.ld");
    let hot = size(".text").expect(".text");
    // TLS, crypto and the HTTP client are a large share of the program (about a third in a
    // release build); a pattern that stopped matching would shrink this to nothing.
    assert!(cold * 5 > hot, ".text.cold {cold} bytes, .text {hot}");
}
