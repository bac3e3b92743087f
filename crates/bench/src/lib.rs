//! `strata bench`: every figure measured in one run on this machine, next to the reference it
//! is compared with, and written as Markdown plus machine-readable JSON.

mod bandwidth;
mod chain;
mod lambda_path;
mod machine;
mod memory;
mod procs;
mod report;
mod server;
mod soak;
mod suites;

pub use report::{Report, Row, Section};
pub use soak::{Generator, SoakOptions};
pub use suites::{run, BenchOptions, Suite};
