//! llama.cpp's own `llama-bench`, built from the very llama.cpp source our engine links
//! (the vendored copy inside the `llama-cpp-sys-2` crate) with the same CPU flags, so the
//! comparison is kernel for kernel.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};
use serde::Deserialize;

/// The vendored llama.cpp directory, found through `cargo metadata`.
fn llama_cpp_source() -> anyhow::Result<(PathBuf, String)> {
    let out = Command::new("cargo")
        .args(["metadata", "--format-version", "1", "--locked"])
        .output()
        .context("running cargo metadata (strata bench runs from the source tree)")?;
    if !out.status.success() {
        bail!("cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let pkg = meta["packages"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "llama-cpp-sys-2"))
        .context("llama-cpp-sys-2 is not in the dependency graph")?;
    let manifest = PathBuf::from(pkg["manifest_path"].as_str().unwrap_or_default());
    let version = pkg["version"].as_str().unwrap_or("unknown").to_owned();
    let dir = manifest.parent().context("manifest has no parent")?.join("llama.cpp");
    if !dir.join("CMakeLists.txt").is_file() {
        bail!("no llama.cpp source at {}", dir.display());
    }
    Ok((dir, version))
}

/// Builds llama-bench once per llama.cpp version under `cache`; returns its path.
pub fn build(cache: &Path) -> anyhow::Result<(PathBuf, String)> {
    let (src, version) = llama_cpp_source()?;
    let build = cache.join(format!("llama-bench-{version}"));
    let bin = build.join("bin").join("llama-bench");
    if bin.is_file() {
        return Ok((bin, version));
    }
    // Match the flags llama-cpp-sys-2 uses for our `target-cpu=x86-64-v3` build.
    let mut configure = Command::new("cmake");
    configure.arg("-S").arg(&src).arg("-B").arg(&build).args([
        "-DCMAKE_BUILD_TYPE=Release",
        "-DLLAMA_CURL=OFF",
        "-DLLAMA_BUILD_TESTS=OFF",
        "-DLLAMA_BUILD_EXAMPLES=OFF",
        "-DLLAMA_BUILD_SERVER=OFF",
        "-DLLAMA_BUILD_TOOLS=ON",
        "-DBUILD_SHARED_LIBS=OFF",
        "-DGGML_NATIVE=OFF",
    ]);
    if cfg!(target_arch = "x86_64") {
        configure.args([
            "-DGGML_AVX=ON",
            "-DGGML_AVX2=ON",
            "-DGGML_FMA=ON",
            "-DGGML_F16C=ON",
            "-DGGML_BMI2=ON",
            "-DCMAKE_C_FLAGS=-march=x86-64-v3",
            "-DCMAKE_CXX_FLAGS=-march=x86-64-v3",
        ]);
    }
    run(&mut configure)?;
    let jobs = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).to_string();
    run(Command::new("cmake").arg("--build").arg(&build).args(["--target", "llama-bench", "-j", &jobs]))?;
    if !bin.is_file() {
        bail!("llama-bench was not produced at {}", bin.display());
    }
    Ok((bin, version))
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!("{cmd:?} failed: {}", err.lines().rev().take(15).collect::<Vec<_>>().join("\n"));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
struct Entry {
    n_prompt: u32,
    n_gen: u32,
    avg_ts: f64,
}

/// Prompt and generation tok/s as llama-bench measures them.
#[derive(Debug, Clone, Copy)]
pub struct Rates {
    pub prompt: f64,
    pub generation: f64,
}

pub fn measure(bin: &Path, model: &Path, prompt: u32, gen: u32, threads: usize, reps: u32) -> anyhow::Result<Rates> {
    let out = Command::new(bin)
        .arg("-m")
        .arg(model)
        .args(["-p", &prompt.to_string(), "-n", &gen.to_string(), "-t", &threads.to_string(), "-r", &reps.to_string(), "-o", "json"])
        .output()
        .context("running llama-bench")?;
    if !out.status.success() {
        bail!("llama-bench failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let entries: Vec<Entry> = serde_json::from_slice(&out.stdout).context("parsing llama-bench JSON")?;
    let pick = |f: &dyn Fn(&Entry) -> bool| entries.iter().find(|e| f(e)).map(|e| e.avg_ts);
    Ok(Rates {
        prompt: pick(&|e| e.n_prompt > 0 && e.n_gen == 0).context("no prompt result")?,
        generation: pick(&|e| e.n_gen > 0 && e.n_prompt == 0).context("no generation result")?,
    })
}
