//! JSON Schema -> GBNF, for `format` schemas, OpenAI `json_schema` and tool arguments.
//!
//! The subset structured-output clients send (pydantic, zod, OpenAI strict schemas): `type`
//! (one or a list), `properties`/`required`/`additionalProperties`, `items` with
//! `minItems`/`maxItems`, `enum`, `const`, `anyOf`/`oneOf`, single-schema `allOf`, local `$ref`s
//! into `$defs`/`definitions` (recursive ones too), `nullable`, string `minLength`/`maxLength`
//! and the `date`, `time`, `date-time` and `uuid` formats. Annotations (`title`,
//! `description`, `default`, `examples`...) are ignored because they do not constrain. Any other
//! keyword is refused by name: a constraint we cannot enforce is never silently dropped.
//!
//! Objects produce exactly their declared properties, required ones always, in declaration
//! order; that output validates against the schema whatever `additionalProperties` says.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

/// A schema the converter cannot turn into a grammar; the message names the keyword and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SchemaError(pub String);

/// Keywords that describe but do not constrain.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "default",
    "examples",
    "example",
    "$schema",
    "$id",
    "$comment",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$defs",
    "definitions",
    "discriminator",
    "strict",
];

const PRIMITIVES: &[(&str, &str)] = &[
    ("space", r#"| " ""#),
    ("boolean", r#"("true" | "false") space"#),
    ("null", r#""null" space"#),
    ("integer", r#"("-"? ([0-9] | [1-9] [0-9]{0,15})) space"#),
    (
        "number",
        r#"("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9]{1,3})? space"#,
    ),
    ("char", r#"[^"\\\x7F\x00-\x1F] | [\\] (["\\/bfnrt] | "u" [0-9a-fA-F]{4})"#),
    ("string", r#""\"" char* "\"" space"#),
    ("value", r#"object | array | string | number | boolean | null"#),
    (
        "object",
        r#""{" space ( string ":" space value ("," space string ":" space value)* )? "}" space"#,
    ),
    ("array", r#""[" space ( value ("," space value)* )? "]" space"#),
    ("digit2", r#"[0-9] [0-9]"#),
    (
        "date",
        r#"[0-9] [0-9] [0-9] [0-9] "-" ( "0" [1-9] | "1" [0-2] ) "-" ( "0" [1-9] | [1-2] [0-9] | "3" [0-1] )"#,
    ),
    (
        "time",
        r#"( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{1,6} )? ( "Z" | [+-] digit2 ":" digit2 )"#,
    ),
    ("hex4", r#"[0-9a-fA-F]{4}"#),
    ("uuid", r#"hex4 hex4 "-" hex4 "-" hex4 "-" hex4 "-" hex4 hex4 hex4"#),
];

/// A GBNF grammar under construction: named rules, the primitives added as they are used.
#[derive(Debug, Default)]
pub struct GrammarBuilder {
    rules: BTreeMap<String, String>,
    /// `$ref` target -> its rule, so a recursive definition refers to itself.
    refs: HashMap<String, String>,
}

impl GrammarBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a rule under a fresh name based on `name` and returns that name.
    pub fn rule(&mut self, name: &str, body: impl Into<String>) -> String {
        let name = self.fresh(name);
        self.rules.insert(name.clone(), body.into());
        name
    }

    fn fresh(&self, name: &str) -> String {
        let base: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
            .collect();
        let base = if base.is_empty() || base.starts_with(|c: char| c.is_ascii_digit()) {
            format!("r-{base}")
        } else {
            base
        };
        if !self.taken(&base) {
            return base;
        }
        (1..).map(|n| format!("{base}-{n}")).find(|n| !self.taken(n)).expect("some suffix is free")
    }

    fn taken(&self, name: &str) -> bool {
        self.rules.contains_key(name)
            || PRIMITIVES.iter().any(|(p, _)| *p == name)
            || name == "root"
    }

    /// Uses a primitive rule (`string`, `value`...), adding it and what it needs.
    pub fn primitive(&mut self, name: &str) -> String {
        let needs: &[&str] = match name {
            "string" => &["char", "space"],
            "value" | "object" | "array" => {
                &["object", "array", "string", "number", "boolean", "null", "char", "space"]
            }
            "time" => &["digit2"],
            "uuid" => &["hex4"],
            _ => &["space"],
        };
        for n in std::iter::once(&name).chain(needs) {
            if let Some((_, body)) = PRIMITIVES.iter().find(|(p, _)| p == n) {
                self.rules.entry((*n).to_owned()).or_insert_with(|| (*body).to_owned());
            }
        }
        name.to_owned()
    }

    /// The grammar text with `root ::= root_body`.
    pub fn finish(self, root_body: &str) -> String {
        let mut out = format!("root ::= {root_body}\n");
        for (name, body) in &self.rules {
            out.push_str(&format!("{name} ::= {body}\n"));
        }
        out
    }

    /// Adds the rules for `schema` (whose `$ref`s resolve in `root`) and returns the rule
    /// name that matches one value of it.
    pub fn schema(
        &mut self,
        name: &str,
        schema: &Value,
        root: &Value,
    ) -> Result<String, SchemaError> {
        self.visit(name, schema, root, "")
    }

    fn visit(
        &mut self,
        name: &str,
        schema: &Value,
        root: &Value,
        at: &str,
    ) -> Result<String, SchemaError> {
        let obj = match schema {
            Value::Bool(true) => return Ok(self.primitive("value")),
            Value::Bool(false) => {
                return Err(SchemaError(format!("the schema at {} allows no value", place(at))))
            }
            Value::Object(o) => o,
            other => {
                return Err(SchemaError(format!(
                    "the schema at {} must be an object, not {other}",
                    place(at)
                )))
            }
        };
        check_keywords(obj, at)?;
        if let Some(r) = obj.get("$ref") {
            return self.reference(r, root, at);
        }
        if let Some(c) = obj.get("const") {
            return Ok(self.rule(name, literal(c)));
        }
        if let Some(e) = obj.get("enum") {
            let Some(values) = e.as_array().filter(|v| !v.is_empty()) else {
                return Err(SchemaError(format!(
                    "\"enum\" at {} must be a non-empty array",
                    place(at)
                )));
            };
            let body = values.iter().map(literal).collect::<Vec<_>>().join(" | ");
            return Ok(self.rule(name, body));
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(list) = obj.get(key) {
                let Some(list) = list.as_array().filter(|l| !l.is_empty()) else {
                    return Err(SchemaError(format!(
                        "\"{key}\" at {} must be a non-empty array",
                        place(at)
                    )));
                };
                let mut alts = Vec::with_capacity(list.len());
                for (i, s) in list.iter().enumerate() {
                    alts.push(self.visit(
                        &format!("{name}-{i}"),
                        s,
                        root,
                        &format!("{at}/{key}/{i}"),
                    )?);
                }
                return Ok(self.rule(name, alts.join(" | ")));
            }
        }
        if let Some(all) = obj.get("allOf") {
            return match all.as_array().map(Vec::as_slice) {
                Some([only]) => self.visit(name, only, root, &format!("{at}/allOf/0")),
                _ => Err(SchemaError(format!(
                    "\"allOf\" with more than one schema (at {}) is not supported",
                    place(at)
                ))),
            };
        }
        let mut types: Vec<&str> = match obj.get("type") {
            None => Vec::new(),
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts
                .iter()
                .map(|t| t.as_str().ok_or_else(|| bad_type(at)))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(bad_type(at)),
        };
        if obj.get("nullable") == Some(&Value::Bool(true))
            && !types.is_empty()
            && !types.contains(&"null")
        {
            types.push("null");
        }
        if types.is_empty() {
            if obj.contains_key("properties")
                || obj.contains_key("additionalProperties")
                || obj.contains_key("required")
            {
                types.push("object");
            } else if obj.contains_key("items") {
                types.push("array");
            } else {
                return Ok(self.primitive("value"));
            }
        }
        let mut alts = Vec::with_capacity(types.len());
        for t in types {
            alts.push(match t {
                "object" => self.object(name, obj, root, at)?,
                "array" => self.array(name, obj, root, at)?,
                "string" => self.string(name, obj, at)?,
                "integer" | "number" | "boolean" | "null" => self.primitive(t),
                other => {
                    return Err(SchemaError(format!("unknown type \"{other}\" at {}", place(at))))
                }
            });
        }
        Ok(if alts.len() == 1 { alts.remove(0) } else { self.rule(name, alts.join(" | ")) })
    }

    fn reference(&mut self, r: &Value, root: &Value, at: &str) -> Result<String, SchemaError> {
        let Some(target) = r.as_str() else {
            return Err(SchemaError(format!("\"$ref\" at {} must be a string", place(at))));
        };
        if let Some(rule) = self.refs.get(target) {
            return Ok(rule.clone());
        }
        let Some(pointer) = target.strip_prefix('#') else {
            return Err(SchemaError(format!("\"$ref\" \"{target}\" is not supported: only references inside the schema (\"#/$defs/...\")")));
        };
        let Some(resolved) = root.pointer(pointer) else {
            return Err(SchemaError(format!(
                "\"$ref\" \"{target}\" points to nothing in the schema"
            )));
        };
        let label = pointer.rsplit('/').next().unwrap_or("ref");
        // Reserve the name first: a definition that refers to itself gets this rule.
        let rule = self.rule(label, "\"\"");
        self.refs.insert(target.to_owned(), rule.clone());
        let body = self.visit(&format!("{rule}-body"), resolved, root, pointer)?;
        self.rules.insert(rule.clone(), body);
        Ok(rule)
    }

    fn object(
        &mut self,
        name: &str,
        obj: &Map<String, Value>,
        root: &Value,
        at: &str,
    ) -> Result<String, SchemaError> {
        let properties = match obj.get("properties") {
            None => None,
            Some(Value::Object(p)) => Some(p),
            Some(_) => {
                return Err(SchemaError(format!(
                    "\"properties\" at {} must be an object",
                    place(at)
                )))
            }
        };
        let required: Vec<&str> = match obj.get("required") {
            None => Vec::new(),
            Some(Value::Array(r)) => r
                .iter()
                .map(|v| {
                    v.as_str().ok_or_else(|| {
                        SchemaError(format!("\"required\" at {} must list names", place(at)))
                    })
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(SchemaError(format!("\"required\" at {} must be an array", place(at))))
            }
        };
        let Some(properties) = properties.filter(|p| !p.is_empty()) else {
            if let Some(extra) = obj.get("additionalProperties").filter(|v| v.is_object()) {
                // A map: any keys, values of one schema.
                let value = self.visit(
                    &format!("{name}-value"),
                    extra,
                    root,
                    &format!("{at}/additionalProperties"),
                )?;
                let string = self.primitive("string");
                let kv = format!("{string} \":\" space {value}");
                return Ok(self.rule(
                    name,
                    format!("\"{{\" space ( {kv} (\",\" space {kv})* )? \"}}\" space"),
                ));
            }
            if let Some(missing) = required.first() {
                return Err(SchemaError(format!(
                    "\"required\" names \"{missing}\" at {} but the object declares no properties",
                    place(at)
                )));
            }
            return Ok(self.primitive("object"));
        };
        for r in &required {
            if !properties.contains_key(*r) {
                return Err(SchemaError(format!(
                    "\"required\" names \"{r}\" at {}, which is not among its properties",
                    place(at)
                )));
            }
        }
        let space = self.primitive("space");
        let mut pairs = Vec::with_capacity(properties.len());
        for (key, schema) in properties {
            let value = self.visit(
                &format!("{name}-{key}"),
                schema,
                root,
                &format!("{at}/properties/{key}"),
            )?;
            let pair = format!(
                "{} \":\" {space} {value}",
                literal_str(&Value::String(key.clone()).to_string())
            );
            pairs.push((
                required.contains(&key.as_str()),
                self.rule(&format!("{name}-{key}-kv"), pair),
            ));
        }
        let req: Vec<&str> = pairs.iter().filter(|(r, _)| *r).map(|(_, p)| p.as_str()).collect();
        let opt: Vec<&str> = pairs.iter().filter(|(r, _)| !*r).map(|(_, p)| p.as_str()).collect();
        let body = if req.is_empty() {
            // Any subset of the optional properties, in order: each alternative starts with a
            // different first property.
            let mut alts = Vec::with_capacity(opt.len());
            for i in 0..opt.len() {
                let mut alt = opt[i].to_owned();
                for rest in &opt[i + 1..] {
                    alt.push_str(&format!(" (\",\" space {rest})?"));
                }
                alts.push(alt);
            }
            format!("( {} )?", alts.join(" | "))
        } else {
            // Required properties first, then each optional one may follow.
            let mut seq = req.join(" \",\" space ");
            for o in &opt {
                seq.push_str(&format!(" (\",\" space {o})?"));
            }
            seq
        };
        Ok(self.rule(name, format!("\"{{\" space {body} \"}}\" space")))
    }

    fn array(
        &mut self,
        name: &str,
        obj: &Map<String, Value>,
        root: &Value,
        at: &str,
    ) -> Result<String, SchemaError> {
        let item = match obj.get("items") {
            None => self.primitive("value"),
            Some(s) => self.visit(&format!("{name}-item"), s, root, &format!("{at}/items"))?,
        };
        let min = count(obj, "minItems", at)?.unwrap_or(0);
        let max = count(obj, "maxItems", at)?;
        if max.is_some_and(|m| m < min) {
            return Err(SchemaError(format!(
                "\"maxItems\" is below \"minItems\" at {}",
                place(at)
            )));
        }
        let body = match max {
            Some(0) => "\"[\" space \"]\" space".to_owned(),
            _ => {
                let more = repeat(min.saturating_sub(1), max.map(|m| m - 1));
                let items = format!("{item} (\",\" space {item}){more}");
                if min == 0 {
                    format!("\"[\" space ( {items} )? \"]\" space")
                } else {
                    format!("\"[\" space {items} \"]\" space")
                }
            }
        };
        Ok(self.rule(name, body))
    }

    fn string(
        &mut self,
        name: &str,
        obj: &Map<String, Value>,
        at: &str,
    ) -> Result<String, SchemaError> {
        if let Some(format) = obj.get("format") {
            let rule = match format.as_str() {
                Some("date") => "date",
                Some("time") => "time",
                Some("date-time") => "date-time",
                Some("uuid") => "uuid",
                _ => return Err(SchemaError(format!("string \"format\" {format} at {} is not supported (date, time, date-time and uuid are)", place(at)))),
            };
            let body = if rule == "date-time" {
                self.primitive("date");
                self.primitive("time");
                "\"\\\"\" date \"T\" time \"\\\"\" space".to_owned()
            } else {
                self.primitive(rule);
                format!("\"\\\"\" {rule} \"\\\"\" space")
            };
            self.primitive("space");
            return Ok(self.rule(name, body));
        }
        let min = count(obj, "minLength", at)?;
        let max = count(obj, "maxLength", at)?;
        if min.is_none() && max.is_none() {
            return Ok(self.primitive("string"));
        }
        self.primitive("string");
        let chars = repeat(min.unwrap_or(0), max);
        Ok(self.rule(name, format!("\"\\\"\" char{chars} \"\\\"\" space")))
    }
}

fn check_keywords(obj: &Map<String, Value>, at: &str) -> Result<(), SchemaError> {
    const HANDLED: &[&str] = &[
        "$ref",
        "const",
        "enum",
        "anyOf",
        "oneOf",
        "allOf",
        "type",
        "nullable",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "minItems",
        "maxItems",
        "format",
        "minLength",
        "maxLength",
    ];
    for key in obj.keys() {
        if !HANDLED.contains(&key.as_str()) && !ANNOTATIONS.contains(&key.as_str()) {
            return Err(SchemaError(format!(
                "JSON schema keyword \"{key}\" (at {}) is not supported",
                place(at)
            )));
        }
    }
    if obj.get("additionalProperties").is_some_and(|v| !(v.is_boolean() || v.is_object())) {
        return Err(SchemaError(format!(
            "\"additionalProperties\" at {} must be a boolean or a schema",
            place(at)
        )));
    }
    Ok(())
}

fn place(at: &str) -> String {
    if at.is_empty() {
        "the top level".into()
    } else {
        at.to_owned()
    }
}

fn bad_type(at: &str) -> SchemaError {
    SchemaError(format!("\"type\" at {} must be a string or a list of strings", place(at)))
}

/// The largest `minItems`/`maxItems`/`minLength`/`maxLength` a grammar is built for: counts
/// become repetitions in the grammar, and a huge one would be a request that eats the server.
pub const MAX_COUNT: u64 = 10_000;

fn count(obj: &Map<String, Value>, key: &str, at: &str) -> Result<Option<u64>, SchemaError> {
    match obj.get(key) {
        None => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n > MAX_COUNT => Err(SchemaError(format!(
                "\"{key}\" at {} is {n}; at most {MAX_COUNT} is supported",
                place(at)
            ))),
            Some(n) => Ok(Some(n)),
            None => Err(SchemaError(format!(
                "\"{key}\" at {} must be a non-negative integer",
                place(at)
            ))),
        },
    }
}

/// GBNF repetition `{min,max}` (max open when `None`).
fn repeat(min: u64, max: Option<u64>) -> String {
    match (min, max) {
        (0, None) => "*".into(),
        (1, None) => "+".into(),
        (min, None) => format!("{{{min},}}"),
        (min, Some(max)) => format!("{{{min},{max}}}"),
    }
}

/// The exact JSON text of `v` as a GBNF literal, then optional space.
pub fn literal(v: &Value) -> String {
    format!("{} space", literal_str(&v.to_string()))
}

/// A GBNF string literal spelling `text`.
pub fn literal_str(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The grammar for one value of `schema`.
pub fn grammar(schema: &Value) -> Result<String, SchemaError> {
    let mut g = GrammarBuilder::new();
    let root = g.schema("value-of", schema, schema)?;
    Ok(g.finish(&root))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(schema: Value) -> String {
        grammar(&schema).unwrap_err().0
    }

    #[test]
    fn supported_schemas_convert() {
        let pydantic = json!({
            "$defs": {"Pet": {"properties": {"name": {"title": "Name", "type": "string"}, "kind": {"enum": ["cat", "dog"]}},
                               "required": ["name", "kind"], "title": "Pet", "type": "object"}},
            "properties": {"owner": {"type": "string", "maxLength": 20}, "pets": {"items": {"$ref": "#/$defs/Pet"}, "type": "array", "maxItems": 3},
                           "age": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": null},
                           "born": {"type": "string", "format": "date"}},
            "required": ["owner", "pets"], "title": "Owner", "type": "object"
        });
        let cases = [
            json!({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"], "additionalProperties": false}),
            json!({"type": ["string", "null"]}),
            json!({"type": "string", "nullable": true}),
            json!({"const": "x"}),
            json!({"type": "array", "items": {"type": "number"}, "minItems": 2}),
            json!({"type": "object", "additionalProperties": {"type": "boolean"}}),
            json!({"type": "object", "properties": {"a": {}, "b": true}}),
            json!({"$defs": {"node": {"type": "object", "properties": {"next": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]}}}}, "$ref": "#/$defs/node"}),
            json!({"allOf": [{"type": "string", "format": "uuid"}]}),
            json!({"type": "string", "format": "date-time", "description": "when"}),
            json!({}),
            pydantic,
        ];
        for schema in cases {
            let g = grammar(&schema).unwrap_or_else(|e| panic!("{schema}: {e}"));
            assert!(g.starts_with("root ::= "), "{g}");
            for line in g.lines() {
                assert!(line.contains(" ::= "), "{line}");
            }
        }
    }

    #[test]
    fn unsupported_keywords_are_refused_by_name() {
        assert_eq!(
            err(json!({"type": "string", "pattern": "^a+$"})),
            "JSON schema keyword \"pattern\" (at the top level) is not supported"
        );
        assert!(err(
            json!({"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}})
        )
        .contains("\"minimum\" (at /properties/n)"));
        assert!(err(json!({"type": "string", "format": "email"})).contains("\"format\" \"email\""));
        assert!(err(json!({"allOf": [{"type": "string"}, {"maxLength": 3}]})).contains("allOf"));
        assert!(err(json!({"$ref": "https://example.com/s.json"}))
            .contains("only references inside the schema"));
        assert!(err(json!({"$ref": "#/$defs/missing"})).contains("points to nothing"));
        assert!(err(json!({"type": "object", "properties": {"a": {}}, "required": ["b"]}))
            .contains("\"b\""));
        assert!(err(json!({"type": "wizard"})).contains("unknown type \"wizard\""));
        assert!(err(json!({"enum": []})).contains("non-empty"));
        assert!(err(json!({"type": "array", "minItems": 3, "maxItems": 1})).contains("maxItems"));
        assert!(err(json!(3)).contains("must be an object"));
        assert!(err(json!({"type": "array", "minItems": 1_000_000_000_000u64}))
            .contains("at most 10000"));
    }

    #[test]
    fn literals_escape_what_gbnf_would_read() {
        assert_eq!(literal_str(r#"{"a":"b\n"}"#), r#""{\"a\":\"b\\n\"}""#);
        assert_eq!(literal(&json!("q\"")), r#""\"q\\\"\"" space"#);
    }

    #[test]
    fn objects_keep_required_properties_and_order() {
        let g = grammar(&json!({"type": "object", "properties": {"b": {"type": "boolean"}, "a": {"type": "null"}}, "required": ["a"]})).unwrap();
        // Required `a` first, then optional `b`.
        let root = g.lines().find(|l| l.starts_with("value-of ::=")).unwrap();
        assert!(root.contains("value-of-a-kv (\",\" space value-of-b-kv)?"), "{g}");
    }
}
