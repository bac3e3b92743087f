pub mod bedrock_emulator;
pub mod bench;
pub mod gateway;
pub mod lambda_service;
pub mod main_service;
pub mod model;
pub mod serve;
pub mod up;
