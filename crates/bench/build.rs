//! Records the CPU the build was compiled for: llama.cpp picks its kernels from it, so the
//! engine's figures depend on it, and the report says which it was. rustc obeys the last
//! `-C target-cpu`; llama-cpp-sys-2's build script reads the first (scripts/setup.sh's
//! `strata_cargo` gives two: llama.cpp for this machine, strata's code for the baseline).

fn main() {
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let cpus: Vec<&str> =
        flags.split('\x1f').filter_map(|f| f.split("target-cpu=").nth(1)).collect();
    let (llama, strata) =
        (cpus.first().copied().unwrap_or("default"), cpus.last().copied().unwrap_or("default"));
    let built_for = if llama == strata {
        format!("`-C target-cpu={strata}`")
    } else {
        format!("`-C target-cpu={strata}`, llama.cpp for `{llama}`")
    };
    println!("cargo:rustc-env=STRATA_BUILT_FOR_CPU={built_for}");
}
