//! Reading an answer to a request with tools as it streams: text passes on at once until the
//! dialect's call begins (Hermes' `<tool_call>`, a Llama 3 answer opening with `{`), then
//! the rest is gathered and read as calls at the end. A generic-format answer is one JSON
//! document, so it is gathered whole. Whatever cannot be read as calls is passed on as text.

use super::{generic, hermes, llama3, Dialect};
use crate::request::{ToolCall, Tools};

#[derive(Debug)]
pub struct Reader {
    dialect: Dialect,
    tools: Tools,
    /// Text not passed on yet: a possible start of a call, or the call itself.
    held: String,
    /// The call has begun: everything from here on is held until the end.
    gathering: bool,
    /// Some non-blank text has been passed on.
    spoke: bool,
}

/// What the end of an answer adds: text not yet passed on, then the calls.
#[derive(Debug, Default, PartialEq)]
pub struct Ending {
    pub text: Option<String>,
    pub calls: Vec<ToolCall>,
}

impl Reader {
    pub fn new(dialect: Dialect, tools: Tools) -> Reader {
        Reader {
            dialect,
            tools,
            held: String::new(),
            gathering: dialect == Dialect::Generic,
            spoke: false,
        }
    }

    /// Takes the next piece of the answer and returns the text that can be passed on now.
    pub fn push(&mut self, piece: &str) -> Option<String> {
        self.held.push_str(piece);
        if self.gathering {
            return None;
        }
        match self.dialect {
            Dialect::Hermes => {
                if let Some(at) = self.held.find(hermes::OPEN) {
                    let before: String = self.held.drain(..at).collect();
                    self.gathering = true;
                    return self.pass(before, true);
                }
                let keep = partial_start(&self.held, hermes::OPEN);
                let ready: String = self.held.drain(..keep).collect();
                self.pass(ready, false)
            }
            Dialect::Llama3 => {
                if !self.spoke {
                    match self.held.trim_start().chars().next() {
                        None => return None,
                        Some('{') => {
                            self.gathering = true;
                            return None;
                        }
                        Some(_) => {}
                    }
                }
                let ready = std::mem::take(&mut self.held);
                self.pass(ready, false)
            }
            Dialect::Generic => None,
        }
    }

    /// Passes `text` on, except blank text before anything was said: that is held (or, right
    /// before a call, dropped: it only separates nothing from the call).
    fn pass(&mut self, text: String, before_call: bool) -> Option<String> {
        if !self.spoke && text.trim().is_empty() {
            if !before_call {
                self.held.insert_str(0, &text);
            }
            return None;
        }
        self.spoke = true;
        Some(text).filter(|t| !t.is_empty())
    }

    /// The end of the answer: the held text read as calls, or passed on as it is.
    pub fn finish(&mut self) -> Ending {
        let answer = std::mem::take(&mut self.held);
        let as_text = |answer: String| Ending {
            text: Some(answer).filter(|t| !t.is_empty()),
            calls: Vec::new(),
        };
        if !self.gathering {
            return as_text(answer);
        }
        match self.dialect {
            Dialect::Generic => match generic::parse(&answer, super::call_id) {
                Some(generic::Reply::Calls(calls)) => Ending { text: None, calls },
                Some(generic::Reply::Text(text)) => as_text(text),
                // Cut short (a length limit): what there is, as it is.
                None => as_text(answer),
            },
            Dialect::Hermes => match hermes::parse(&answer) {
                Some((calls, text)) => Ending { text: Some(text).filter(|t| !t.is_empty()), calls },
                None => as_text(answer),
            },
            Dialect::Llama3 => match llama3::parse(&answer, &self.tools) {
                Some(call) => Ending { text: None, calls: vec![call] },
                None => as_text(answer),
            },
        }
    }
}

/// Where the longest end of `text` that could begin `pattern` starts (`text.len()` if none).
fn partial_start(text: &str, pattern: &str) -> usize {
    (1..pattern.len().min(text.len() + 1))
        .rev()
        .map(|n| text.len() - n)
        .find(|&at| text.is_char_boundary(at) && pattern.starts_with(&text[at..]))
        .unwrap_or(text.len())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::request::ToolChoice;
    use crate::tools::tests::tools;

    fn run(dialect: Dialect, pieces: &[&str]) -> (String, Ending) {
        let mut reader = Reader::new(dialect, tools(ToolChoice::Auto));
        let passed: String = pieces.iter().filter_map(|p| reader.push(p)).collect();
        (passed, reader.finish())
    }

    #[test]
    fn hermes_text_streams_until_the_call_begins() {
        let (passed, end) = run(
            Dialect::Hermes,
            &[
                "Let me check.",
                "\n<tool",
                "_call>\n{\"name\": \"get_weather\", ",
                "\"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
            ],
        );
        assert_eq!(passed, "Let me check.\n");
        assert_eq!(end.text, None);
        assert_eq!(
            (end.calls[0].name.as_str(), end.calls[0].arguments.clone()),
            ("get_weather", json!({"city": "Paris"}))
        );
        let (passed, end) = run(
            Dialect::Hermes,
            &["\n", "<tool_call>{\"name\": \"get_weather\", \"arguments\": {}}</tool_call>"],
        );
        assert_eq!((passed.as_str(), end.calls.len()), ("", 1));
        let (passed, end) = run(Dialect::Hermes, &["It is <to", "day's news>", " sunny"]);
        assert_eq!((passed.as_str(), end), ("It is <today's news> sunny", Ending::default()));
        let (passed, end) = run(Dialect::Hermes, &["Ok <tool_call>{\"name\": broken"]);
        assert_eq!(
            (passed.as_str(), end.text.as_deref(), end.calls.len()),
            ("Ok ", Some("<tool_call>{\"name\": broken"), 0)
        );
    }

    #[test]
    fn llama3_answers_opening_with_a_brace_are_read_as_calls() {
        let (passed, end) = run(
            Dialect::Llama3,
            &[" ", "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}"],
        );
        assert_eq!(
            (passed.as_str(), end.calls[0].arguments.clone()),
            ("", json!({"city": "Oslo"}))
        );
        let (passed, end) = run(Dialect::Llama3, &["Sunny ", "{mostly}"]);
        assert_eq!((passed.as_str(), end), ("Sunny {mostly}", Ending::default()));
        let (passed, end) = run(Dialect::Llama3, &["{\"answer\": 4}"]);
        assert_eq!((passed.as_str(), end.text.as_deref()), ("", Some("{\"answer\": 4}")));
    }

    #[test]
    fn generic_answers_are_read_whole() {
        let (passed, end) = run(Dialect::Generic, &["{\"response\": ", "\"Hi\"}"]);
        assert_eq!((passed.as_str(), end.text.as_deref()), ("", Some("Hi")));
        let (_, end) = run(
            Dialect::Generic,
            &["{\"tool_calls\": [{\"name\": \"get_weather\", \"arguments\": {}}]}"],
        );
        assert_eq!(end.calls.len(), 1);
    }

    #[test]
    fn partial_starts() {
        assert_eq!(partial_start("abc<to", "<tool_call>"), 3);
        assert_eq!(partial_start("abc", "<tool_call>"), 3);
        assert_eq!(partial_start("é<", "<tool_call>"), 2);
        assert_eq!(partial_start("", "<tool_call>"), 0);
    }
}
