//! `strata bench`: every figure measured in one run on this machine, next to the reference it
//! is compared with, and written as Markdown plus machine-readable JSON.

mod bandwidth;
mod chain;
mod chart;
mod embeddings;
mod lambda_path;
mod litellm;
mod loadgen;
mod machine;
mod memory;
mod overhead;
mod procs;
mod relay;
mod report;
mod responsiveness;
mod server;
mod soak;
mod structured;
mod suites;
mod usage;

pub use litellm::default_executable as default_litellm;
pub use overhead::{Answer as OverheadAnswer, OverheadPlan};
pub use report::{Report, Row, Section};
pub use soak::{Generator, SoakOptions};
pub use suites::{run, BenchOptions, Suite};
