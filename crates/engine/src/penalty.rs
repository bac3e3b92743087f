//! The repetition penalty, applied to the candidates by token id.
//!
//! llama.cpp's `penalties` sampler computes the same thing, but by looking every one of the
//! vocabulary's candidates up in a hash map of recent tokens: 49k lookups per generated token
//! on a small model's vocabulary, about a tenth of a token's whole decode time on this class of
//! machine. Before any sampler has reordered them, candidate `i` is token `i`, so the few
//! recent tokens can be penalised directly; the arithmetic is llama.cpp's, so the result (and a
//! seeded generation's text) is the same.

use std::collections::{HashMap, VecDeque};

use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::LlamaToken;

#[derive(Debug)]
pub(crate) struct RepeatPenalty {
    penalty: f32,
    /// How many of the latest sampled tokens are penalised.
    window: usize,
    recent: VecDeque<LlamaToken>,
    /// Occurrences of each token in `recent`; a token is penalised once however often it recurs.
    counts: HashMap<LlamaToken, u32>,
}

impl RepeatPenalty {
    /// `None` when the penalty would change nothing.
    pub(crate) fn new(penalty: f32, window: usize) -> Option<Self> {
        if penalty == 1.0 || window == 0 {
            return None;
        }
        // The window is sized up front so that sampling does not allocate as it fills; a window
        // of the whole context only ever holds what was generated, so it starts smaller.
        let capacity = window.min(1024);
        Some(RepeatPenalty {
            penalty,
            window,
            recent: VecDeque::with_capacity(capacity),
            counts: HashMap::with_capacity(capacity),
        })
    }

    /// Penalises the recent tokens among `candidates`, which must still be in vocabulary order
    /// (candidate `i` is token `i`).
    pub(crate) fn apply(&self, candidates: &mut [LlamaTokenData]) {
        for token in self.counts.keys() {
            let Some(c) = usize::try_from(token.0).ok().and_then(|i| candidates.get_mut(i)) else {
                continue;
            };
            debug_assert_eq!(c.id(), *token, "candidates are not in vocabulary order");
            c.set_logit(self.penalise(c.logit()));
        }
    }

    fn penalise(&self, logit: f32) -> f32 {
        // Dividing a negative logit would make the token more likely; llama.cpp multiplies it.
        if logit <= 0.0 {
            logit * self.penalty
        } else {
            logit / self.penalty
        }
    }

    /// Penalises the recent tokens in `logits`, indexed by token.
    pub(crate) fn apply_to_logits(&self, logits: &mut [f32]) {
        for token in self.counts.keys() {
            let Some(l) = usize::try_from(token.0).ok().and_then(|i| logits.get_mut(i)) else {
                continue;
            };
            *l = self.penalise(*l);
        }
    }

    /// Records a sampled token, forgetting the oldest once the window is full.
    pub(crate) fn accept(&mut self, token: LlamaToken) {
        if self.recent.len() >= self.window {
            if let Some(old) = self.recent.pop_front() {
                if let Some(n) = self.counts.get_mut(&old) {
                    *n -= 1;
                    if *n == 0 {
                        self.counts.remove(&old);
                    }
                }
            }
        }
        self.recent.push_back(token);
        *self.counts.entry(token).or_insert(0) += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidates(logits: &[f32]) -> Vec<LlamaTokenData> {
        logits
            .iter()
            .enumerate()
            .map(|(i, l)| LlamaTokenData::new(LlamaToken(i as i32), *l, 0.0))
            .collect()
    }

    fn logits(c: &[LlamaTokenData]) -> Vec<f32> {
        c.iter().map(LlamaTokenData::logit).collect()
    }

    #[test]
    fn disabled_when_it_would_change_nothing() {
        assert!(RepeatPenalty::new(1.0, 64).is_none());
        assert!(RepeatPenalty::new(1.1, 0).is_none());
    }

    #[test]
    fn penalises_recent_tokens_once_each_in_the_direction_of_less_likely() {
        let mut p = RepeatPenalty::new(2.0, 3).unwrap();
        for t in [1, 1, 3] {
            p.accept(LlamaToken(t));
        }
        let mut c = candidates(&[1.0, 4.0, 1.0, -1.0, 5.0]);
        p.apply(&mut c);
        assert_eq!(logits(&c), [1.0, 2.0, 1.0, -2.0, 5.0]);
    }

    #[test]
    fn forgets_tokens_that_leave_the_window() {
        let mut p = RepeatPenalty::new(2.0, 2).unwrap();
        for t in [0, 1, 1] {
            p.accept(LlamaToken(t));
        }
        let mut c = candidates(&[4.0, 4.0]);
        p.apply(&mut c);
        assert_eq!(logits(&c), [4.0, 2.0], "token 0 left the window");
        p.accept(LlamaToken(0));
        p.accept(LlamaToken(0));
        let mut c = candidates(&[4.0, 4.0]);
        p.apply(&mut c);
        assert_eq!(logits(&c), [2.0, 4.0], "token 1 left the window");
    }

    #[test]
    fn ignores_tokens_outside_the_candidates() {
        let mut p = RepeatPenalty::new(2.0, 4).unwrap();
        p.accept(LlamaToken(7));
        let mut c = candidates(&[4.0]);
        p.apply(&mut c);
        assert_eq!(logits(&c), [4.0]);
    }
}
