//! The environment of a function process: what Lambda defines for a custom runtime, the
//! execution role's credentials when configured, and the function's own variables on top.
//! Nothing of the service's own environment (its `STRATA_*` settings, its `AWS_*`
//! credentials) reaches the function, as on AWS, where a function sees only its configuration.

use std::net::SocketAddr;
use std::path::Path;

use crate::function::Shared;

/// Lambda's `PATH` for custom runtimes.
const PATH: &str = "/usr/local/bin:/usr/bin/:/bin:/opt/bin";

/// Every variable of the process of environment `index`, whose Runtime API is at `runtime_api`.
pub fn environment(
    shared: &Shared,
    index: usize,
    runtime_api: SocketAddr,
) -> Vec<(String, String)> {
    let path = &shared.settings.path;
    // The function's directory stands where Lambda's `/var/task` is.
    let task_root = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .display()
        .to_string();
    let mut env: Vec<(String, String)> = [
        ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", shared.name.clone()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", shared.settings.memory_mb.to_string()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{}", shared.name)),
        ("AWS_LAMBDA_LOG_STREAM_NAME", format!("local/[$LATEST]{index}")),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
        ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023".to_owned()),
        ("AWS_REGION", shared.region.clone()),
        ("AWS_DEFAULT_REGION", shared.region.clone()),
        (
            "_HANDLER",
            path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
        ),
        ("LAMBDA_TASK_ROOT", task_root.clone()),
        ("PATH", PATH.to_owned()),
        ("LD_LIBRARY_PATH", format!("/lib64:/usr/lib64:{task_root}:{task_root}/lib:/opt/lib")),
        ("LANG", "en_US.UTF-8".to_owned()),
        ("TZ", ":UTC".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let role = &shared.settings.role_credentials;
    if !role.access_key_id.is_empty() {
        env.push(("AWS_ACCESS_KEY_ID".into(), role.access_key_id.clone()));
        env.push(("AWS_SECRET_ACCESS_KEY".into(), role.secret_access_key.expose().to_owned()));
        if !role.session_token.is_empty() {
            env.push(("AWS_SESSION_TOKEN".into(), role.session_token.expose().to_owned()));
        }
    }
    // Configured variables last, so they win (AWS refuses reserved names in a function's
    // configuration; locally, overriding one is allowed).
    env.extend(shared.settings.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}
