pub mod bench;
pub mod model;
pub mod serve;
