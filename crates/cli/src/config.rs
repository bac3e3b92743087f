//! The one configuration file. Every section has defaults, a TOML file overrides them, and
//! `STRATA_<SECTION>__<KEY>` environment variables override the file; flags override both.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Logging for every strata process.
    pub log: telemetry::LogSettings,
    /// The threads every hop serves on.
    pub runtime: crate::runtime::RuntimeSettings,
    /// The LLM Server (`strata serve`).
    pub server: llm_server::ServerSettings,
    /// Amazon Bedrock, for the LLM Server's `bedrock` backend.
    pub bedrock: bedrock::BedrockSettings,
    /// The Bedrock Runtime emulator (`strata bedrock-emulator`).
    pub bedrock_emulator: bedrock_emulator::EmulatorSettings,
    /// The local Lambda service (`strata lambda-service`).
    pub lambda_service: lambda_service::LambdaServiceSettings,
    /// The API Gateway stand-in (`strata gateway`).
    pub gateway: gateway::GatewaySettings,
    /// The MainService (`strata main-service`).
    pub main_service: main_service::MainServiceSettings,
    /// Embedded inference (llama.cpp) settings.
    pub engine: engine::EngineConfig,
    /// Where models come from and are cached.
    pub models: engine::ResolverConfig,
    /// The conversational agent (`strata converse`).
    pub converse: agent::ConverseSettings,
}

impl Config {
    /// Defaults, then the file (if given, or `STRATA_CONFIG`), then the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        let file: Option<PathBuf> = file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("STRATA_CONFIG").map(PathBuf::from));
        let toml = match &file {
            Some(path) => {
                anyhow::ensure!(path.is_file(), "config file {} does not exist", path.display());
                Some(Toml::file(path))
            }
            None => None,
        };
        Self::layered(toml)?.extract().context("invalid configuration")
    }

    /// Defaults, then `toml`, then the environment: the layers `load` extracts.
    fn layered(toml: Option<figment::providers::Data<Toml>>) -> anyhow::Result<Figment> {
        refuse_values_figment_garbles()?;
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(toml) = toml {
            figment = figment.merge(toml);
        }
        // Only `STRATA_<SECTION>__<KEY>` names are configuration; other STRATA_* variables
        // (STRATA_CONFIG, or a caller's own) are not.
        Ok(figment
            .merge(Env::prefixed(ENV_PREFIX).filter(|k| k.as_str().contains("__")).split("__")))
    }
}

/// Environment variables that configure strata begin with this.
const ENV_PREFIX: &str = "STRATA_";

/// Whether a variable name is configuration: `STRATA_<SECTION>__<KEY>`.
fn is_config_variable(name: &str) -> bool {
    // figment matches the prefix without regard to case.
    let n = ENV_PREFIX.len();
    name.get(..n).is_some_and(|p| p.eq_ignore_ascii_case(ENV_PREFIX)) && name[n..].contains("__")
}

/// figment (0.10.19) unescapes a quoted environment value (`"a\nb"`, also inside `[..]` or
/// `{..}`) using a character's index as a byte index, so a non-ASCII character before a
/// backslash makes it panic, or quietly cut the value wrongly. Such values are refused here,
/// with the variable's name, before figment reads them. Quoting and escapes work as
/// documented for ASCII values, and non-ASCII values without escapes are untouched.
fn refuse_values_figment_garbles() -> anyhow::Result<()> {
    for (name, value) in std::env::vars_os() {
        let (Some(name), Some(value)) = (name.to_str(), value.to_str()) else { continue };
        if is_config_variable(name)
            && value.contains('"')
            && value.contains('\\')
            && !value.is_ascii()
        {
            anyhow::bail!("invalid configuration: {name} holds a quoted value with both a backslash escape and non-ASCII text, which cannot be read reliably; write the character itself instead of an escape, or leave out the quotes");
        }
    }
    Ok(())
}

#[cfg(test)]
// figment's Jail API returns its own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn file_and_environment_layer_over_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("strata.toml", "[engine]\nnum_ctx = 1024\nmax_sequences = 2\n")?;
            jail.set_env("STRATA_ENGINE__MAX_SEQUENCES", "6");
            jail.set_env("STRATA_SOMETHING_ELSE", "ignored");
            let c = Config::load(Some(Path::new("strata.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.engine.num_ctx, 1024);
            assert_eq!(c.engine.max_sequences, 6);
            assert_eq!(c.engine.queue_depth, engine::EngineConfig::default().queue_depth);
            Ok(())
        });
    }

    #[test]
    fn gateway_keys_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("STRATA_GATEWAY__API_KEYS", "key-a,key-b");
            jail.set_env("STRATA_GATEWAY__INTEGRATION_TIMEOUT_MS", "5000");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(c.gateway.api_keys, ["key-a", "key-b"]);
            assert_eq!(c.gateway.integration_timeout_ms, 5000);
            jail.set_env("STRATA_GATEWAY__API_KEYS", "[key-c, key-d]");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(c.gateway.api_keys, ["key-c", "key-d"]);
            Ok(())
        });
    }

    #[test]
    fn main_service_models_inherit_the_default_model() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "m.toml",
                "[main_service.default_model]\ncontext_tokens = 4096\n[main_service.default_model.options]\ntemperature = 0.5\n\
                 [main_service.models.\"small\"]\ncontext_tokens = 1024\noptions = { num_predict = 64 }\n",
            )?;
            jail.set_env("STRATA_MAIN_SERVICE__LAMBDA__ENDPOINT_URL", "http://127.0.0.1:9001");
            let c = Config::load(Some(Path::new("m.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.main_service.lambda.endpoint_url, "http://127.0.0.1:9001");
            let small = c.main_service.model("small");
            assert_eq!(
                (small.context_tokens, small.options.num_predict, small.options.temperature),
                (1024, Some(64), Some(0.5))
            );
            assert_eq!(c.main_service.model("other").context_tokens, 4096);
            Ok(())
        });
    }

    #[test]
    fn the_documented_example_is_exactly_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/strata.example.toml");
        // In a jail so that other tests' environment variables cannot leak in.
        figment::Jail::expect_with(|_| {
            let c = Config::load(Some(&path)).map_err(|e| e.to_string())?;
            assert_eq!(toml::to_string(&c).unwrap(), toml::to_string(&Config::default()).unwrap());
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_bad_types_are_errors() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("a.toml", "[engine]\nnum_cxt = 1\n")?;
            assert!(Config::load(Some(Path::new("a.toml"))).is_err());
            jail.create_file("b.toml", "[engine]\nnum_ctx = \"big\"\n")?;
            assert!(Config::load(Some(Path::new("b.toml"))).is_err());
            assert!(Config::load(Some(Path::new("missing.toml"))).is_err());
            Ok(())
        });
    }

    /// Found by the million-case run: figment panicked on a quoted value with an escape after
    /// a non-ASCII character. ASCII escapes and plain non-ASCII still read as before.
    #[test]
    fn quoted_non_ascii_escapes_are_refused_by_name_not_a_panic() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("STRATA_LOG__LEVEL", "\"é\\n\"");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("STRATA_LOG__LEVEL") && e.contains("backslash"), "{e}");
            jail.set_env("strata_log__level", "[\"ü\\t\"]");
            assert!(Config::load(None).is_err());
            // Both spellings are read; give them the same ASCII escape.
            jail.set_env("STRATA_LOG__LEVEL", "\"warn\\u0021\"");
            jail.set_env("strata_log__level", "\"warn\\u0021\"");
            jail.set_env("STRATA_CONVERSE__TEMPLATE", "café");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!((c.log.level.as_str(), c.converse.template.as_str()), ("warn!", "café"));
            Ok(())
        });
    }

    /// Property tests of the loader: mutated versions of the documented example file and
    /// arbitrary `STRATA_*` values load or fail with an error, never panic; what loads
    /// serialises back. The dedicated run: `PROPTEST_CASES=1000000 cargo test --release -p cli fuzz_`.
    mod fuzz {
        use super::*;
        use proptest::prelude::*;
        use proptest::test_runner::{TestCaseError, TestRunner};

        fn example() -> String {
            std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/strata.example.toml"),
            )
            .unwrap()
        }

        /// Line-level edits of a TOML text: drop a line, duplicate one, swap a value, insert junk.
        fn mutate(text: &str, edits: &[(usize, u8, String)]) -> String {
            let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
            for (at, op, junk) in edits {
                if lines.is_empty() {
                    lines.push(junk.clone());
                    continue;
                }
                let i = at % lines.len();
                match op % 4 {
                    0 => {
                        lines.remove(i);
                    }
                    1 => {
                        let l = lines[i].clone();
                        lines.insert(i, l);
                    }
                    2 => {
                        if let Some((k, _)) = lines[i].split_once('=') {
                            lines[i] = format!("{k}= {junk}");
                        }
                    }
                    _ => lines.insert(i, junk.clone()),
                }
            }
            lines.join("\n")
        }

        fn check(toml: &str) -> Result<(), TestCaseError> {
            if let Ok(c) =
                Config::layered(Some(Toml::string(toml))).and_then(|f| Ok(f.extract::<Config>()?))
            {
                prop_assert!(toml::to_string(&c).is_ok());
            }
            Ok(())
        }

        #[test]
        fn fuzz_mutated_config_files_load_or_fail_cleanly() {
            let example = example();
            let junk = prop_oneof![
                Just("-1".to_owned()),
                Just("18446744073709551616".to_owned()),
                Just("\"\"".to_owned()),
                Just("[[x]]".to_owned()),
                Just("{ a = { b = [1, \"2\"] } }".to_owned()),
                Just("1e400".to_owned()),
                Just("nan".to_owned()),
                ".{0,24}",
            ];
            let edits = prop::collection::vec((any::<usize>(), any::<u8>(), junk), 0..6);
            // In a jail: the environment is read too, and other tests set it.
            figment::Jail::expect_with(|_| {
                TestRunner::default()
                    .run(&edits, |edits| check(&mutate(&example, &edits)))
                    .map_err(|e| e.to_string())?;
                TestRunner::default()
                    .run(&".{0,200}", |text| check(&text))
                    .map_err(|e| e.to_string())?;
                Ok(())
            });
        }

        #[test]
        fn fuzz_environment_values_load_or_fail_cleanly() {
            let keys = [
                "STRATA_SERVER__MAX_BODY_BYTES",
                "STRATA_SERVER__LISTEN",
                "STRATA_ENGINE__NUM_CTX",
                "STRATA_GATEWAY__API_KEYS",
                "STRATA_SERVER__BACKEND",
                "STRATA_SERVER__CHAIN__MODELS",
                "STRATA_MAIN_SERVICE__MODELS",
                "STRATA_LOG__LEVEL",
                "STRATA_X__Y",
                "STRATA_SERVER__",
                "STRATA___",
            ];
            let case = (
                0..keys.len(),
                prop_oneof![
                    ".{0,16}",
                    Just("[1, [2]]".to_owned()),
                    Just("{a=1}".to_owned()),
                    Just("-0".to_owned()),
                    Just("99999999999999999999999".to_owned())
                ],
            );
            // The jail's lock keeps other tests from reading the environment meanwhile; the
            // variable is set and removed around each case by hand (the runner's closure cannot
            // borrow the jail mutably).
            figment::Jail::expect_with(|_| {
                TestRunner::default()
                    .run(&case, |(k, v)| {
                        // Environment values cannot hold NUL; everything else may arrive.
                        let v = v.replace('\0', "");
                        std::env::set_var(keys[k], &v);
                        let r = Config::layered(None)
                            .and_then(|f| Ok(f.extract::<Config>()?))
                            .map(|_| ());
                        std::env::remove_var(keys[k]);
                        let _ = r;
                        Ok(())
                    })
                    .map_err(|e| e.to_string())?;
                Ok(())
            });
        }
    }
}
