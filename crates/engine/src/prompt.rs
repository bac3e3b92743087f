//! Turning a prompt into tokens: render, tokenize, and drop the oldest chat turns when it does
//! not fit. This is the slow part of a request (a 10 MB chat takes seconds), so it runs on a
//! blocking thread (`Engine::generate`) and checks a cancel flag between steps.
//!
//! Only the chat template's own markup is tokenized with special-token parsing: message
//! contents are text, so `<|im_end|>` typed by a user stays six ordinary tokens instead of
//! closing the turn. Raw prompts are parsed whole (that is what raw means).

use std::sync::atomic::{AtomicBool, Ordering};

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use crate::request::{ChatMessage, EngineError, Prompt, Role};
use crate::template::{plain_pieces, ChatTemplate, Piece};

/// What prompt preparation needs to know about the model, read once at load.
#[derive(Debug)]
pub(crate) struct Tokenizer {
    /// Text of the BOS token, to see whether a rendering already starts with it.
    bos_text: String,
    /// Longest token text in bytes: a text of `n` bytes is at least `n / longest` tokens, so
    /// a rendering far too long for the context is refused without tokenizing it.
    longest_token: usize,
    /// Texts of the tokens that special-token parsing turns into one token (control and
    /// user-defined): for the rare template that rewrites message text, and for tool texts
    /// that a template writes as markup.
    pub control_texts: Vec<String>,
}

impl Tokenizer {
    pub fn read(model: &LlamaModel) -> Tokenizer {
        let vocab = model.vocab();
        let text = |t| vocab.text(t).map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let mut longest_token = 1;
        let mut control_texts = Vec::new();
        for t in vocab.tokens() {
            let s = text(t);
            longest_token = longest_token.max(s.len());
            let special = vocab.is_control(t)
                || vocab.attr(t).contains(llama_cpp_2::token_type::LlamaTokenAttr::UserDefined);
            if special && !s.is_empty() {
                control_texts.push(s);
            }
        }
        Tokenizer { bos_text: text(vocab.bos()), longest_token, control_texts }
    }
}

/// One preparation: the model, its template, the context limit and the cancel flag.
pub(crate) struct Preparation<'a> {
    pub model: &'a LlamaModel,
    pub tokenizer: &'a Tokenizer,
    pub template: Option<&'a ChatTemplate>,
    /// The template's `tools` variable, for templates that render tools themselves.
    pub tools: Option<&'a serde_json::Value>,
    /// Tokens the prompt must stay under (it needs room for one generated token).
    pub limit: u32,
    pub truncate_chat: bool,
    pub cancel: &'a AtomicBool,
}

impl Preparation<'_> {
    pub fn tokens(&self, prompt: &Prompt) -> Result<Vec<LlamaToken>, EngineError> {
        match prompt {
            Prompt::Raw(text) => {
                if text.is_empty() {
                    return Err(EngineError::InvalidRequest("prompt must not be empty".into()));
                }
                let tokens = self.tokenize(&[Piece::Markup(text.clone())]);
                if self.fits(&tokens) {
                    Ok(tokens)
                } else {
                    Err(self.too_long(tokens.len()))
                }
            }
            Prompt::Chat(messages) => self.chat_tokens(messages),
        }
    }

    /// The whole chat if it fits; else, if allowed, the fewest oldest turns dropped (keeping
    /// the system prompt and the last message) that make it fit, found by binary search:
    /// O(n log n) in the chat's length instead of re-rendering once per dropped turn.
    fn chat_tokens(&self, messages: &[ChatMessage]) -> Result<Vec<LlamaToken>, EngineError> {
        if messages.is_empty() {
            return Err(EngineError::InvalidRequest("messages must not be empty".into()));
        }
        let whole = self.pieces(messages)?;
        if let Some(tokens) = self.try_fit(&whole)? {
            return Ok(tokens);
        }
        let too_long = || self.too_long(self.tokenize(&whole).len());
        if !self.truncate_chat {
            return Err(too_long());
        }
        let system = usize::from(messages[0].role == Role::System);
        let keep = |dropped: usize| -> Vec<ChatMessage> {
            messages[..system].iter().chain(&messages[system + dropped..]).cloned().collect()
        };
        // Dropping more turns never makes the prompt longer, so "fits" is monotone in `dropped`.
        let (mut lo, mut hi) = (1, messages.len().saturating_sub(system + 1));
        let mut best = None;
        while lo <= hi {
            let mid = lo + (hi - lo) / 2;
            match self.try_fit(&self.pieces(&keep(mid))?)? {
                Some(tokens) => {
                    best = Some((mid, tokens));
                    hi = mid - 1;
                }
                None => lo = mid + 1,
            }
        }
        match best {
            Some((dropped, tokens)) => {
                tracing::debug!(dropped, "truncated chat history to fit the context");
                Ok(tokens)
            }
            None => Err(too_long()),
        }
    }

    /// The tokens of `pieces` if they fit, `None` if not. Renderings whose byte length alone
    /// proves them too long are not tokenized.
    fn try_fit(&self, pieces: &[Piece]) -> Result<Option<Vec<LlamaToken>>, EngineError> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(EngineError::Cancelled);
        }
        let bytes: usize = pieces.iter().map(|p| p.as_str().len()).sum();
        if bytes / self.tokenizer.longest_token >= self.limit as usize {
            return Ok(None);
        }
        let tokens = self.tokenize(pieces);
        Ok(self.fits(&tokens).then_some(tokens))
    }

    fn pieces(&self, messages: &[ChatMessage]) -> Result<Vec<Piece>, EngineError> {
        let Some(template) = self.template else { return Ok(plain_pieces(messages)) };
        if let Some(pieces) = template.render_pieces(messages, self.tools)? {
            return Ok(pieces);
        }
        // The template rewrites message text, so its output cannot be split into markup and
        // text. Tokenizing it whole is safe only if no message spells a control token.
        for m in messages {
            if let Some(t) =
                self.tokenizer.control_texts.iter().find(|t| m.content.contains(t.as_str()))
            {
                return Err(EngineError::InvalidRequest(format!(
                    "a message contains the control token {t:?}, and this model's chat template rewrites message text, so it cannot be sent as text; send it with raw: true to mean the token"
                )));
            }
        }
        Ok(vec![Piece::Markup(template.render(messages, self.tools)?)])
    }

    fn tokenize(&self, pieces: &[Piece]) -> Vec<LlamaToken> {
        let vocab = self.model.vocab();
        // Templates already contain the BOS text where the model wants it; otherwise the
        // model's own BOS policy applies, to the first piece only.
        let mut add_bos =
            vocab.should_add_bos() && !starts_with_markup(pieces, &self.tokenizer.bos_text);
        let mut tokens = Vec::new();
        for piece in pieces {
            let (text, special) = match piece {
                Piece::Markup(s) => (s, true),
                Piece::Text(s) => (s, false),
            };
            if text.is_empty() {
                continue;
            }
            tokens.extend(vocab.tokenize(text.as_bytes(), add_bos, special));
            add_bos = false;
        }
        tokens
    }

    fn fits(&self, tokens: &[LlamaToken]) -> bool {
        tokens.len() < self.limit as usize
    }

    fn too_long(&self, tokens: usize) -> EngineError {
        EngineError::PromptTooLong { tokens: tokens as u32, limit: self.limit }
    }
}

/// Whether the prompt opens with the template's own BOS (a BOS spelled by a message is text).
fn starts_with_markup(pieces: &[Piece], prefix: &str) -> bool {
    matches!(pieces.first(), Some(Piece::Markup(s)) if s.starts_with(prefix))
}
