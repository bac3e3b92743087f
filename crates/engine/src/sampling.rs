//! Builds a llama.cpp sampler chain from Ollama-style options, in the order Ollama's runner
//! applies them: penalties, top-k, top-p, min-p, temperature, then the random draw. The
//! repetition penalty is our own ([`RepeatPenalty`]); the rest are llama.cpp's samplers.

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;

use std::sync::Arc;

use crate::penalty::RepeatPenalty;
use crate::prefix_index::PrefixIndex;
use crate::request::{EngineError, SamplingParams};

/// One request's sampling state: the repetition penalty's window, llama.cpp's chain and, for
/// constrained output, the grammar.
pub(crate) struct Sampler {
    penalty: Option<RepeatPenalty>,
    chain: LlamaSampler,
    /// Checked against the chain's pick first, and applied to more of the vocabulary only when
    /// it rejects that pick, as llama.cpp's own sampler does: filtering 49k candidates through
    /// a grammar every token cost more than half the generation speed.
    grammar: Option<LlamaSampler>,
    /// One candidate for that check, or the short tokens [`PrefixIndex::probe`] tries.
    probe: LlamaTokenDataArray,
    /// Rules out most of the vocabulary before the grammar filters it (`None`: the grammar
    /// filters every token, as the tests' reference does).
    index: Option<Arc<PrefixIndex>>,
    /// The short tokens the grammar accepted, from the last probe.
    passed: Vec<bool>,
    /// The logits with the repetition penalty applied, for picking out the possible tokens.
    penalised: Vec<f32>,
    /// When more than a [`SHORTLIST`] of tokens remain possible, the grammar is tried on the
    /// highest of them first; the pick from there is the chain's pick over all of them when at
    /// least this many pass (`None`: the chain keeps more than a shortlist, so always all).
    enough: Option<usize>,
    /// Picks the shortlist decided, for tests to see it used.
    #[cfg(test)]
    shortlisted: usize,
    /// Constrained picks where the index ruled out nine tokens in ten.
    #[cfg(test)]
    narrowed: usize,
}

/// How many of the highest logits the grammar is tried on before all possible tokens. The
/// chain keeps at most top-k tokens (greedy: one); every token outside the shortlist has a
/// lower logit than all inside it, so when top-k of the shortlist pass the grammar, they are
/// the top-k the chain would keep from the whole constrained vocabulary, and the pick is the
/// same (ties at the cut aside). Where the grammar allows much (inside a JSON string), this
/// decides; where it allows little (the tool JSON's keys and punctuation), the index has
/// already left fewer candidates than this.
const SHORTLIST: usize = 1024;

impl Sampler {
    /// Picks the next token from the logits of batch row `row`. `candidates` is scratch space
    /// kept by the caller across tokens, so that sampling does not allocate.
    pub(crate) fn sample(
        &mut self,
        ctx: &LlamaContext<'_>,
        row: i32,
        candidates: &mut LlamaTokenDataArray,
    ) -> LlamaToken {
        self.sample_logits(ctx.get_logits_ith(row), candidates)
    }

    fn sample_logits(
        &mut self,
        logits: &[f32],
        candidates: &mut LlamaTokenDataArray,
    ) -> LlamaToken {
        Self::fill(self.penalty.as_ref(), logits, candidates);
        let mut token = self.select(candidates);
        if self.grammar.is_some() && !self.grammar_allows(token, logits) {
            token = self.constrained_pick(logits, candidates);
        }
        if let Some(g) = &mut self.grammar {
            g.accept(token);
        }
        self.chain.accept(token);
        if let Some(p) = &mut self.penalty {
            p.accept(token);
        }
        token
    }
}

impl Sampler {
    /// The chain's pick among the tokens the grammar accepts. Those the [`PrefixIndex`] rules
    /// out are dropped first (the grammar would refuse them); when many remain, the grammar is
    /// tried on the [`SHORTLIST`] highest of them, and on all only when that cannot decide.
    fn constrained_pick(
        &mut self,
        logits: &[f32],
        candidates: &mut LlamaTokenDataArray,
    ) -> LlamaToken {
        self.probe();
        self.fill_possible(logits, candidates);
        if candidates.data.len() > SHORTLIST {
            if let Some(token) = self.pick_from_shortlist(candidates) {
                return token;
            }
            if candidates.data.len() <= SHORTLIST {
                // Cut to the shortlist, which could not decide.
                self.fill_possible(logits, candidates);
            }
        }
        if let Some(g) = &mut self.grammar {
            candidates.apply_sampler(g);
        }
        self.select(candidates)
    }

    /// Tries the grammar on the index's short tokens, for [`Sampler::fill_possible`].
    fn probe(&mut self) {
        if let (Some(g), Some(index)) = (&mut self.grammar, &self.index) {
            index.probe(g, &mut self.probe, &mut self.passed);
        }
    }

    /// Every token the last [`Sampler::probe`] leaves possible, with its logit (the repetition
    /// penalty applied).
    fn fill_possible(&mut self, logits: &[f32], candidates: &mut LlamaTokenDataArray) {
        let Some(index) = &self.index else {
            return Self::fill(self.penalty.as_ref(), logits, candidates);
        };
        self.penalised.clear();
        self.penalised.extend_from_slice(logits);
        if let Some(p) = &self.penalty {
            p.apply_to_logits(&mut self.penalised);
        }
        candidates.data.clear();
        candidates.selected = None;
        candidates.sorted = false;
        let penalised = &self.penalised;
        index.possible(&self.passed, |t| {
            candidates.data.push(LlamaTokenData::new(
                LlamaToken(t as i32),
                penalised[t as usize],
                0.0,
            ))
        });
        #[cfg(test)]
        {
            self.narrowed += usize::from(candidates.data.len() < logits.len() / 10);
        }
    }

    /// The pick from the [`SHORTLIST`] highest `candidates` alone, when enough of them pass
    /// the grammar for it to be the pick from all of them. `None` leaves `candidates` as they
    /// were when the shortlist was not tried, and cut to it when it was.
    fn pick_from_shortlist(&mut self, candidates: &mut LlamaTokenDataArray) -> Option<LlamaToken> {
        let enough = self.enough?;
        let grammar = self.grammar.as_mut()?;
        candidates
            .data
            .select_nth_unstable_by(SHORTLIST - 1, |a, b| b.logit().total_cmp(&a.logit()));
        candidates.data.truncate(SHORTLIST);
        candidates.apply_sampler(grammar);
        let passed = candidates.data.iter().filter(|d| d.logit().is_finite()).count();
        if passed < enough {
            return None;
        }
        #[cfg(test)]
        {
            self.shortlisted += 1;
        }
        Some(self.select(candidates))
    }

    /// Every token with its logit, the repetition penalty applied.
    fn fill(penalty: Option<&RepeatPenalty>, logits: &[f32], candidates: &mut LlamaTokenDataArray) {
        candidates.data.clear();
        candidates.data.extend(
            logits
                .iter()
                .zip(0..)
                .map(|(logit, id)| LlamaTokenData::new(LlamaToken(id), *logit, 0.0)),
        );
        candidates.selected = None;
        candidates.sorted = false;
        // Penalties and grammar commute (a grammar sets what it forbids to -inf, which a penalty
        // keeps at -inf), so the penalty can go first, while candidates are in vocabulary order.
        if let Some(p) = penalty {
            p.apply(&mut candidates.data);
        }
    }

    /// The chain's pick from `candidates`.
    fn select(&mut self, candidates: &mut LlamaTokenDataArray) -> LlamaToken {
        candidates.apply_sampler(&mut self.chain);
        // Every chain ends in a sampler that selects (greedy or dist).
        candidates
            .selected_token()
            .unwrap_or_else(|| candidates.data.first().map_or(LlamaToken(0), LlamaTokenData::id))
    }

    fn grammar_allows(&mut self, token: LlamaToken, logits: &[f32]) -> bool {
        let Some(g) = &mut self.grammar else { return true };
        let logit =
            usize::try_from(token.0).ok().and_then(|i| logits.get(i)).copied().unwrap_or(0.0);
        self.probe.data.clear();
        self.probe.data.push(LlamaTokenData::new(token, logit, 0.0));
        self.probe.selected = None;
        self.probe.sorted = false;
        self.probe.apply_sampler(g);
        self.probe.data.first().is_some_and(|d| d.logit().is_finite())
    }
}

/// Validates options a client could get wrong, before any work is queued.
pub fn validate(p: &SamplingParams) -> Result<(), EngineError> {
    let bad = |what: &str| Err(EngineError::InvalidRequest(what.to_owned()));
    if !p.temperature.is_finite() || p.temperature < 0.0 {
        return bad("temperature must be a finite number >= 0");
    }
    if !(0.0..=1.0).contains(&p.top_p) {
        return bad("top_p must be between 0 and 1");
    }
    if !(0.0..=1.0).contains(&p.min_p) {
        return bad("min_p must be between 0 and 1");
    }
    if !p.repeat_penalty.is_finite() || p.repeat_penalty <= 0.0 {
        return bad("repeat_penalty must be a finite number > 0");
    }
    if p.top_k < 0 {
        return bad("top_k must be >= 0");
    }
    if p.repeat_last_n < -1 {
        return bad("repeat_last_n must be >= -1");
    }
    Ok(())
}

/// What the output must follow: a GBNF grammar with a `root` rule, and the model's
/// [`PrefixIndex`] to apply it quickly.
pub(crate) struct Constraint<'a> {
    pub gbnf: &'a str,
    pub index: Arc<PrefixIndex>,
}

/// The sampler chain, constrained when a constraint is given.
pub(crate) fn build(
    model: &LlamaModel,
    sampling: &SamplingParams,
    constraint: Option<Constraint<'_>>,
    n_ctx: u32,
) -> Result<Sampler, EngineError> {
    let Some(c) = constraint else { return Ok(with_grammar(None, sampling, n_ctx)) };
    let grammar = LlamaSampler::grammar(model, c.gbnf, "root")
        .map_err(|e| EngineError::Inference(format!("output grammar: {e}")))?;
    let mut sampler = with_grammar(Some(grammar), sampling, n_ctx);
    sampler.index = Some(c.index);
    Ok(sampler)
}

fn with_grammar(grammar: Option<LlamaSampler>, s: &SamplingParams, n_ctx: u32) -> Sampler {
    let mut chain = Vec::with_capacity(6);
    let window = if s.repeat_last_n == -1 {
        n_ctx as usize
    } else {
        usize::try_from(s.repeat_last_n).unwrap_or(0)
    };
    let penalty = RepeatPenalty::new(s.repeat_penalty, window);
    if s.temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
    } else {
        if s.top_k > 0 {
            chain.push(LlamaSampler::top_k(s.top_k));
        }
        if s.top_p < 1.0 {
            chain.push(LlamaSampler::top_p(s.top_p, 1));
        }
        if s.min_p > 0.0 {
            chain.push(LlamaSampler::min_p(s.min_p, 1));
        }
        chain.push(LlamaSampler::temp(s.temperature));
        chain.push(LlamaSampler::dist(s.seed.unwrap_or_else(rand::random)));
    }
    let enough = if s.temperature <= 0.0 {
        Some(1)
    } else {
        usize::try_from(s.top_k).ok().filter(|k| (1..=SHORTLIST / 2).contains(k))
    };
    Sampler {
        penalty,
        chain: LlamaSampler::chain_simple(chain),
        grammar,
        probe: LlamaTokenDataArray::new(Vec::with_capacity(1), false),
        index: None,
        passed: Vec::new(),
        penalised: Vec::new(),
        enough,
        #[cfg(test)]
        shortlisted: 0,
        #[cfg(test)]
        narrowed: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Logits that favour a handful of tokens, varying with the step, so that the penalty
    /// keeps changing which token wins.
    fn logits(step: usize, n_vocab: usize) -> Vec<f32> {
        (0..n_vocab)
            .map(|i| {
                (((i * 7919 + step * 104_729) % 1000) as f32 / 100.0)
                    - if i < 12 { 0.0 } else { 8.0 }
            })
            .collect()
    }

    /// Our penalty before llama.cpp's chain picks exactly what llama.cpp's own `penalties`
    /// sampler at the head of the chain picks, token after token.
    #[test]
    fn same_tokens_as_llama_cpps_penalties_sampler() {
        let n_vocab = 3000;
        for (temperature, repeat_last_n) in [(0.8, 64), (0.0, 64), (1.0, 3), (0.8, -1)] {
            let params = SamplingParams {
                temperature,
                repeat_last_n,
                repeat_penalty: 1.3,
                seed: Some(7),
                ..Default::default()
            };
            let mut ours = with_grammar(None, &params, 256);
            let window = if repeat_last_n == -1 { 256 } else { repeat_last_n };
            let mut reference_chain = vec![LlamaSampler::penalties(
                n_vocab as i32,
                window,
                params.repeat_penalty,
                0.0,
                0.0,
            )];
            if temperature <= 0.0 {
                reference_chain.push(LlamaSampler::greedy());
            } else {
                reference_chain.extend([
                    LlamaSampler::top_k(params.top_k),
                    LlamaSampler::top_p(params.top_p, 1),
                    LlamaSampler::temp(temperature),
                    LlamaSampler::dist(7),
                ]);
            }
            let mut reference = LlamaSampler::chain_simple(reference_chain);
            let mut scratch = LlamaTokenDataArray::new(Vec::new(), false);
            let mut distinct = std::collections::BTreeSet::new();
            for step in 0..300 {
                let l = logits(step, n_vocab);
                let mut all = LlamaTokenDataArray::from_iter(
                    l.iter()
                        .zip(0..)
                        .map(|(logit, id)| LlamaTokenData::new(LlamaToken(id), *logit, 0.0)),
                    false,
                );
                all.apply_sampler(&mut reference);
                let expected = all.selected_token().unwrap();
                reference.accept(expected);
                assert_eq!(
                    ours.sample_logits(&l, &mut scratch),
                    expected,
                    "step {step}, {params:?}"
                );
                distinct.insert(expected);
            }
            assert!(distinct.len() > 3, "the penalty should move the choice around: {distinct:?}");
        }
    }

    /// With a real vocabulary and grammar: the picks of the shortlist and of the prefix index
    /// are those of the grammar over the whole vocabulary, token for token, greedy and sampled.
    #[test]
    fn the_shortlist_and_the_prefix_index_pick_what_the_whole_vocabulary_picks() {
        let resolved = crate::Resolver::new(crate::ResolverConfig::default())
            .pull(crate::DEFAULT_MODEL, &mut |_| {})
            .expect("the default model");
        let backend = crate::engine::backend().unwrap();
        let model =
            LlamaModel::load_from_file(backend, &resolved.path, &Default::default()).unwrap();
        let tools = crate::Tools {
            specs: vec![crate::ToolSpec {
                name: "get_weather".into(),
                description: String::new(),
                parameters: serde_json::json!({"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city", "days"]}),
            }],
            choice: crate::ToolChoice::Required,
            parallel: false,
        };
        let tool_call = crate::tools::Dialect::Generic
            .grammar(&tools, &crate::OutputFormat::Text)
            .unwrap()
            .unwrap();
        // Long strings: most of the vocabulary passes, so the shortlist has enough to decide.
        let strings = crate::schema::grammar(
            &serde_json::json!({"type": "array", "items": {"type": "string"}}),
        )
        .unwrap();
        let n_vocab = model.n_vocab() as usize;
        // Newline tokens ("Ċ" in the byte-level vocabulary) lead the logits: a JSON string
        // refuses them, so the chain's pick keeps being rejected, as a model's often is.
        let vocab = model.vocab();
        let newline: Vec<bool> = (0..n_vocab)
            .map(|i| {
                vocab
                    .text(LlamaToken(i as i32))
                    .is_some_and(|t| t.to_string_lossy().contains('\u{10A}'))
            })
            .collect();
        assert!(newline.iter().filter(|n| **n).count() > 10);
        let index = Arc::new(PrefixIndex::new(&model));
        let (mut shortlisted, mut narrowed) = (0, 0);
        for (grammar, temperature) in
            [(&tool_call, 0.0), (&tool_call, 0.8), (&strings, 0.0), (&strings, 0.8)]
        {
            let params = SamplingParams {
                temperature,
                seed: Some(11),
                repeat_penalty: 1.1,
                ..Default::default()
            };
            let constraint = || Some(Constraint { gbnf: grammar, index: index.clone() });
            let mut fast = build(&model, &params, constraint(), 512).unwrap();
            let mut full = build(&model, &params, constraint(), 512).unwrap();
            full.enough = None;
            full.index = None;
            let mut scratch = LlamaTokenDataArray::new(Vec::new(), false);
            for step in 0..60 {
                // Distinct logits (a permutation modulo a prime above the vocabulary size): with
                // ties at the cut, top-k may keep either of two equal tokens.
                let l: Vec<f32> = (0..n_vocab)
                    .map(|i| {
                        (((i * 7_919 + step * 40_503) % 1_000_003) as f32) / 50_000.0
                            + if newline[i] { 30.0 } else { 0.0 }
                    })
                    .collect();
                let token = fast.sample_logits(&l, &mut scratch);
                assert_eq!(
                    token,
                    full.sample_logits(&l, &mut scratch),
                    "step {step}, temperature {temperature}"
                );
            }
            assert_eq!((full.shortlisted, full.narrowed), (0, 0));
            shortlisted += fast.shortlisted;
            narrowed += fast.narrowed;
        }
        assert!(shortlisted > 20, "the shortlist decided only {shortlisted} picks");
        assert!(narrowed > 20, "the index narrowed only {narrowed} picks");
    }
}
