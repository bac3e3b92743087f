//! The conversational agent behind `strata converse`.
//!
//! A seed question goes to the *answering side* (an Ollama API endpoint: `strata up`,
//! `strata serve` or a real Ollama); each answer goes to the *follow-up side*, which turns it
//! into the next question through a prompt template; repeat until a stop rule fires. Every
//! finished turn is written to the output file at once (atomically: temporary file, fsync,
//! rename, fsync of the directory), so a crash loses at most the turn in flight and `--resume`
//! continues where the file ends. SIGINT/SIGTERM end the run the same way, with the summary's
//! stop reason `interrupted`.

pub mod client;
pub mod compare;
pub mod conversation;
pub mod csv_cell;
pub mod interrupt;
pub mod output;
pub mod settings;
pub mod text;

pub use client::{ChatClient, ChatError, Message, Side};
pub use conversation::{run_conversation, run_many, Conversation, RunOptions};
pub use interrupt::{Interrupt, InterruptHandle};
pub use output::{Format, Record, StopReason, Summary, Turn};
pub use settings::{parse_duration, ConverseSettings, FollowUpServer, EMBEDDED};
