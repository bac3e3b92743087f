//! The engine handle: loads a model, owns the scheduler thread, and turns requests into
//! token streams. Prompt rendering, tokenisation and sampler set-up happen on the caller's
//! thread so that bad requests fail before they are queued.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use crate::config::{EngineConfig, ModelSpec};
use crate::embed::{self, EmbedContext, EmbedInput, EmbedJob, EmbedRequest, Embedder, Embeddings};
use crate::model_info::ModelInfo;
use crate::prefix_index::PrefixIndex;
use crate::prompt::{Preparation, Tokenizer};
use crate::request::{EngineError, EngineRequest, Event, OutputFormat, Prompt};
use crate::template::{render_plain, ChatTemplate};
use crate::tools::{Dialect, Reader};
use crate::{grammar, sampling, scheduler, schema};

/// llama.cpp's global state may be initialised once per process, whatever the number of models.
pub(crate) fn backend() -> Result<&'static LlamaBackend, LoadError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            // llama.cpp logs every tensor at load; route it through tracing, off unless asked.
            llama_cpp_2::send_logs_to_tracing(
                llama_cpp_2::LogOptions::default().with_logs_enabled(false),
            );
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| LoadError::Backend(e.clone()))
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("llama.cpp backend: {0}")]
    Backend(String),
    #[error("model file {0} does not exist")]
    Missing(std::path::PathBuf),
    #[error("could not load model {path}: {reason}")]
    Model { path: std::path::PathBuf, reason: String },
    #[error("could not create a context for {name}: {reason}")]
    Context { name: String, reason: String },
    #[error("the model's chat template is invalid: {0}")]
    Template(String),
}

/// Counters shared with the scheduler thread.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub queued: AtomicUsize,
    pub active: AtomicUsize,
    /// Tokens held in KV caches across all slots.
    pub kv_used: AtomicUsize,
}

/// A snapshot of the engine's load, for metrics and `/api/ps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineStats {
    pub queued: usize,
    pub active: usize,
    pub kv_used: usize,
    /// Total KV capacity in tokens (`num_ctx * max_sequences`).
    pub kv_size: usize,
}

/// A request ready for the scheduler: tokens, sampler and where to send events.
pub(crate) struct Job {
    pub tokens: Vec<LlamaToken>,
    /// KV cells this sequence may fill (prompt + room to generate, within its context).
    pub reserve: u32,
    pub max_tokens: Option<u32>,
    pub stop: Vec<String>,
    pub sampler: sampling::Sampler,
    pub events: crate::outbox::Outbox,
    pub submitted: Instant,
    /// Model load time charged to the first request after load, as Ollama does.
    pub load: Duration,
}

/// A loaded model and the thread that runs it. Cheap to share behind an `Arc`.
pub struct Engine {
    model: Arc<LlamaModel>,
    info: ModelInfo,
    template: Option<ChatTemplate>,
    /// How the template puts tools to the model (generic when it has none of its own).
    dialect: Dialect,
    tokenizer: Tokenizer,
    /// Prompt preparations running at once: one per core but one, so huge prompts queue
    /// instead of starving the async workers, the decode thread and each other.
    preparing: tokio::sync::Semaphore,
    config: EngineConfig,
    jobs: mpsc::Sender<Job>,
    /// Joined on drop, so the model's context is freed before the engine is gone (a process
    /// that exits while the thread still frees it crashes in llama.cpp's teardown).
    scheduler: Option<std::thread::JoinHandle<()>>,
    counters: Arc<Counters>,
    pending_load: std::sync::Mutex<Option<Duration>>,
    /// The embedding thread, started by the first embedding request.
    embedder: std::sync::Mutex<Option<Embedder>>,
    /// The vocabulary by leading characters, read by the first constrained request.
    prefix_index: OnceLock<Arc<PrefixIndex>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("model", &self.info.name).finish()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Closing the job channel lets the scheduler finish what it runs and exit.
        self.jobs = mpsc::channel().0;
        if let Some(thread) = self.scheduler.take() {
            let _ = thread.join();
        }
        // Likewise the embedding thread: closing its queue ends it.
        if let Some(Embedder { jobs, thread }) = self.embedder.get_mut().ok().and_then(Option::take)
        {
            drop(jobs);
            let _ = thread.join();
        }
    }
}

impl Engine {
    /// Loads the model and starts its scheduler thread. Blocks for the load (call it from
    /// `spawn_blocking` in async code).
    pub fn load(spec: ModelSpec, config: EngineConfig) -> Result<Engine, LoadError> {
        let started = Instant::now();
        if !spec.path.is_file() {
            return Err(LoadError::Missing(spec.path));
        }
        let backend = backend()?;
        let model = LlamaModel::load_from_file(
            backend,
            &spec.path,
            &LlamaModelParams::default().with_use_mmap(config.use_mmap),
        )
        .map_err(|e| LoadError::Model { path: spec.path.clone(), reason: e.to_string() })?;
        let mut info = ModelInfo::read(&spec.name, spec.path.clone(), &model);
        if let Some(source) = spec.chat_template {
            info.chat_template = Some(source);
        }
        let template = match &info.chat_template {
            Some(src) => {
                let vocab = model.vocab();
                let text =
                    |t| vocab.text(t).map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                Some(
                    ChatTemplate::new(src, &text(vocab.bos()), &text(vocab.eos()))
                        .map_err(|e| LoadError::Template(e.to_string()))?,
                )
            }
            None => None,
        };
        let dialect =
            template.as_ref().map_or(Dialect::Generic, |t| Dialect::of_template(t.source()));
        let tokenizer = Tokenizer::read(&model);
        let model = Arc::new(model);
        let counters = Arc::new(Counters::default());
        let (jobs, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread_model = Arc::clone(&model);
        let thread_counters = Arc::clone(&counters);
        let thread_config = config.clone();
        let name = spec.name.clone();
        let scheduler = std::thread::Builder::new()
            .name(format!("engine:{name}"))
            .spawn(move || {
                scheduler::run(
                    backend,
                    &thread_model,
                    &thread_config,
                    rx,
                    &thread_counters,
                    ready_tx,
                )
            })
            .map_err(|e| LoadError::Context { name: name.clone(), reason: e.to_string() })?;
        ready_rx
            .recv()
            .map_err(|_| LoadError::Context {
                name: name.clone(),
                reason: "scheduler thread exited".into(),
            })?
            .map_err(|reason| LoadError::Context { name, reason })?;
        Ok(Engine {
            model,
            info,
            template,
            dialect,
            tokenizer,
            // One core is left to the hop's async workers, so they keep answering while
            // huge prompts are prepared (on one or two cores: one preparation at a time).
            preparing: tokio::sync::Semaphore::new((config.thread_count() - 1).max(1) as usize),
            config,
            jobs,
            scheduler: Some(scheduler),
            counters,
            pending_load: std::sync::Mutex::new(Some(started.elapsed())),
            embedder: std::sync::Mutex::new(None),
            prefix_index: OnceLock::new(),
        })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats {
            queued: self.counters.queued.load(Ordering::Relaxed),
            active: self.counters.active.load(Ordering::Relaxed),
            kv_used: self.counters.kv_used.load(Ordering::Relaxed),
            kv_size: (self.config.num_ctx as usize) * (self.config.max_sequences as usize),
        }
    }

    /// The context window a request gets: what it asked for, capped by the slot size and the
    /// model's training context.
    pub fn context_limit(&self, requested: Option<u32>) -> u32 {
        let slot = self.config.num_ctx.min(self.info.context_length.max(1)).max(1);
        requested.map_or(slot, |r| r.clamp(1, slot))
    }

    /// Renders the prompt text exactly as the model will see it.
    pub fn render(&self, prompt: &Prompt) -> Result<String, EngineError> {
        match prompt {
            Prompt::Raw(text) => Ok(text.clone()),
            Prompt::Chat(messages) if messages.is_empty() => {
                Err(EngineError::InvalidRequest("messages must not be empty".into()))
            }
            Prompt::Chat(messages) => {
                let messages = self.dialect.messages(messages, None);
                match &self.template {
                    Some(t) => t.render(&messages, None),
                    None => Ok(render_plain(&messages)),
                }
            }
        }
    }

    /// Counts the tokens of a text as this model tokenises it (special tokens parsed).
    pub fn count_tokens(&self, text: &str) -> usize {
        self.model.vocab().tokenize(text.as_bytes(), false, true).len()
    }

    /// Queues a request. Fails if it is invalid, too long, or the queue is full; otherwise text
    /// arrives on the returned stream. The prompt is prepared on a blocking thread (at most
    /// one per core but one at a time), and dropping this future stops that work between steps.
    /// Dropping the stream cancels the request and frees its sequence slot.
    pub async fn generate(
        self: &Arc<Self>,
        request: EngineRequest,
    ) -> Result<Generation, EngineError> {
        let ticket = self.enqueue()?;
        let _permit = self.preparing.acquire().await.map_err(|_| EngineError::ShutDown)?;
        let cancel = CancelOnDrop(Arc::new(AtomicBool::new(false)));
        let (engine, flag) = (Arc::clone(self), Arc::clone(&cancel.0));
        let job = tokio::task::spawn_blocking(move || engine.prepare(request, &flag))
            .await
            .map_err(|e| EngineError::Inference(format!("prompt preparation failed: {e}")))??;
        self.submit(ticket, job)
    }

    /// One vector per input (see `embed.rs`). Inputs are tokenized on a blocking thread, as
    /// prompts are; the vectors come from the embedding thread.
    pub async fn embed(self: &Arc<Self>, request: EmbedRequest) -> Result<Embeddings, EngineError> {
        let started = Instant::now();
        let permit = self.preparing.acquire().await.map_err(|_| EngineError::ShutDown)?;
        let engine = Arc::clone(self);
        let (rx, prompt_tokens) =
            tokio::task::spawn_blocking(move || engine.queue_embedding(request)).await.map_err(
                |e| EngineError::Inference(format!("embedding preparation failed: {e}")),
            )??;
        drop(permit);
        let vectors = rx.await.map_err(|_| EngineError::ShutDown)??;
        let load =
            self.pending_load.lock().map(|mut l| l.take()).ok().flatten().unwrap_or_default();
        Ok(Embeddings { vectors, prompt_tokens, load, total: started.elapsed() })
    }

    /// The width of this model's vectors.
    pub fn embedding_length(&self) -> usize {
        usize::try_from(self.model.n_embd_out()).unwrap_or(0)
    }

    /// Checks and tokenizes the inputs and queues them for the embedding thread.
    #[allow(clippy::type_complexity)]
    fn queue_embedding(
        &self,
        request: EmbedRequest,
    ) -> Result<
        (tokio::sync::oneshot::Receiver<Result<Vec<Vec<f32>>, EngineError>>, usize),
        EngineError,
    > {
        let invalid = |m: String| Err(EngineError::InvalidRequest(m));
        if request.inputs.is_empty() {
            return invalid("input must hold at least one item".into());
        }
        let width = self.embedding_length();
        let dimensions = match request.dimensions {
            None => None,
            Some(d) if d >= 1 && d as usize <= width => Some(d as usize),
            Some(d) => {
                return invalid(format!(
                    "dimensions must be between 1 and {width} for {}, not {d}",
                    self.info.name
                ))
            }
        };
        let limit = self.context_limit(None) as usize;
        let vocab = self.model.vocab();
        let n_vocab = self.model.n_vocab();
        let mut inputs = Vec::with_capacity(request.inputs.len());
        for (i, input) in request.inputs.iter().enumerate() {
            let mut tokens = match input {
                EmbedInput::Text(t) if t.is_empty() => {
                    return invalid(format!("input {i} is an empty string"))
                }
                // User text is text: special-token parsing off.
                EmbedInput::Text(t) => vocab.tokenize(t.as_bytes(), true, false),
                EmbedInput::Tokens(ids) if ids.is_empty() => {
                    return invalid(format!("input {i} is an empty token list"))
                }
                EmbedInput::Tokens(ids) => {
                    let mut tokens = Vec::with_capacity(ids.len());
                    for &id in ids {
                        match i32::try_from(id).ok().filter(|id| *id < n_vocab) {
                            Some(id) => tokens.push(LlamaToken(id)),
                            None => return invalid(format!("input {i} holds token {id}, outside this model's vocabulary of {n_vocab}")),
                        }
                    }
                    tokens
                }
            };
            if tokens.len() > limit {
                if !request.truncate {
                    return invalid(format!("input {i} is {} tokens, over the context of {limit}; send truncate: true to cut it", tokens.len()));
                }
                tokens.truncate(limit);
            }
            inputs.push(tokens);
        }
        let prompt_tokens = inputs.iter().map(Vec::len).sum();
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.embedder()?.try_send(EmbedJob { inputs, dimensions, reply }).map_err(|e| match e {
            mpsc::TrySendError::Full(_) => {
                EngineError::QueueFull { depth: self.config.queue_depth }
            }
            mpsc::TrySendError::Disconnected(_) => EngineError::ShutDown,
        })?;
        Ok((rx, prompt_tokens))
    }

    /// The embedding thread's queue, starting the thread (and its context) on first use.
    fn embedder(&self) -> Result<mpsc::SyncSender<EmbedJob>, EngineError> {
        let mut slot = self.embedder.lock().map_err(|_| EngineError::ShutDown)?;
        if let Some(e) = slot.as_ref() {
            return Ok(e.jobs.clone());
        }
        let pooling =
            embed::pooling(&self.info.metadata, &self.info.architecture).map_err(|why| {
                EngineError::InvalidRequest(format!("model {} {why}", self.info.name))
            })?;
        let settings = EmbedContext {
            n_ctx: self.context_limit(None),
            threads: self.config.thread_count(),
            pooling,
        };
        let (jobs, rx) = mpsc::sync_channel(self.config.queue_depth.max(1));
        let (ready_tx, ready_rx) = mpsc::channel();
        let model = Arc::clone(&self.model);
        let backend = backend().map_err(|e| EngineError::Inference(e.to_string()))?;
        let thread = std::thread::Builder::new()
            .name(format!("embed:{}", self.info.name))
            .spawn(move || embed::run(backend, &model, &settings, rx, ready_tx))
            .map_err(|e| {
                EngineError::Inference(format!("could not start the embedding thread: {e}"))
            })?;
        let started =
            ready_rx.recv().map_err(|_| "the embedding thread exited".to_owned()).and_then(|r| r);
        if let Err(e) = started {
            let _ = thread.join();
            return Err(EngineError::Inference(format!(
                "could not create an embedding context: {e}"
            )));
        }
        *slot = Some(Embedder { jobs: jobs.clone(), thread });
        Ok(jobs)
    }

    /// [`Engine::generate`] for synchronous callers (tests, benchmarks): prepares on this thread.
    pub fn generate_blocking(&self, request: EngineRequest) -> Result<Generation, EngineError> {
        let ticket = self.enqueue()?;
        let job = self.prepare(request, &AtomicBool::new(false))?;
        self.submit(ticket, job)
    }

    /// Takes a place in the queue, or refuses at once when it is full: a request waiting for
    /// preparation counts as queued, so a flood of huge prompts cannot pile up behind it.
    fn enqueue(&self) -> Result<Ticket<'_>, EngineError> {
        let depth = self.config.queue_depth;
        if self.counters.queued.fetch_add(1, Ordering::AcqRel) >= depth {
            self.counters.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(EngineError::QueueFull { depth });
        }
        Ok(Ticket { queued: &self.counters.queued, handed_over: false })
    }

    /// Validation, tokens and sampler: the slow, blocking part of a request.
    fn prepare(
        &self,
        request: EngineRequest,
        cancel: &AtomicBool,
    ) -> Result<Prepared, EngineError> {
        if self.info.embedding_only() {
            // Its encoder's states pool into a vector; no next token comes of them.
            return Err(EngineError::InvalidRequest(format!(
                "\"{}\" is an embedding model and does not support generation",
                self.info.name
            )));
        }
        sampling::validate(&request.params.sampling)?;
        let tools = request.params.tools.as_ref();
        let (prompt, dialect) = match request.prompt {
            Prompt::Chat(messages) => {
                let dialect =
                    self.dialect.for_request(tools, &messages, &self.tokenizer.control_texts);
                (Prompt::Chat(dialect.messages(&messages, tools)), dialect)
            }
            Prompt::Raw(_) if tools.is_some() => {
                return Err(EngineError::InvalidRequest(
                    "tools need a chat, not a raw prompt".into(),
                ));
            }
            raw @ Prompt::Raw(_) => (raw, Dialect::Generic),
        };
        let grammar = match (tools, &request.params.format) {
            (Some(t), format) => dialect.grammar(t, format)?,
            (None, OutputFormat::Text) => None,
            (None, OutputFormat::Json) => Some(grammar::JSON_OBJECT.to_owned()),
            (None, OutputFormat::Schema(s)) => Some(
                schema::grammar(s)
                    .map_err(|e| EngineError::InvalidRequest(format!("format: {e}")))?,
            ),
        };
        let template_tools = dialect.template_tools(tools);
        let limit = self.context_limit(request.params.num_ctx);
        let preparation = Preparation {
            model: &self.model,
            tokenizer: &self.tokenizer,
            template: self.template.as_ref(),
            tools: template_tools.as_ref(),
            limit,
            truncate_chat: self.config.truncate_chat,
            cancel,
        };
        let tokens = preparation.tokens(&prompt)?;
        let prompt_len = tokens.len() as u32;
        let room = request.params.max_tokens.unwrap_or(limit);
        let reserve = prompt_len.saturating_add(room).min(limit).max(prompt_len);
        let constraint = grammar.as_deref().map(|gbnf| sampling::Constraint {
            gbnf,
            index: self
                .prefix_index
                .get_or_init(|| Arc::new(PrefixIndex::new(&self.model)))
                .clone(),
        });
        let sampler = sampling::build(&self.model, &request.params.sampling, constraint, limit)?;
        Ok(Prepared {
            tokens,
            reserve,
            max_tokens: request.params.max_tokens,
            stop: request.params.stop,
            sampler,
            reader: tools.map(|t| Reader::new(dialect, t.clone())),
        })
    }

    /// Hands a prepared request to the scheduler; its queue place passes with it.
    fn submit(&self, mut ticket: Ticket<'_>, p: Prepared) -> Result<Generation, EngineError> {
        let (events, rx) = crate::outbox::channel(self.config.max_buffered_bytes);
        let load =
            self.pending_load.lock().map(|mut l| l.take()).ok().flatten().unwrap_or_default();
        let job = Job {
            tokens: p.tokens,
            reserve: p.reserve,
            max_tokens: p.max_tokens,
            stop: p.stop,
            sampler: p.sampler,
            events,
            submitted: Instant::now(),
            load,
        };
        self.jobs.send(job).map_err(|_| EngineError::ShutDown)?;
        ticket.handed_over = true;
        Ok(Generation { rx, reader: p.reader, ready: VecDeque::new() })
    }
}

/// A request's place in the queue until the scheduler takes it over (which then counts it
/// down); given back if preparation fails or is abandoned.
struct Ticket<'a> {
    queued: &'a AtomicUsize,
    handed_over: bool,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.handed_over {
            self.queued.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Raises the flag when the future holding it is dropped (the client went away).
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A request's prompt tokens and sampler, ready to queue.
struct Prepared {
    tokens: Vec<LlamaToken>,
    reserve: u32,
    max_tokens: Option<u32>,
    stop: Vec<String>,
    sampler: sampling::Sampler,
    /// With tools: reads the answer into text and calls.
    reader: Option<Reader>,
}

/// The stream of one generation: `Event::Text` pieces (or, when tools were offered, either
/// the answer's text or its `Event::ToolCall`s) then `Event::Done`, or an error.
#[derive(Debug)]
pub struct Generation {
    rx: crate::outbox::Inbox,
    /// With tools: passes text on and reads the calls out of the answer.
    reader: Option<Reader>,
    /// Events ready to hand out.
    ready: VecDeque<Result<Event, EngineError>>,
}

impl Generation {
    pub async fn next(&mut self) -> Option<Result<Event, EngineError>> {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    /// For synchronous callers (tests, benchmarks).
    pub fn blocking_next(&mut self) -> Option<Result<Event, EngineError>> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            let item = self.rx.blocking_recv()?;
            self.absorb(item);
        }
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Event, EngineError>>> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Poll::Ready(Some(event));
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(item)) => self.absorb(item),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Passes events on; with tools, through the reader, which turns calls into events.
    fn absorb(&mut self, item: Result<Event, EngineError>) {
        let Some(reader) = self.reader.as_mut() else {
            self.ready.push_back(item);
            return;
        };
        match item {
            Ok(Event::Text(t)) => {
                if let Some(text) = reader.push(&t) {
                    self.ready.push_back(Ok(Event::Text(text)));
                }
            }
            Ok(Event::Done(mut completion)) => {
                let ending = reader.finish();
                if let Some(text) = ending.text {
                    self.ready.push_back(Ok(Event::Text(text)));
                }
                if !ending.calls.is_empty() {
                    completion.reason = crate::FinishReason::ToolUse;
                    self.ready.extend(ending.calls.into_iter().map(|c| Ok(Event::ToolCall(c))));
                }
                self.ready.push_back(Ok(Event::Done(completion)));
            }
            other => self.ready.push_back(other),
        }
    }

    /// Collects the whole generation: the text and the completion record (tool calls are
    /// dropped: use [`Generation::next`] to see them).
    pub async fn collect_text(mut self) -> Result<(String, crate::Completion), EngineError> {
        let mut text = String::new();
        while let Some(event) = self.next().await {
            match event? {
                Event::Text(t) => text.push_str(&t),
                Event::ToolCall(_) => {}
                Event::Done(c) => return Ok((text, c)),
            }
        }
        Err(EngineError::ShutDown)
    }
}

impl futures_core::Stream for Generation {
    type Item = Result<Event, EngineError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.poll_event(cx)
    }
}
