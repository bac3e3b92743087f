//! Stop strings: text is held back while it could still be the start of a stop string, so a
//! stop string never reaches the client, even when it spans several tokens.

#[derive(Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    /// Text produced but not yet released.
    pending: String,
}

/// What to do after feeding a piece of text.
#[derive(Debug, PartialEq, Eq)]
pub enum StopOutcome {
    /// Release this text (may be empty) and keep generating.
    Continue(String),
    /// A stop string was found: release this text (what came before it) and stop.
    Stopped(String),
}

impl StopMatcher {
    pub fn new(stops: &[String]) -> Self {
        let stops = stops.iter().filter(|s| !s.is_empty()).cloned().collect();
        StopMatcher { stops, pending: String::new() }
    }

    pub fn push(&mut self, text: &str) -> StopOutcome {
        if self.stops.is_empty() {
            return StopOutcome::Continue(text.to_owned());
        }
        self.pending.push_str(text);
        if let Some(at) = self.stops.iter().filter_map(|s| self.pending.find(s.as_str())).min() {
            let before = self.pending[..at].to_owned();
            self.pending.clear();
            return StopOutcome::Stopped(before);
        }
        let keep = self.longest_partial_suffix();
        let release = self.pending.len() - keep;
        let out = self.pending[..release].to_owned();
        self.pending.drain(..release);
        StopOutcome::Continue(out)
    }

    /// Whatever is still held back, released at the end of generation.
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }

    /// Length in bytes of the longest suffix of `pending` that is a proper prefix of a stop string.
    fn longest_partial_suffix(&self) -> usize {
        let p = &self.pending;
        let mut best = 0;
        for stop in &self.stops {
            let max = stop.len().saturating_sub(1).min(p.len());
            for len in (best + 1..=max).rev() {
                let start = p.len() - len;
                if p.is_char_boundary(start) && stop.starts_with(&p[start..]) {
                    best = len;
                    break;
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut m = StopMatcher::new(&stops);
        let mut out = String::new();
        for p in pieces {
            match m.push(p) {
                StopOutcome::Continue(t) => out.push_str(&t),
                StopOutcome::Stopped(t) => {
                    out.push_str(&t);
                    return (out, true);
                }
            }
        }
        out.push_str(&m.flush());
        (out, false)
    }

    #[test]
    fn table() {
        let cases: &[(&[&str], &[&str], &str, bool)] = &[
            (&[], &["a", "b"], "ab", false),
            (&["STOP"], &["hello ", "ST", "OP", " more"], "hello ", true),
            (&["STOP"], &["hello ", "ST", "AR"], "hello STAR", false),
            (&["\n\n"], &["a\n", "\nb"], "a", true),
            (&["end", "xyz"], &["wxy", "z end"], "w", true),
            (&["é!"], &["caf", "é", "!"], "caf", true),
            (&["é!"], &["café", " ok"], "café ok", false),
            (&[""], &["a"], "a", false),
        ];
        for (stops, pieces, want, stopped) in cases {
            assert_eq!(
                run(stops, pieces),
                (want.to_string(), *stopped),
                "stops={stops:?} pieces={pieces:?}"
            );
        }
    }

    #[test]
    fn partial_prefix_is_held_back_until_resolved() {
        let mut m = StopMatcher::new(&["<|im_end|>".to_string()]);
        assert_eq!(m.push("Hi <|im"), StopOutcome::Continue("Hi ".into()));
        assert_eq!(m.push("_end|>"), StopOutcome::Stopped(String::new()));
    }
}
