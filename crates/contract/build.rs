//! Compiles `proto/strata.proto` with protox (pure Rust), so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/strata.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["proto"])?;
    let mut config = prost_build::Config::new();
    // JSON mapping for curl users: camelCase field names, enums as their integer or as the
    // lower-case names handled in `json.rs`.
    config.type_attribute(".", "#[derive(serde::Serialize, serde::Deserialize)]");
    config.type_attribute(".", "#[serde(rename_all = \"camelCase\")]");
    config.message_attribute(".", "#[serde(default)]");
    config.compile_fds(fds)?;
    Ok(())
}
