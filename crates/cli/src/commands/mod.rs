pub mod bedrock_emulator;
pub mod bench;
pub mod gateway;
pub mod model;
pub mod serve;
