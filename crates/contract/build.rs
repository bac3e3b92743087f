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
    // Fields added after the first release stay out of the JSON when unused, so the JSON of
    // a text-only request or chunk reads as it always did.
    for field in [
        "Delta.tool_use",
        "GenerateRequest.tool_choice",
        "GenerateRequest.response_schema_json",
        "GenerateRequest.parallel_tool_calls",
    ] {
        config.field_attribute(
            format!(".strata.contract.v1.{field}"),
            "#[serde(skip_serializing_if = \"Option::is_none\")]",
        );
    }
    for field in ["Message.blocks", "GenerateRequest.tools"] {
        config.field_attribute(
            format!(".strata.contract.v1.{field}"),
            "#[serde(skip_serializing_if = \"Vec::is_empty\")]",
        );
    }
    config.compile_fds(fds)?;
    Ok(())
}
