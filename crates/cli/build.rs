//! Link `strata` with packed relative relocations (DT_RELR) where the C library can load them.
//! A position-independent executable this size carries about 1.1 MB of relative relocations
//! that the loader reads at every start, and those pages stay resident in every hop; packed,
//! they take a few kilobytes. glibc loads DT_RELR from 2.36 and GNU ld writes it from 2.38, so
//! older systems (Ubuntu 22.04) keep the ordinary relocations.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let (host, target) =
        (std::env::var("HOST").unwrap_or_default(), std::env::var("TARGET").unwrap_or_default());
    if host != target || !target.ends_with("-linux-gnu") {
        return;
    }
    if glibc_version().is_some_and(|v| v >= (2, 36)) && linker_packs_relocations() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// The C library's version, from `getconf GNU_LIBC_VERSION` ("glibc 2.36").
fn glibc_version() -> Option<(u32, u32)> {
    let out = Command::new("getconf").arg("GNU_LIBC_VERSION").output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let (major, minor) = text.trim().strip_prefix("glibc ")?.split_once('.')?;
    Some((major.parse().ok()?, minor.split('.').next()?.parse().ok()?))
}

/// Whether the system linker knows the option (GNU ld 2.38, lld 15 and later).
fn linker_packs_relocations() -> bool {
    Command::new("ld")
        .arg("--help")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("pack-relative-relocs"))
        .unwrap_or(false)
}
