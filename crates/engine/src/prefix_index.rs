//! The vocabulary indexed by each token's first one and two characters, so that a grammar can
//! be applied to the tokens that can pass it rather than to the whole vocabulary.
//!
//! A grammar accepts a token when its text can continue the output, so it accepts every prefix
//! of an accepted token's text too. Turned around: when the grammar refuses the token spelling
//! a token's first character (or first two), it refuses that token. Trying the few hundred
//! one-character tokens, then the two-character tokens whose first character passed, rules out
//! most of the vocabulary wherever the grammar allows only a few texts (a JSON key, a `{`, a
//! tool name), which is where the chain's pick is refused and the whole vocabulary used to be
//! filtered. What survives still goes through the grammar, so the result is exactly its own.

use std::collections::HashMap;

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;

/// No token spells this prefix (or the token has no usable text): it cannot be ruled out early.
const NONE: u32 = u32::MAX;

#[derive(Debug)]
pub(crate) struct PrefixIndex {
    /// Tokens whose text is one character.
    one: Vec<LlamaToken>,
    /// Tokens whose text is two characters, with the token spelling their first.
    two: Vec<(LlamaToken, u32)>,
    /// Per token: the token spelling its first character, and the one spelling its first two
    /// ([`NONE`] when there is none).
    first: Vec<u32>,
    second: Vec<u32>,
    /// Tokens by the longest prefix token they have (their first two characters' when there is
    /// one, else their first's): `members[starts[k]..starts[k + 1]]` for key token `k`.
    starts: Vec<u32>,
    members: Vec<u32>,
    /// Tokens with no prefix token: the grammar always decides these itself.
    unindexed: Vec<u32>,
}

impl PrefixIndex {
    /// Reads the vocabulary as llama.cpp's grammar sees it (pieces with special tokens
    /// spelled out). End-of-generation tokens, empty pieces and pieces that are not whole
    /// UTF-8 characters are left unindexed: the grammar decides those itself.
    pub(crate) fn new(model: &LlamaModel) -> Self {
        let vocab = model.vocab();
        let n = usize::try_from(model.n_vocab()).unwrap_or(0);
        let texts: Vec<Option<String>> = (0..n)
            .map(|i| {
                let token = LlamaToken(i as i32);
                if vocab.is_eog(token) {
                    return None;
                }
                String::from_utf8(vocab.token_to_piece(token, true, None))
                    .ok()
                    .filter(|t| !t.is_empty() && !t.starts_with('\0'))
            })
            .collect();
        Self::from_texts(&texts)
    }

    fn from_texts(texts: &[Option<String>]) -> Self {
        let mut by_text: HashMap<&str, u32> = HashMap::new();
        for (id, text) in texts.iter().enumerate() {
            if let Some(t) = text {
                by_text.entry(t.as_str()).or_insert(id as u32);
            }
        }
        let prefix = |t: &str, chars: usize| -> u32 {
            match t.char_indices().nth(chars) {
                Some((end, _)) => by_text.get(&t[..end]).copied().unwrap_or(NONE),
                // The whole text is the prefix when it has exactly `chars` characters.
                None if t.chars().count() == chars => by_text.get(t).copied().unwrap_or(NONE),
                None => NONE,
            }
        };
        let n = texts.len();
        let mut index = Self {
            one: Vec::new(),
            two: Vec::new(),
            first: vec![NONE; n],
            second: vec![NONE; n],
            starts: Vec::new(),
            members: Vec::new(),
            unindexed: Vec::new(),
        };
        for (id, text) in texts.iter().enumerate() {
            let Some(t) = text else { continue };
            index.first[id] = prefix(t, 1);
            index.second[id] = prefix(t, 2);
            match t.chars().count() {
                1 => index.one.push(LlamaToken(id as i32)),
                2 => index.two.push((LlamaToken(id as i32), index.first[id])),
                _ => {}
            }
        }
        let key =
            |id: usize| if index.second[id] != NONE { index.second[id] } else { index.first[id] };
        let mut counts = vec![0u32; n + 1];
        for id in 0..n {
            match key(id) {
                NONE => index.unindexed.push(id as u32),
                k => counts[k as usize + 1] += 1,
            }
        }
        for k in 0..n {
            counts[k + 1] += counts[k];
        }
        let mut next = counts.clone();
        let mut members = vec![0u32; counts[n] as usize];
        for id in 0..n {
            let k = key(id);
            if k != NONE {
                members[next[k as usize] as usize] = id as u32;
                next[k as usize] += 1;
            }
        }
        index.starts = counts;
        index.members = members;
        index
    }

    /// Flags in `passed` (one flag per token) the one- and two-character tokens `grammar`
    /// accepts, for [`PrefixIndex::may_pass`].
    pub(crate) fn probe(
        &self,
        grammar: &mut LlamaSampler,
        scratch: &mut LlamaTokenDataArray,
        passed: &mut Vec<bool>,
    ) {
        passed.clear();
        passed.resize(self.first.len(), false);
        mark(grammar, scratch, passed, self.one.iter().copied());
        let two: Vec<LlamaToken> = self
            .two
            .iter()
            .filter(|(_, first)| *first != NONE && passed[*first as usize])
            .map(|(t, _)| *t)
            .collect();
        mark(grammar, scratch, passed, two.into_iter());
    }

    /// Calls `keep` with every token the grammar [`PrefixIndex::probe`]d into `passed` could
    /// accept: all but those whose first character or first two it refused. A token's longest
    /// prefix token passing is enough, since a two-character one was only tried when its first
    /// character passed.
    pub(crate) fn possible(&self, passed: &[bool], mut keep: impl FnMut(u32)) {
        let keys =
            self.one.iter().map(|t| t.0 as u32).chain(self.two.iter().map(|(t, _)| t.0 as u32));
        for k in keys.filter(|k| passed[*k as usize]) {
            let (from, to) =
                (self.starts[k as usize] as usize, self.starts[k as usize + 1] as usize);
            self.members[from..to].iter().for_each(|t| keep(*t));
        }
        self.unindexed.iter().for_each(|t| keep(*t));
    }

    /// Whether `token` is among [`PrefixIndex::possible`]'s (for tests).
    #[cfg(test)]
    fn may_pass(&self, token: u32, passed: &[bool]) -> bool {
        let passes = |p: u32| p == NONE || passed[p as usize];
        passes(self.first[token as usize]) && passes(self.second[token as usize])
    }
}

/// Runs `tokens` through the grammar and flags those it accepts.
fn mark(
    grammar: &mut LlamaSampler,
    scratch: &mut LlamaTokenDataArray,
    passed: &mut [bool],
    tokens: impl Iterator<Item = LlamaToken>,
) {
    scratch.data.clear();
    scratch.data.extend(tokens.map(|t| LlamaTokenData::new(t, 0.0, 0.0)));
    scratch.selected = None;
    scratch.sorted = false;
    if scratch.data.is_empty() {
        return;
    }
    scratch.apply_sampler(grammar);
    for d in &scratch.data {
        if d.logit().is_finite() {
            passed[d.id().0 as usize] = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_point_at_the_tokens_spelling_their_first_characters() {
        let texts: Vec<Option<String>> =
            ["{", "\"", "{\"", "{\"name", " ", " \"", "é", "éa", "x", "xyz"]
                .iter()
                .map(|t| Some((*t).to_owned()))
                .chain([None])
                .collect();
        let index = PrefixIndex::from_texts(&texts);
        let ids = |v: &[LlamaToken]| v.iter().map(|t| t.0).collect::<Vec<_>>();
        assert_eq!(ids(&index.one), [0, 1, 4, 6, 8]);
        assert_eq!(
            index.two.iter().map(|(t, f)| (t.0, *f)).collect::<Vec<_>>(),
            [(2, 0), (5, 4), (7, 6)]
        );
        // "{\"name": first "{", first two "{\"".
        assert_eq!((index.first[3], index.second[3]), (0, 2));
        // "xyz": no token spells "xy".
        assert_eq!((index.first[9], index.second[9]), (8, NONE));
        // Single characters are their own first; the unusable token has neither.
        assert_eq!((index.first[0], index.second[0]), (0, NONE));
        assert_eq!((index.first[10], index.second[10]), (NONE, NONE));
        // Buckets under their longest prefix token; the unusable token is always possible.
        for passed_ids in [vec![], vec![0], vec![0, 2], vec![4, 5, 8], (0..11).collect()] {
            let mut passed = vec![false; 11];
            passed_ids.iter().for_each(|i| passed[*i] = true);
            // Only what a probe could leave: a two-character token passes after its first.
            if passed[2] && !passed[0] {
                continue;
            }
            let mut got = Vec::new();
            index.possible(&passed, |t| got.push(t));
            got.sort_unstable();
            let expected: Vec<u32> = (0..11).filter(|t| index.may_pass(*t, &passed)).collect();
            assert_eq!(got, expected, "passed {passed_ids:?}");
        }
    }
}
