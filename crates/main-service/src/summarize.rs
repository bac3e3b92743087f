//! Map-reduce summarization: the document is cut into parts that fit the model's context,
//! each part is summarized by its own invocation (several at once), and one last invocation
//! combines the partial summaries into the answer, which streams to the caller when asked.
//! Partial summaries too long to combine at once are first combined in groups, as often as
//! needed.

use contract::{
    ChunkKind, ChunkStream, GenerateRequest, GenerateResponse, Message, Options, TraceContext,
    Usage,
};
use futures::{StreamExt, TryStreamExt};

use crate::config::MainServiceSettings;
use crate::domain::{ValidatedRequest, ValidatedSummarize};
use crate::error::ServiceError;
use crate::format::{self, chars_for_tokens, estimate_tokens, render, MESSAGE_OVERHEAD_TOKENS};
use crate::startup::AppState;

/// The final answer, whole or streamed.
pub enum Answer {
    Whole(GenerateResponse),
    Stream(ChunkStream),
}

/// Prompt tokens left for text once the model's system prompt, one message's overhead and the
/// answer's reserve are counted.
fn text_budget(settings: &MainServiceSettings, model: &str, template_tokens: usize) -> usize {
    let m = settings.model(model);
    let system = if m.system_prompt.is_empty() {
        0
    } else {
        estimate_tokens(&m.system_prompt, settings.chars_per_token) + MESSAGE_OVERHEAD_TOKENS
    };
    let budget = (m.context_tokens as usize).saturating_sub(m.answer_reserve_tokens as usize);
    budget.saturating_sub(system + MESSAGE_OVERHEAD_TOKENS + template_tokens).max(16)
}

fn template_tokens(settings: &MainServiceSettings, template: &str) -> usize {
    let empty = render(template, minijinja::context! { text => "", summaries => "", part => 1, parts => 1, count => 1, instructions => "" }).unwrap_or_default();
    estimate_tokens(&empty, settings.chars_per_token)
}

/// The parts a document is cut into for `model`.
pub fn parts(settings: &MainServiceSettings, model: &str, document: &str) -> Vec<String> {
    let s = &settings.summarize;
    let budget = text_budget(settings, model, template_tokens(settings, &s.map_prompt));
    let tokens = (s.chunk_tokens as usize).min(budget);
    format::split_document(document, chars_for_tokens(tokens, settings.chars_per_token))
}

/// Groups of consecutive summaries, each closed when the next would take it over `budget`
/// tokens and it has two members already. Every group has at least two (when there are two),
/// so each round of combining shrinks the list; that is worth more than the budget, so a group
/// can exceed it (members over it alone, or a last lone summary joining the group before).
pub fn groups(summaries: Vec<String>, budget: usize, chars_per_token: f64) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut tokens = 0;
    for s in summaries {
        let t = estimate_tokens(&s, chars_per_token) + 1;
        if current.len() >= 2 && tokens + t > budget {
            out.push(std::mem::take(&mut current));
            tokens = 0;
        }
        tokens += t;
        current.push(s);
    }
    if current.len() == 1 && !out.is_empty() {
        out.last_mut().expect("not empty").append(&mut current);
    } else if !current.is_empty() {
        out.push(current);
    }
    out
}

struct Job<'a> {
    state: &'a AppState,
    req: &'a contract::SummarizeRequest,
    trace: TraceContext,
    usage: Usage,
}

impl Job<'_> {
    fn request(
        &self,
        prompt: String,
        stream: bool,
        partial: bool,
    ) -> Result<GenerateRequest, ServiceError> {
        let mut options: Options = self.req.options.clone().unwrap_or_default();
        if partial {
            options.num_predict = Some(self.state.settings.summarize.partial_num_predict);
        }
        let req = GenerateRequest {
            model: self.req.model.clone(),
            messages: vec![Message::user(prompt)],
            options: Some(options),
            stream,
            ..Default::default()
        };
        let req = ValidatedRequest::try_from((req, &self.state.settings))?;
        Ok(format::prepare(req, &self.state.settings, self.trace.clone()))
    }

    fn instructions(&self) -> &str {
        self.req.instructions.as_deref().unwrap_or("")
    }

    fn prompt(&self, template: &str, ctx: minijinja::Value) -> Result<String, ServiceError> {
        render(template, ctx).map_err(|e| {
            ServiceError::new(
                contract::ErrorKind::Internal,
                format!("a summarize prompt template does not render: {e}"),
            )
        })
    }

    /// One partial summary (a map or combine invocation).
    async fn partial(
        &self,
        prompt: String,
        phase: &'static str,
    ) -> Result<(String, Usage), ServiceError> {
        let req = self.request(prompt, false, true)?;
        self.state.metrics.summarize_invocation(phase);
        let resp = self.state.invoker.invoke(&req).await?;
        Ok((
            resp.message.map(|m| m.content).unwrap_or_default().trim().to_owned(),
            resp.usage.unwrap_or_default(),
        ))
    }

    /// Runs partial invocations, `map_concurrency` at a time, in order.
    async fn all(
        &mut self,
        prompts: Vec<String>,
        phase: &'static str,
    ) -> Result<Vec<String>, ServiceError> {
        let this = &*self;
        let results: Vec<(String, Usage)> = futures::stream::iter(prompts)
            .map(|p| this.partial(p, phase))
            .buffered(self.state.settings.summarize.map_concurrency.max(1))
            .try_collect()
            .await?;
        let mut out = Vec::with_capacity(results.len());
        for (text, u) in results {
            self.usage.prompt_tokens += u.prompt_tokens;
            self.usage.completion_tokens += u.completion_tokens;
            out.push(text);
        }
        Ok(out)
    }
}

fn add_usage(resp: &mut GenerateResponse, extra: Usage) {
    let u = resp.usage.get_or_insert_with(Default::default);
    u.prompt_tokens += extra.prompt_tokens;
    u.completion_tokens += extra.completion_tokens;
}

/// 413 for a document that would take more than `max_parts` map invocations.
fn too_many_parts(parts: usize, max_parts: usize) -> ServiceError {
    let message = format!("the document is too long to summarize: it makes {parts} parts, and the limit is {max_parts} (summarize.max_parts)");
    ServiceError::new(contract::ErrorKind::InvalidRequest, message)
        .with_status(axum::http::StatusCode::PAYLOAD_TOO_LARGE)
}

/// Summarizes the document. The answer's usage counts every invocation made for it.
pub async fn summarize(
    state: &AppState,
    req: &ValidatedSummarize,
    trace: TraceContext,
) -> Result<Answer, ServiceError> {
    let req = req.get();
    let settings = &state.settings;
    let s = &settings.summarize;
    let mut job = Job { state, req, trace, usage: Usage::default() };
    let parts = parts(settings, &req.model, &req.document);
    if parts.len() > s.max_parts {
        return Err(too_many_parts(parts.len(), s.max_parts));
    }
    let trace_id = job.trace.traceparent.split('-').nth(1).unwrap_or("").to_owned();
    tracing::info!(trace_id = %trace_id, model = %req.model, parts = parts.len(), "summarizing");

    let final_prompt = if parts.len() <= 1 {
        job.prompt(
            &s.single_prompt,
            minijinja::context! { text => req.document.trim(), instructions => job.instructions() },
        )?
    } else {
        let count = parts.len();
        let prompts = parts
            .iter()
            .enumerate()
            .map(|(i, text)| job.prompt(&s.map_prompt, minijinja::context! { text => text, part => i + 1, parts => count, instructions => job.instructions() }))
            .collect::<Result<Vec<_>, _>>()?;
        let mut summaries = job.all(prompts, "map").await?;
        let budget = text_budget(settings, &req.model, template_tokens(settings, &s.reduce_prompt));
        loop {
            let joined_tokens: usize =
                summaries.iter().map(|x| estimate_tokens(x, settings.chars_per_token) + 1).sum();
            if joined_tokens <= budget || summaries.len() <= 2 {
                break;
            }
            let groups = groups(summaries, budget, settings.chars_per_token);
            tracing::debug!(trace_id = %trace_id, groups = groups.len(), "combining partial summaries in groups");
            let prompts = groups
                .iter()
                .map(|g| job.prompt(&s.reduce_prompt, minijinja::context! { summaries => g.join("\n\n"), count => g.len(), instructions => "" }))
                .collect::<Result<Vec<_>, _>>()?;
            summaries = job.all(prompts, "combine").await?;
        }
        job.prompt(&s.reduce_prompt, minijinja::context! { summaries => summaries.join("\n\n"), count => summaries.len(), instructions => job.instructions() })?
    };

    let last = job.request(final_prompt, req.stream, false)?;
    state.metrics.summarize_invocation("reduce");
    let earlier = job.usage;
    if req.stream {
        let chunks = state.invoker.invoke_stream(&last).await?;
        let chunks = chunks.map(move |mut c| {
            if let Some(ChunkKind::Done(done)) = &mut c.kind {
                add_usage(done, earlier);
            }
            c
        });
        Ok(Answer::Stream(Box::pin(chunks)))
    } else {
        let mut resp = state.invoker.invoke(&last).await?;
        add_usage(&mut resp, earlier);
        Ok(Answer::Whole(resp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_fit_the_model_budget() {
        let mut settings = MainServiceSettings::default();
        settings.default_model.context_tokens = 300;
        settings.default_model.answer_reserve_tokens = 100;
        let doc = "A sentence of some length. ".repeat(200);
        let parts = parts(&settings, "m", &doc);
        let template = template_tokens(&settings, &settings.summarize.map_prompt);
        assert!(parts.len() > 5, "{}", parts.len());
        for p in &parts {
            assert!(
                estimate_tokens(p, 4.0) + template + MESSAGE_OVERHEAD_TOKENS <= 200,
                "{}",
                p.len()
            );
        }
        // chunk_tokens caps the part size below the budget.
        settings.summarize.chunk_tokens = 50;
        assert!(super::parts(&settings, "m", &doc).iter().all(|p| p.chars().count() <= 200));
    }

    #[test]
    fn groups_close_at_the_budget_but_always_pair_up() {
        let s = |n: usize| "x".repeat(n * 4);
        let g = groups(vec![s(10), s(10), s(10), s(10), s(10)], 25, 4.0);
        // Two fill the budget; the fifth, alone, joins the group before (33 tokens of 25).
        assert_eq!(g.iter().map(Vec::len).collect::<Vec<_>>(), [2, 3]);
        // Each one alone is over the budget: still pairs.
        let g = groups(vec![s(50), s(50), s(50), s(50)], 25, 4.0);
        assert_eq!(g.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2]);
        let g = groups(vec![s(1), s(1), s(1)], 100, 4.0);
        assert_eq!(g.len(), 1);
    }
}
