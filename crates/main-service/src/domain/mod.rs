//! Requests as the rest of the service sees them: validated once, at the edge. A
//! `ValidatedRequest` or `ValidatedSummarize` can only be made through `TryFrom`, so no handler
//! can pass an unchecked request on to the Lambda function.

use contract::{ErrorKind, GenerateRequest, Options, ResponseFormat, Role, SummarizeRequest};

use crate::config::MainServiceSettings;
use crate::error::{FieldError, ServiceError};

/// A `GenerateRequest` that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedRequest {
    inner: GenerateRequest,
}

impl ValidatedRequest {
    pub fn get(&self) -> &GenerateRequest {
        &self.inner
    }

    pub fn into_inner(self) -> GenerateRequest {
        self.inner
    }
}

/// A `SummarizeRequest` that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedSummarize {
    inner: SummarizeRequest,
}

impl ValidatedSummarize {
    pub fn get(&self) -> &SummarizeRequest {
        &self.inner
    }
}

impl TryFrom<(GenerateRequest, &MainServiceSettings)> for ValidatedRequest {
    type Error = ServiceError;

    fn try_from(
        (req, settings): (GenerateRequest, &MainServiceSettings),
    ) -> Result<Self, ServiceError> {
        let mut v = Checks::new(settings);
        v.model(&req.model);
        match (&req.raw_prompt, req.messages.is_empty()) {
            (Some(_), false) => v.fail("raw_prompt", "set either messages or raw_prompt, not both"),
            (None, true) => {
                v.fail("messages", "at least one message is required (or a raw_prompt)")
            }
            (Some(p), true) if p.is_empty() => v.fail("raw_prompt", "must not be empty"),
            _ => {}
        }
        if req.messages.len() > settings.max_messages {
            v.fail(
                "messages",
                format!(
                    "{} messages; at most {} are allowed",
                    req.messages.len(),
                    settings.max_messages
                ),
            );
        }
        let mut total = 0usize;
        let mut calls: Vec<&str> = Vec::new();
        for (i, m) in req.messages.iter().enumerate() {
            match Role::try_from(m.role) {
                Ok(Role::Unspecified) => v.fail(
                    format!("messages[{i}].role"),
                    "role is required (system, user, assistant or tool)",
                ),
                Err(_) => v.fail(format!("messages[{i}].role"), format!("unknown role {}", m.role)),
                Ok(_) => {}
            }
            v.size(format!("messages[{i}].content"), &m.content);
            total += m.content.len();
            for (j, u) in m.tool_uses().enumerate() {
                let field = format!("messages[{i}].blocks[{j}].tool_use");
                if m.role() != Role::Assistant {
                    v.fail(&field, "only assistant messages carry tool calls");
                }
                v.json_object(
                    format!("{field}.input_json"),
                    &u.input_json,
                    settings.max_message_bytes,
                );
                total += u.input_json.len();
                calls.push(&u.id);
            }
            for (j, r) in m.tool_results().enumerate() {
                let field = format!("messages[{i}].blocks[{j}].tool_result");
                v.size(format!("{field}.content"), &r.content);
                total += r.content.len();
                if !r.tool_use_id.is_empty() && !calls.contains(&r.tool_use_id.as_str()) {
                    v.fail(
                        format!("{field}.tool_use_id"),
                        format!("\"{}\" answers no earlier tool call", r.tool_use_id),
                    );
                }
            }
        }
        v.tools(&req);
        if let Some(p) = &req.raw_prompt {
            v.size("raw_prompt", p);
            total += p.len();
        }
        if let Some(s) = &req.system {
            v.size("system", s);
            total += s.len();
        }
        if total > settings.max_total_bytes {
            v.fail(
                "messages",
                format!(
                    "the messages add up to {total} bytes; at most {} are allowed",
                    settings.max_total_bytes
                ),
            );
        }
        if ResponseFormat::try_from(req.format).is_err() {
            v.fail("format", format!("unknown format {}", req.format));
        }
        if let Some(o) = &req.options {
            v.options(o);
        }
        v.finish(ValidatedRequest { inner: req })
    }
}

impl TryFrom<(SummarizeRequest, &MainServiceSettings)> for ValidatedSummarize {
    type Error = ServiceError;

    fn try_from(
        (req, settings): (SummarizeRequest, &MainServiceSettings),
    ) -> Result<Self, ServiceError> {
        let mut v = Checks::new(settings);
        v.model(&req.model);
        if req.document.trim().is_empty() {
            v.fail("document", "must not be empty");
        }
        if let Some(i) = &req.instructions {
            v.size("instructions", i);
        }
        if let Some(o) = &req.options {
            v.options(o);
        }
        v.finish(ValidatedSummarize { inner: req })
    }
}

/// Collects every problem of a request, so the caller learns all of them at once.
struct Checks<'a> {
    settings: &'a MainServiceSettings,
    fields: Vec<FieldError>,
    unknown_model: Option<String>,
}

impl<'a> Checks<'a> {
    fn new(settings: &'a MainServiceSettings) -> Self {
        Checks { settings, fields: Vec::new(), unknown_model: None }
    }

    fn fail(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.fields.push(FieldError::new(field, message));
    }

    fn model(&mut self, model: &str) {
        if model.trim().is_empty() {
            self.fail("model", "model is required");
        } else if let Err(e) =
            contract::edge::check_model_name(model, self.settings.max_model_name_bytes, false)
        {
            self.fail("model", e.to_string());
        } else if !self.settings.allowed_models.is_empty()
            && !self.settings.allowed_models.iter().any(|m| m == model)
        {
            self.unknown_model = Some(model.to_owned());
        }
    }

    /// JSON text that must be an object of at most `max` bytes.
    fn json_object(&mut self, field: impl Into<String>, text: &str, max: usize) {
        let field = field.into();
        if text.len() > max {
            self.fail(field, format!("{} bytes; at most {max} are allowed", text.len()));
            return;
        }
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v) if v.is_object() => {}
            Ok(_) => self.fail(field, "must be a JSON object"),
            Err(e) => self.fail(field, format!("is not valid JSON: {e}")),
        }
    }

    /// Tool definitions, the tool choice and the response schema.
    fn tools(&mut self, req: &GenerateRequest) {
        use contract::tool_choice::Mode;
        let max = self.settings.max_schema_bytes;
        if req.tools.len() > self.settings.max_tools {
            self.fail(
                "tools",
                format!(
                    "{} tools; at most {} are allowed",
                    req.tools.len(),
                    self.settings.max_tools
                ),
            );
        }
        for (i, t) in req.tools.iter().enumerate() {
            let valid_name = !t.name.is_empty()
                && t.name.len() <= 64
                && t.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid_name {
                self.fail(
                    format!("tools[{i}].name"),
                    "must be 1-64 letters, digits, underscores or dashes",
                );
            } else if req.tools[..i].iter().any(|o| o.name == t.name) {
                self.fail(format!("tools[{i}].name"), format!("\"{}\" is given twice", t.name));
            }
            self.size(format!("tools[{i}].description"), &t.description);
            if !t.input_schema_json.is_empty() {
                self.json_object(
                    format!("tools[{i}].input_schema_json"),
                    &t.input_schema_json,
                    max,
                );
            }
        }
        if let Some(choice) = &req.tool_choice {
            match Mode::try_from(choice.mode) {
                Err(_) => self.fail("tool_choice.mode", format!("unknown mode {}", choice.mode)),
                Ok(Mode::Any | Mode::Tool) if req.tools.is_empty() => {
                    self.fail("tool_choice", "requires tools")
                }
                Ok(Mode::Tool) if !req.tools.iter().any(|t| t.name == choice.name) => {
                    self.fail(
                        "tool_choice.name",
                        format!("\"{}\" is not among the tools", choice.name),
                    );
                }
                Ok(_) => {}
            }
        }
        if let Some(schema) = &req.response_schema_json {
            self.json_object("response_schema_json", schema, max);
        }
    }

    fn size(&mut self, field: impl Into<String>, text: &str) {
        let max = self.settings.max_message_bytes;
        if text.len() > max {
            self.fail(field, format!("{} bytes; at most {max} are allowed", text.len()));
        }
    }

    fn options(&mut self, o: &Options) {
        fn range(v: &mut Checks, name: &str, x: Option<f32>, lo: f32, hi: f32) {
            if let Some(x) = x {
                if !(x.is_finite() && (lo..=hi).contains(&x)) {
                    v.fail(format!("options.{name}"), format!("{x} is out of range {lo}..={hi}"));
                }
            }
        }
        range(self, "temperature", o.temperature, 0.0, 2.0);
        range(self, "top_p", o.top_p, 0.0, 1.0);
        range(self, "min_p", o.min_p, 0.0, 1.0);
        range(self, "repeat_penalty", o.repeat_penalty, 0.0, f32::MAX);
        if let Some(k) = o.top_k.filter(|k| *k < 0) {
            self.fail("options.top_k", format!("{k} is negative; 0 means no limit"));
        }
        if let Some(n) = o.num_predict.filter(|n| *n < -1) {
            self.fail(
                "options.num_predict",
                format!("{n} is below -1 (-1 means until the context is full)"),
            );
        }
        if let Some(n) = o.repeat_last_n.filter(|n| *n < -1) {
            self.fail(
                "options.repeat_last_n",
                format!("{n} is below -1 (-1 means the whole context)"),
            );
        }
        if o.num_ctx == Some(0) {
            self.fail("options.num_ctx", "must be positive");
        }
        if o.stop.len() > 16 {
            self.fail(
                "options.stop",
                format!("{} stop strings; at most 16 are allowed", o.stop.len()),
            );
        }
        for (i, s) in o.stop.iter().enumerate() {
            if s.is_empty() {
                self.fail(format!("options.stop[{i}]"), "must not be empty");
            }
        }
    }

    /// 400 with every field error; 404 when the only problem is a model outside the allow-list.
    fn finish<T>(self, ok: T) -> Result<T, ServiceError> {
        match (self.fields.is_empty(), self.unknown_model) {
            (true, None) => Ok(ok),
            (true, Some(model)) => {
                let mut e = ServiceError::new(
                    ErrorKind::ModelNotFound,
                    format!("model \"{model}\" is not served here"),
                );
                e.fields.push(FieldError::new("model", "not in the allowed models"));
                Err(e)
            }
            (false, unknown) => {
                let mut fields = self.fields;
                if unknown.is_some() {
                    fields.insert(0, FieldError::new("model", "not in the allowed models"));
                }
                Err(ServiceError::invalid(fields))
            }
        }
    }
}

/// An embedding request that passed the edge checks.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedEmbed {
    inner: contract::EmbedRequest,
}

impl ValidatedEmbed {
    pub fn into_inner(self) -> contract::EmbedRequest {
        self.inner
    }
}

impl TryFrom<(contract::EmbedRequest, &MainServiceSettings)> for ValidatedEmbed {
    type Error = ServiceError;

    fn try_from(
        (req, settings): (contract::EmbedRequest, &MainServiceSettings),
    ) -> Result<Self, ServiceError> {
        use contract::embed_input::Kind;
        let mut v = Checks::new(settings);
        v.model(&req.model);
        if req.inputs.is_empty() {
            v.fail("inputs", "at least one input is required");
        }
        if req.inputs.len() > settings.max_embed_inputs {
            v.fail(
                "inputs",
                format!(
                    "{} inputs; at most {} are allowed",
                    req.inputs.len(),
                    settings.max_embed_inputs
                ),
            );
        }
        let mut total = 0usize;
        for (i, input) in req.inputs.iter().enumerate() {
            let field = format!("inputs[{i}]");
            match &input.kind {
                Some(Kind::Text(t)) if t.is_empty() => v.fail(&field, "must not be empty"),
                Some(Kind::Text(t)) => {
                    v.size(&field, t);
                    total += t.len();
                }
                Some(Kind::Tokens(t)) if t.ids.is_empty() => {
                    v.fail(&field, "must not be an empty token list")
                }
                Some(Kind::Tokens(t)) => total += t.ids.len() * 4,
                None => v.fail(&field, "text or tokens is required"),
            }
        }
        if total > settings.max_total_bytes {
            v.fail(
                "inputs",
                format!(
                    "the inputs add up to {total} bytes; at most {} are allowed",
                    settings.max_total_bytes
                ),
            );
        }
        if req.dimensions == Some(0) {
            v.fail("dimensions", "must be at least 1");
        }
        v.finish(ValidatedEmbed { inner: req })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::Message;

    fn req() -> GenerateRequest {
        GenerateRequest {
            model: "m".into(),
            messages: vec![Message::user("hi")],
            ..Default::default()
        }
    }

    fn fields(r: Result<ValidatedRequest, ServiceError>) -> Vec<String> {
        r.unwrap_err().fields.into_iter().map(|f| f.field).collect()
    }

    #[test]
    fn a_plain_request_passes() {
        let s = MainServiceSettings::default();
        assert!(ValidatedRequest::try_from((req(), &s)).is_ok());
        let raw = GenerateRequest { messages: vec![], raw_prompt: Some("x".into()), ..req() };
        assert!(ValidatedRequest::try_from((raw, &s)).is_ok());
    }

    #[test]
    fn invalid_requests_name_every_bad_field() {
        let s = MainServiceSettings {
            max_message_bytes: 10,
            max_total_bytes: 15,
            ..Default::default()
        };
        let cases: Vec<(GenerateRequest, Vec<&str>)> = vec![
            (GenerateRequest { model: " ".into(), ..req() }, vec!["model"]),
            (GenerateRequest { messages: vec![], ..req() }, vec!["messages"]),
            (GenerateRequest { raw_prompt: Some("x".into()), ..req() }, vec!["raw_prompt"]),
            (
                GenerateRequest {
                    messages: vec![
                        Message { role: 0, content: "a".into(), blocks: vec![] },
                        Message { role: 9, content: "b".into(), blocks: vec![] },
                    ],
                    ..req()
                },
                vec!["messages[0].role", "messages[1].role"],
            ),
            (
                GenerateRequest { messages: vec![Message::user("x".repeat(11))], ..req() },
                vec!["messages[0].content"],
            ),
            (
                GenerateRequest {
                    messages: vec![Message::user("x".repeat(8)), Message::user("x".repeat(8))],
                    ..req()
                },
                vec!["messages"],
            ),
            (GenerateRequest { format: 7, ..req() }, vec!["format"]),
            (GenerateRequest { model: "../../etc/passwd".into(), ..req() }, vec!["model"]),
            (GenerateRequest { model: "m\0".into(), ..req() }, vec!["model"]),
            (GenerateRequest { model: "x".repeat(257), ..req() }, vec!["model"]),
        ];
        for (r, expected) in cases {
            assert_eq!(fields(ValidatedRequest::try_from((r.clone(), &s))), expected, "{r:?}");
        }
    }

    #[test]
    fn tools_and_schemas_are_checked_at_the_edge() {
        use contract::{
            tool_choice::Mode, ContentBlock, ToolChoice, ToolResult, ToolSpec, ToolUse,
        };
        let s = MainServiceSettings { max_tools: 2, max_schema_bytes: 40, ..Default::default() };
        let tool = |name: &str, schema: &str| ToolSpec {
            name: name.into(),
            description: String::new(),
            input_schema_json: schema.into(),
        };
        let ok = GenerateRequest {
            tools: vec![tool("f", r#"{"type":"object"}"#)],
            tool_choice: Some(ToolChoice { mode: Mode::Tool as i32, name: "f".into() }),
            ..req()
        };
        assert!(ValidatedRequest::try_from((ok.clone(), &s)).is_ok());
        let mut call = Message::assistant("");
        call.blocks.push(ContentBlock::tool_use(ToolUse {
            id: "c1".into(),
            name: "f".into(),
            input_json: "[1]".into(),
        }));
        let mut result = Message::new(Role::Tool, "r");
        result.blocks.push(ContentBlock::tool_result(ToolResult {
            tool_use_id: "c9".into(),
            content: "r".into(),
            is_error: false,
            name: "f".into(),
        }));
        let cases: Vec<(GenerateRequest, Vec<&str>)> = vec![
            (
                GenerateRequest {
                    tools: vec![tool("a", ""), tool("b", ""), tool("c", "")],
                    tool_choice: None,
                    ..ok.clone()
                },
                vec!["tools"],
            ),
            (
                GenerateRequest {
                    tools: vec![tool("a b", ""), tool("f", "{")],
                    tool_choice: None,
                    ..ok.clone()
                },
                vec!["tools[0].name", "tools[1].input_schema_json"],
            ),
            (
                GenerateRequest {
                    tools: vec![tool("f", &format!(r#"{{"description":"{}"}}"#, "x".repeat(40)))],
                    ..ok.clone()
                },
                vec!["tools[0].input_schema_json"],
            ),
            (
                GenerateRequest {
                    tool_choice: Some(ToolChoice { mode: Mode::Tool as i32, name: "g".into() }),
                    ..ok.clone()
                },
                vec!["tool_choice.name"],
            ),
            (
                GenerateRequest {
                    tools: vec![],
                    tool_choice: Some(ToolChoice { mode: Mode::Any as i32, name: String::new() }),
                    ..ok.clone()
                },
                vec!["tool_choice"],
            ),
            (
                GenerateRequest { response_schema_json: Some("3".into()), ..ok.clone() },
                vec!["response_schema_json"],
            ),
            (
                GenerateRequest { messages: vec![Message::user("u"), call, result], ..ok.clone() },
                vec![
                    "messages[1].blocks[0].tool_use.input_json",
                    "messages[2].blocks[0].tool_result.tool_use_id",
                ],
            ),
        ];
        for (r, expected) in cases {
            assert_eq!(fields(ValidatedRequest::try_from((r.clone(), &s))), expected, "{r:?}");
        }
    }

    #[test]
    fn message_count_is_limited() {
        let s = MainServiceSettings { max_messages: 2, ..Default::default() };
        let three = GenerateRequest {
            messages: vec![Message::user("a"), Message::assistant("b"), Message::user("c")],
            ..req()
        };
        assert_eq!(fields(ValidatedRequest::try_from((three, &s))), ["messages"]);
    }

    #[test]
    fn option_ranges() {
        let s = MainServiceSettings::default();
        let bad = Options {
            temperature: Some(2.5),
            top_p: Some(-0.1),
            min_p: Some(f32::NAN),
            top_k: Some(-1),
            num_predict: Some(-2),
            repeat_last_n: Some(-5),
            num_ctx: Some(0),
            stop: vec![String::new()],
            ..Default::default()
        };
        let got = fields(ValidatedRequest::try_from((
            GenerateRequest { options: Some(bad), ..req() },
            &s,
        )));
        assert_eq!(
            got,
            [
                "options.temperature",
                "options.top_p",
                "options.min_p",
                "options.top_k",
                "options.num_predict",
                "options.repeat_last_n",
                "options.num_ctx",
                "options.stop[0]"
            ]
        );
        let edge = Options {
            temperature: Some(2.0),
            top_p: Some(1.0),
            top_k: Some(0),
            num_predict: Some(-1),
            ..Default::default()
        };
        assert!(ValidatedRequest::try_from((GenerateRequest { options: Some(edge), ..req() }, &s))
            .is_ok());
    }

    #[test]
    fn the_allow_list_answers_model_not_found() {
        let s = MainServiceSettings { allowed_models: vec!["m".into()], ..Default::default() };
        assert!(ValidatedRequest::try_from((req(), &s)).is_ok());
        let e =
            ValidatedRequest::try_from((GenerateRequest { model: "other".into(), ..req() }, &s))
                .unwrap_err();
        assert_eq!(e.kind, ErrorKind::ModelNotFound);
        // Together with other problems it is one more invalid field.
        let e = ValidatedRequest::try_from((
            GenerateRequest { model: "other".into(), messages: vec![], ..req() },
            &s,
        ))
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
        assert_eq!(e.fields.len(), 2);
    }

    #[test]
    fn summarize_requests_need_a_document() {
        let s = MainServiceSettings::default();
        let r = SummarizeRequest { model: "m".into(), document: "  ".into(), ..Default::default() };
        assert_eq!(ValidatedSummarize::try_from((r, &s)).unwrap_err().fields[0].field, "document");
    }

    #[test]
    fn embedding_requests_are_checked_at_the_edge() {
        use contract::{embed_input::Kind, EmbedInput, EmbedRequest, TokenIds};
        let text = |t: &str| EmbedInput { kind: Some(Kind::Text(t.into())) };
        let settings =
            MainServiceSettings { max_embed_inputs: 2, max_message_bytes: 8, ..Default::default() };
        let check = |inputs: Vec<EmbedInput>, dimensions| {
            ValidatedEmbed::try_from((
                EmbedRequest { model: "m".into(), inputs, dimensions, ..Default::default() },
                &settings,
            ))
        };
        assert!(check(
            vec![text("a"), EmbedInput { kind: Some(Kind::Tokens(TokenIds { ids: vec![1] })) }],
            Some(4)
        )
        .is_ok());
        let fields = |r: Result<ValidatedEmbed, ServiceError>| {
            r.unwrap_err().fields.into_iter().map(|f| f.field).collect::<Vec<_>>()
        };
        assert_eq!(fields(check(vec![], None)), ["inputs"]);
        assert_eq!(fields(check(vec![text("a"), text("b"), text("c")], None)), ["inputs"]);
        assert_eq!(
            fields(check(vec![text(""), EmbedInput { kind: None }], None)),
            ["inputs[0]", "inputs[1]"]
        );
        assert_eq!(fields(check(vec![text("far too long")], Some(0))), ["inputs[0]", "dimensions"]);
    }
}
