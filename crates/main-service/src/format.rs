//! Turning a validated request into what the Lambda function receives: the model's system
//! prompt where the caller gave none, the model's default options where the caller left them
//! unset, and a history trimmed to the model's context budget.

use contract::{GenerateRequest, Message, Role, TraceContext};

use crate::config::{MainServiceSettings, ModelSettings};
use crate::domain::ValidatedRequest;

/// Tokens counted for each message on top of its text (role markers of chat templates).
pub const MESSAGE_OVERHEAD_TOKENS: usize = 4;

/// A token estimate from the text length: characters / chars-per-token, rounded up.
pub fn estimate_tokens(text: &str, chars_per_token: f64) -> usize {
    let chars = text.chars().count() as f64;
    (chars / chars_per_token.max(0.1)).ceil() as usize
}

/// The inverse: how many characters fit in `tokens`.
pub fn chars_for_tokens(tokens: usize, chars_per_token: f64) -> usize {
    (tokens as f64 * chars_per_token.max(0.1)).floor() as usize
}

/// Renders a minijinja template with the given context.
pub fn render(template: &str, ctx: minijinja::Value) -> Result<String, minijinja::Error> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
    env.render_str(template, ctx)
}

/// The request the Lambda function receives for `req`.
pub fn prepare(
    req: ValidatedRequest,
    settings: &MainServiceSettings,
    trace: TraceContext,
) -> GenerateRequest {
    let model = settings.model(&req.get().model);
    let mut req = req.into_inner();
    let mut options = req.options.take().unwrap_or_default();
    model.options.fill(&mut options);
    req.options = Some(options);
    req.trace = Some(trace);
    if req.raw_prompt.is_some() {
        return req;
    }
    let has_system = req.system.as_deref().is_some_and(|s| !s.is_empty())
        || req.messages.iter().any(|m| m.role() == Role::System);
    if !has_system && !model.system_prompt.is_empty() {
        let date = chrono::Utc::now().format("%Y-%m-%d").to_string();
        match render(
            &model.system_prompt,
            minijinja::context! { model => req.model.clone(), date => date },
        ) {
            Ok(s) if !s.trim().is_empty() => req.system = Some(s),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(model = %req.model, error = %e, "the system prompt template does not render; sending none")
            }
        }
    }
    let dropped = trim_history(&mut req, &model, settings.chars_per_token);
    if dropped > 0 {
        tracing::debug!(model = %req.model, dropped, "dropped the oldest messages to fit the context");
    }
    req
}

/// Drops the oldest non-system messages until the conversation fits the model's context minus
/// the answer's reserve. System messages and the newest message always stay; the conversation
/// after trimming starts with a user message (Bedrock requires it). Returns how many went.
pub fn trim_history(
    req: &mut GenerateRequest,
    model: &ModelSettings,
    chars_per_token: f64,
) -> usize {
    let budget =
        (model.context_tokens as usize).saturating_sub(model.answer_reserve_tokens as usize);
    let cost = |m: &Message| estimate_tokens(&m.content, chars_per_token) + MESSAGE_OVERHEAD_TOKENS;
    let mut total: usize = req
        .system
        .as_deref()
        .map_or(0, |s| estimate_tokens(s, chars_per_token) + MESSAGE_OVERHEAD_TOKENS);
    total += req.messages.iter().map(cost).sum::<usize>();
    let last = req.messages.len().saturating_sub(1);
    let mut keep = vec![true; req.messages.len()];
    let mut i = 0;
    while total > budget && i < last {
        if req.messages[i].role() != Role::System {
            keep[i] = false;
            total -= cost(&req.messages[i]);
        }
        i += 1;
    }
    // A conversation must not start with the assistant: drop answers whose question went.
    if keep.iter().any(|k| !k) {
        for (j, m) in req.messages.iter().enumerate().take(last) {
            if !keep[j] || m.role() == Role::System {
                continue;
            }
            if m.role() == Role::User {
                break;
            }
            keep[j] = false;
        }
    }
    let before = req.messages.len();
    let mut it = keep.iter();
    req.messages.retain(|_| *it.next().unwrap_or(&true));
    before - req.messages.len()
}

/// Splits a document into parts of at most `max_chars` characters, preferring to cut between
/// paragraphs, then lines, then sentences, then words; empty parts are skipped.
pub fn split_document(doc: &str, max_chars: usize) -> Vec<String> {
    let max_chars = max_chars.max(16);
    let mut parts = Vec::new();
    let mut rest = doc.trim();
    while !rest.is_empty() {
        if rest.chars().count() <= max_chars {
            parts.push(rest.to_owned());
            break;
        }
        // Byte offset of the `max_chars`-th character.
        let limit = rest.char_indices().nth(max_chars).map_or(rest.len(), |(i, _)| i);
        let window = &rest[..limit];
        let floor = window.len() / 2;
        let cut = ["\n\n", "\n", ". ", "? ", "! ", " "]
            .iter()
            .find_map(|sep| window.rfind(sep).filter(|&at| at >= floor).map(|at| at + sep.len()))
            .unwrap_or(limit);
        let (part, tail) = rest.split_at(cut);
        let part = part.trim();
        if !part.is_empty() {
            parts.push(part.to_owned());
        }
        rest = tail.trim_start();
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelOverrides;

    fn model(context: u32, reserve: u32) -> ModelSettings {
        ModelSettings {
            context_tokens: context,
            answer_reserve_tokens: reserve,
            ..Default::default()
        }
    }

    fn conversation(n: usize, words: usize) -> GenerateRequest {
        let mut messages = vec![Message::system("be brief")];
        for i in 0..n {
            let text = format!("{i} {}", "word ".repeat(words));
            messages.push(if i % 2 == 0 { Message::user(text) } else { Message::assistant(text) });
        }
        GenerateRequest { model: "m".into(), messages, ..Default::default() }
    }

    #[test]
    fn trimming_keeps_the_system_prompt_and_the_newest_messages() {
        // Each turn is ~ (2 + 5*10)/4 + 4 = 17 tokens; a budget of 60 keeps 3 turns at most.
        let mut req = conversation(9, 10);
        let dropped = trim_history(&mut req, &model(100, 40), 4.0);
        assert!(dropped > 0);
        assert_eq!(req.messages[0].role(), Role::System);
        assert_eq!(req.messages[1].role(), Role::User, "starts with a user turn");
        assert!(req.messages.last().unwrap().content.starts_with("8 "));
        let total: usize = req
            .messages
            .iter()
            .map(|m| estimate_tokens(&m.content, 4.0) + MESSAGE_OVERHEAD_TOKENS)
            .sum();
        assert!(total <= 60, "{total}");
        // Everything fits: nothing goes.
        let mut req = conversation(3, 2);
        assert_eq!(trim_history(&mut req, &model(2048, 512), 4.0), 0);
        // The newest message stays even when it alone is too big.
        let mut req = conversation(1, 1000);
        assert_eq!(trim_history(&mut req, &model(100, 40), 4.0), 0);
        assert_eq!(req.messages.len(), 2);
    }

    #[test]
    fn prepare_fills_the_system_prompt_and_default_options() {
        let mut s = MainServiceSettings::default();
        s.default_model.system_prompt = "You are {{ model }}. Today is {{ date }}.".into();
        s.default_model.options.temperature = Some(0.5);
        s.default_model.options.num_predict = Some(64);
        let mut o = ModelOverrides::default();
        o.options.num_predict = Some(8);
        s.models.insert("small".into(), o);
        let req = GenerateRequest {
            model: "small".into(),
            messages: vec![Message::user("hi")],
            options: Some(contract::Options { temperature: Some(1.0), ..Default::default() }),
            ..Default::default()
        };
        let v = ValidatedRequest::try_from((req, &s)).unwrap();
        let out =
            prepare(v, &s, TraceContext { traceparent: "t".into(), tracestate: String::new() });
        assert!(
            out.system.as_deref().unwrap().starts_with("You are small. Today is 20"),
            "{:?}",
            out.system
        );
        let o = out.options.unwrap();
        assert_eq!((o.temperature, o.num_predict), (Some(1.0), Some(8)));
        assert_eq!(out.trace.unwrap().traceparent, "t");
        // A caller's own system prompt wins.
        let req = GenerateRequest {
            model: "x".into(),
            messages: vec![Message::system("mine"), Message::user("hi")],
            ..Default::default()
        };
        let out =
            prepare(ValidatedRequest::try_from((req, &s)).unwrap(), &s, TraceContext::default());
        assert_eq!(out.system, None);
    }

    #[test]
    fn documents_split_at_natural_boundaries_within_the_limit() {
        let para = "This is a sentence. ".repeat(10);
        let doc = format!("{para}\n\n{para}\n\n{para}");
        let parts = split_document(&doc, 250);
        assert_eq!(parts.len(), 3, "{parts:?}");
        assert!(parts.iter().all(|p| p.chars().count() <= 250 && p.ends_with('.')));
        // No separator at all: hard cuts, nothing lost.
        let doc = "x".repeat(1000);
        let parts = split_document(&doc, 300);
        assert_eq!(parts.len(), 4);
        assert_eq!(parts.concat(), doc);
        // Multi-byte text is cut at character boundaries.
        let doc = "é".repeat(100);
        assert!(split_document(&doc, 30).iter().all(|p| p.chars().count() <= 30));
        assert!(split_document("  ", 30).is_empty());
    }
}
