//! A model stand-in: answers at once with a fixed reply, streamed word by word, honouring
//! `num_predict` (counted in words) and stop strings. Every hop can run on it, so tests need no
//! model and benchmarks measure only our own software.

use std::time::Instant;

use contract::{ChunkStream, ErrorKind, GenerateResponse, HopTiming, StreamChunk, Timings, Usage};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InstantConfig {
    /// The reply to every request.
    pub reply: String,
    /// Model names this backend answers to.
    pub models: Vec<String>,
    /// Pause before each word, to imitate a model's pace (0: no pause).
    pub word_delay_ms: u64,
}

impl Default for InstantConfig {
    fn default() -> Self {
        InstantConfig { reply: "Hello from strata. This is an instant reply.".into(), models: vec!["instant".into()], word_delay_ms: 0 }
    }
}

pub struct InstantGenerator {
    config: InstantConfig,
}

impl InstantGenerator {
    pub fn new(config: InstantConfig) -> Self {
        InstantGenerator { config }
    }

    pub fn config(&self) -> &InstantConfig {
        &self.config
    }

    /// Whether this generator answers to `model` (`name` and `name:latest` are the same).
    pub fn knows(&self, model: &str) -> bool {
        self.config.models.iter().any(|m| m == model || m.strip_suffix(":latest") == Some(model) || model.strip_suffix(":latest") == Some(m))
    }

    fn check(&self, model: &str) -> Result<(), contract::Error> {
        if self.knows(model) {
            Ok(())
        } else {
            Err(contract::Error::new(ErrorKind::ModelNotFound, format!("model \"{model}\" not found, try pulling it first")))
        }
    }

    /// The reply cut by `num_predict` (counted in words) and the first stop string.
    fn answer(&self, req: &contract::GenerateRequest) -> (Vec<String>, contract::DoneReason) {
        let options = req.options.clone().unwrap_or_default();
        let mut words: Vec<String> = self.config.reply.split_inclusive(' ').map(str::to_owned).collect();
        let mut reason = contract::DoneReason::Stop;
        if let Some(n) = options.num_predict.filter(|n| *n >= 0) {
            if words.len() > n as usize {
                words.truncate(n as usize);
                reason = contract::DoneReason::Length;
            }
        }
        let text: String = words.concat();
        if let Some(cut) = options.stop.iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s.as_str())).min() {
            let mut kept = Vec::new();
            let mut len = 0;
            for w in words {
                if len + w.len() <= cut {
                    len += w.len();
                    kept.push(w);
                } else {
                    kept.push(w[..cut - len].to_owned());
                    break;
                }
            }
            return (kept.into_iter().filter(|w| !w.is_empty()).collect(), contract::DoneReason::StopSequence);
        }
        (words, reason)
    }

    /// The reply as a contract stream: one delta per word, then `done` with word counts.
    pub fn generate(&self, req: contract::GenerateRequest) -> Result<ChunkStream, contract::Error> {
        let started = Instant::now();
        self.check(&req.model)?;
        let (words, reason) = self.answer(&req);
        let prompt_tokens: usize = req.messages.iter().map(|m| m.content.split_whitespace().count()).sum::<usize>()
            + req.raw_prompt.as_deref().map_or(0, |p| p.split_whitespace().count());
        let completion_tokens = words.len() as u32;
        let model = req.model.clone();
        let mut chunks: Vec<StreamChunk> = words.into_iter().map(StreamChunk::delta).collect();
        let total = started.elapsed().as_nanos() as u64;
        chunks.push(StreamChunk::done(GenerateResponse {
            model,
            message: Some(contract::Message::assistant("")),
            done_reason: reason as i32,
            usage: Some(Usage { prompt_tokens: prompt_tokens as u32, completion_tokens }),
            timings: Some(Timings { total_ns: total, hops: vec![HopTiming { hop: "instant".into(), dur_ns: total }], ..Default::default() }),
        }));
        if self.config.word_delay_ms == 0 {
            return Ok(Box::pin(futures::stream::iter(chunks)));
        }
        let delay = std::time::Duration::from_millis(self.config.word_delay_ms);
        Ok(Box::pin(futures::stream::iter(chunks).then(move |c| async move {
            tokio::time::sleep(delay).await;
            c
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::{GenerateRequest, Options};

    fn req(num_predict: Option<i32>, stop: &[&str]) -> GenerateRequest {
        GenerateRequest {
            model: "instant".into(),
            options: Some(Options { num_predict, stop: stop.iter().map(|s| s.to_string()).collect(), ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn answer_table() {
        let b = InstantGenerator::new(InstantConfig { reply: "one two three four".into(), ..Default::default() });
        let cases: &[(Option<i32>, &[&str], &str, contract::DoneReason)] = &[
            (None, &[], "one two three four", contract::DoneReason::Stop),
            (Some(2), &[], "one two ", contract::DoneReason::Length),
            (Some(-1), &[], "one two three four", contract::DoneReason::Stop),
            (None, &["thr"], "one two ", contract::DoneReason::StopSequence),
            (None, &["o t"], "one tw", contract::DoneReason::StopSequence),
        ];
        for (n, stop, want, reason) in cases {
            let (words, r) = b.answer(&req(*n, stop));
            assert_eq!((words.concat().as_str(), r), (*want, *reason), "{n:?} {stop:?}");
        }
    }
}
