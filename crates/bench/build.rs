//! Records the CPU the build was compiled for (`-C target-cpu=...`): llama.cpp picks its kernels
//! from it, so the engine's figures depend on it, and the report says which it was.

fn main() {
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    // rustc takes the last of several.
    let cpu = flags.split('\x1f').filter_map(|f| f.split("target-cpu=").nth(1)).next_back().unwrap_or("default");
    println!("cargo:rustc-env=STRATA_BUILT_FOR_CPU={cpu}");
}
