pub mod bedrock_emulator;
pub mod bench;
pub mod model;
pub mod serve;
