//! Links the mcp-proxy binary with `link/cold-code.ld`, which groups the code server mode
//! never runs so that its pages are never mapped (see the script for why and how much).

fn main() {
    println!("cargo:rerun-if-changed=link/cold-code.ld");
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let format = std::env::var("CARGO_CFG_TARGET_OBJECT_FORMAT").unwrap_or_default();
    // ELF linkers only (lld, GNU ld); elsewhere the layout is left to the linker.
    if os != "linux" || (!format.is_empty() && format != "elf") {
        return;
    }
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bin=mcp-proxy=-Wl,-T,{dir}/link/cold-code.ld");
}
