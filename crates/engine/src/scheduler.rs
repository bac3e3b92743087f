//! Continuous batching. One thread owns the llama context; every step it admits waiting
//! requests into free sequence slots (if the shared KV cache has room for them), drops
//! sequences whose client went away, and decodes one batch holding one token for every
//! generating sequence plus as many prompt tokens of newly admitted ones as still fit.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use crate::config::{EngineConfig, KvCacheType};
use crate::engine::{Counters, Job};
use crate::outbox::{Outbox, ReaderBehind};
use crate::request::{Completion, EngineError, Event, FinishReason};
use crate::sampling::Sampler;
use crate::stop::{StopMatcher, StopOutcome};
use crate::utf8::Utf8Stream;
use llama_cpp_2::context::params::{KvCacheType as LlamaKvType, LlamaContextParams};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;

/// One request occupying a sequence slot.
struct Sequence {
    id: i32,
    events: Outbox,
    sampler: Sampler,
    prompt: Vec<LlamaToken>,
    /// Prompt tokens already sent to the model.
    prompt_done: usize,
    /// Tokens in this sequence's KV cache (the next position).
    n_past: u32,
    reserve: u32,
    max_tokens: Option<u32>,
    generated: u32,
    /// The last sampled token, decoded in the next step.
    last: Option<LlamaToken>,
    /// This sequence's row in the current batch whose logits to sample.
    logits_row: Option<i32>,
    utf8: Utf8Stream,
    stop: StopMatcher,
    load: Duration,
    prompt_started: Option<Instant>,
    prompt_finished: Option<Instant>,
}

impl Sequence {
    fn new(job: Job, id: i32) -> Self {
        Sequence {
            id,
            events: job.events,
            sampler: job.sampler,
            prompt: job.tokens,
            prompt_done: 0,
            n_past: 0,
            reserve: job.reserve,
            max_tokens: job.max_tokens,
            generated: 0,
            last: None,
            logits_row: None,
            utf8: Utf8Stream::default(),
            stop: StopMatcher::new(&job.stop),
            load: job.submitted.elapsed() + job.load,
            prompt_started: None,
            prompt_finished: None,
        }
    }

    /// A closed receiver is noticed at the next step's cancellation check; a reader too far
    /// behind stops the sequence.
    fn send_text(&self, text: String) -> Result<(), ReaderBehind> {
        self.events.text(text)
    }

    fn completion(&self, reason: FinishReason) -> Completion {
        let now = Instant::now();
        let started = self.prompt_started.unwrap_or(now);
        let finished = self.prompt_finished.unwrap_or(now);
        Completion {
            reason,
            prompt_tokens: self.prompt.len() as u32,
            prompt_eval: finished.duration_since(started),
            completion_tokens: self.generated,
            eval: now.duration_since(finished),
            load: self.load,
        }
    }
}

/// How a sequence leaves its slot.
enum Exit {
    Finished(FinishReason),
    Failed(EngineError),
    Cancelled,
}

pub(crate) fn run(
    backend: &LlamaBackend,
    model: &LlamaModel,
    config: &EngineConfig,
    jobs: Receiver<Job>,
    counters: &Counters,
    ready: Sender<Result<(), String>>,
) {
    let threads = config.thread_count();
    let slots = config.max_sequences.max(1);
    let mut params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(config.num_ctx.max(1).saturating_mul(slots)))
        .with_n_batch(config.batch_size.max(config.max_sequences).max(1))
        .with_n_ubatch(config.batch_size.max(config.max_sequences).max(1))
        .with_n_seq_max(slots)
        // A KV stream per slot rather than one shared pool: attention then never spans
        // another sequence's (masked) cells, whose presence changes floating-point summation
        // order, so a request yields the same text batched as alone.
        .with_kv_unified(false)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    if config.kv_cache_type == KvCacheType::Q8_0 {
        params = params
            .with_type_k(LlamaKvType::Q8_0)
            // Quantised V needs flash attention; llama.cpp's default policy (auto) enables it.
            .with_type_v(LlamaKvType::Q8_0);
    }
    let mut ctx = match model.new_context(backend, params) {
        Ok(ctx) => ctx,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    Scheduler::new(model, config, counters).run(&mut ctx, jobs);
}

struct Scheduler<'m> {
    model: &'m LlamaModel,
    counters: &'m Counters,
    batch_size: usize,
    slots: Vec<Option<Sequence>>,
    waiting: VecDeque<Job>,
    /// Scratch for the vocabulary's candidates, reused by every sampling step.
    candidates: LlamaTokenDataArray,
}

impl<'m> Scheduler<'m> {
    fn new(model: &'m LlamaModel, config: &EngineConfig, counters: &'m Counters) -> Self {
        Scheduler {
            model,
            counters,
            // Every generating sequence needs a row in each batch.
            batch_size: config.batch_size.max(config.max_sequences).max(1) as usize,
            slots: (0..config.max_sequences.max(1)).map(|_| None).collect(),
            waiting: VecDeque::new(),
            candidates: LlamaTokenDataArray::new(
                Vec::with_capacity(usize::try_from(model.n_vocab()).unwrap_or(0)),
                false,
            ),
        }
    }

    fn run(&mut self, ctx: &mut LlamaContext<'_>, jobs: Receiver<Job>) {
        let mut batch = LlamaBatch::new(self.batch_size, 1);
        loop {
            if !self.intake(&jobs) {
                return;
            }
            self.admit();
            self.drop_cancelled(ctx);
            if !self.fill_batch(&mut batch) {
                continue;
            }
            if let Err(e) = ctx.decode(&mut batch) {
                tracing::error!(error = %e, "llama decode failed");
                let ids: Vec<usize> = self.occupied().collect();
                for i in ids {
                    self.exit(ctx, i, Exit::Failed(EngineError::Inference(e.to_string())));
                }
                continue;
            }
            self.sample(ctx);
        }
    }

    fn occupied(&self) -> impl Iterator<Item = usize> + '_ {
        self.slots.iter().enumerate().filter(|(_, s)| s.is_some()).map(|(i, _)| i)
    }

    /// Moves new jobs into the waiting queue; blocks when there is nothing to do.
    /// Returns false when the engine was dropped and all work is done.
    fn intake(&mut self, jobs: &Receiver<Job>) -> bool {
        let idle = self.waiting.is_empty() && self.slots.iter().all(Option::is_none);
        if idle {
            match jobs.recv() {
                Ok(job) => self.waiting.push_back(job),
                Err(_) => return false,
            }
        }
        // A disconnected sender just means no new work; running sequences still finish.
        while let Ok(job) = jobs.try_recv() {
            self.waiting.push_back(job);
        }
        let before = self.waiting.len();
        self.waiting.retain(|job| !job.events.is_closed());
        self.counters.queued.fetch_sub(before - self.waiting.len(), Ordering::AcqRel);
        true
    }

    /// First come, first served into free slots.
    fn admit(&mut self) {
        while !self.waiting.is_empty() {
            let Some(slot) = self.slots.iter().position(Option::is_none) else { break };
            let Some(job) = self.waiting.pop_front() else { break };
            self.counters.queued.fetch_sub(1, Ordering::AcqRel);
            self.slots[slot] = Some(Sequence::new(job, slot as i32));
            self.publish();
        }
    }

    fn drop_cancelled(&mut self, ctx: &mut LlamaContext<'_>) {
        let gone: Vec<usize> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.as_ref().is_some_and(|s| s.events.is_closed()))
            .map(|(i, _)| i)
            .collect();
        for i in gone {
            self.exit(ctx, i, Exit::Cancelled);
        }
    }

    /// One token per generating sequence first (they are latency-bound), then prompt chunks.
    /// Returns false if there is nothing to decode.
    fn fill_batch(&mut self, batch: &mut LlamaBatch) -> bool {
        batch.clear();
        let mut room = self.batch_size;
        for seq in self.slots.iter_mut().flatten() {
            seq.logits_row = None;
            if let Some(token) = seq.last.take() {
                if batch.add(token, seq.n_past as i32, &[seq.id], true).is_err() {
                    seq.last = Some(token);
                    continue;
                }
                seq.n_past += 1;
                seq.logits_row = Some(batch.n_tokens() - 1);
                room -= 1;
            }
        }
        for seq in self.slots.iter_mut().flatten() {
            if room == 0 {
                break;
            }
            let remaining = seq.prompt.len() - seq.prompt_done;
            if remaining == 0 || seq.logits_row.is_some() {
                continue;
            }
            let take = remaining.min(room);
            for k in 0..take {
                let idx = seq.prompt_done + k;
                let is_last = idx + 1 == seq.prompt.len();
                if batch.add(seq.prompt[idx], idx as i32, &[seq.id], is_last).is_err() {
                    break;
                }
            }
            seq.prompt_done += take;
            seq.n_past = seq.prompt_done as u32;
            room -= take;
            seq.prompt_started.get_or_insert_with(Instant::now);
            if seq.prompt_done == seq.prompt.len() {
                seq.logits_row = Some(batch.n_tokens() - 1);
            }
        }
        batch.n_tokens() > 0
    }

    fn sample(&mut self, ctx: &mut LlamaContext<'_>) {
        let now = Instant::now();
        for i in 0..self.slots.len() {
            let Some(seq) = self.slots[i].as_mut() else { continue };
            let Some(row) = seq.logits_row.take() else { continue };
            if seq.prompt_finished.is_none() {
                seq.prompt_finished = Some(now);
            }
            if seq.max_tokens.is_some_and(|m| seq.generated >= m) {
                self.exit(ctx, i, Exit::Finished(FinishReason::Length));
                continue;
            }
            let token = seq.sampler.sample(ctx, row, &mut self.candidates);
            if self.model.vocab().is_eog(token) {
                self.exit(ctx, i, Exit::Finished(FinishReason::Stop));
                continue;
            }
            seq.generated += 1;
            let bytes = self.model.vocab().token_to_piece(token, false, None);
            let text = seq.utf8.push(&bytes);
            let (out, stopped) = match seq.stop.push(&text) {
                StopOutcome::Continue(out) => (out, false),
                StopOutcome::Stopped(out) => (out, true),
            };
            if let Err(ReaderBehind { limit }) = seq.send_text(out) {
                self.exit(ctx, i, Exit::Failed(EngineError::ReaderBehind { limit }));
                continue;
            }
            if stopped {
                // Nothing after a stop string may reach the client.
                seq.utf8 = Utf8Stream::default();
                self.exit(ctx, i, Exit::Finished(FinishReason::StopSequence));
                continue;
            }
            let at_limit =
                seq.max_tokens.is_some_and(|m| seq.generated >= m) || seq.n_past >= seq.reserve;
            if at_limit {
                self.exit(ctx, i, Exit::Finished(FinishReason::Length));
            } else {
                seq.last = Some(token);
            }
        }
    }

    /// Frees a slot and its KV cells, telling the client why.
    fn exit(&mut self, ctx: &mut LlamaContext<'_>, slot: usize, how: Exit) {
        let Some(mut seq) = self.slots[slot].take() else { return };
        if let Err(e) = ctx.clear_kv_cache_seq(Some(seq.id as u32), None, None) {
            tracing::error!(error = %e, seq = seq.id, "could not clear KV cells");
        }
        // Counters first, so a client that sees the end also sees the slot free.
        self.publish();
        match how {
            Exit::Finished(reason) => {
                let tail = seq.utf8.flush();
                let mut rest = match seq.stop.push(&tail) {
                    StopOutcome::Continue(t) | StopOutcome::Stopped(t) => t,
                };
                rest.push_str(&seq.stop.flush());
                match seq.send_text(rest) {
                    Ok(()) => seq.events.finish(Ok(Event::Done(seq.completion(reason)))),
                    Err(ReaderBehind { limit }) => {
                        seq.events.finish(Err(EngineError::ReaderBehind { limit }))
                    }
                }
            }
            Exit::Failed(e) => seq.events.finish(Err(e)),
            Exit::Cancelled => {
                tracing::debug!(seq = seq.id, "client went away; sequence cancelled")
            }
        }
    }

    fn publish(&self) {
        let active = self.slots.iter().filter(|s| s.is_some()).count();
        self.counters.active.store(active, Ordering::Relaxed);
        let kv_used: u32 = self.slots.iter().flatten().map(|s| s.n_past).sum();
        self.counters.kv_used.store(kv_used as usize, Ordering::Relaxed);
    }
}
