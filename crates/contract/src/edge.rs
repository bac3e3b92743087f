//! Checks every hop applies to input from outside before trusting it: how deep a JSON body
//! nests, what a model name may look like, and how much a length-delimited protobuf stream may
//! ask a reader to buffer. Pure functions, shared so that the LLM Server and MainService refuse
//! the same things in the same words.

use bytes::{Buf, BytesMut};

/// Whether a JSON text nests arrays and objects deeper than `max` levels. Counted on the raw
/// bytes before parsing (brackets inside strings do not count), so a hostile body costs one
/// linear scan and no allocation; invalid JSON is left to the parser to describe.
pub fn json_nests_deeper_than(json: &[u8], max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in json {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Why a model name was refused; `Display` is the message a client sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadModelName {
    Empty,
    TooLong {
        max: usize,
    },
    /// A character outside letters, digits and `. _ - : / @`.
    Character(char),
    /// Absolute, or climbing with `..`, or an empty or `.` path segment.
    PathLike,
    /// A `.gguf` file name where only catalog and configured names are accepted.
    FilePath,
}

impl std::fmt::Display for BadModelName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadModelName::Empty => f.write_str("invalid model name: empty"),
            BadModelName::TooLong { max } => write!(f, "invalid model name: longer than {max} bytes"),
            BadModelName::Character(c) => write!(f, "invalid model name: character {c:?} is not allowed (letters, digits and . _ - : / @ are)"),
            BadModelName::PathLike => f.write_str("invalid model name: it must not be an absolute path or contain empty, '.' or '..' segments"),
            BadModelName::FilePath => f.write_str("invalid model name: file paths are not accepted as model names here; name the file in the [models.models] table"),
        }
    }
}

impl std::error::Error for BadModelName {}

/// Checks a model name from a client: Ollama's alphabet (`namespace/name:tag`, registry hosts,
/// `@digest`) and Bedrock's model ids and ARNs, at most `max_bytes` long, never something a
/// filesystem would read as leaving a directory. `.gguf` names are file paths and are refused
/// unless `allow_files`.
pub fn check_model_name(
    name: &str,
    max_bytes: usize,
    allow_files: bool,
) -> Result<(), BadModelName> {
    if name.is_empty() {
        return Err(BadModelName::Empty);
    }
    if name.len() > max_bytes {
        return Err(BadModelName::TooLong { max: max_bytes });
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/' | '@')))
    {
        return Err(BadModelName::Character(c));
    }
    if name.starts_with('/')
        || name.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(BadModelName::PathLike);
    }
    if !allow_files && name.to_ascii_lowercase().ends_with(".gguf") {
        return Err(BadModelName::FilePath);
    }
    Ok(())
}

/// Why a length-delimited stream could not be read further.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix announces more than the reader accepts (or more than memory holds).
    TooLarge { len: u64, max: usize },
    /// The prefix is not a varint, or the message does not decode.
    Invalid(String),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLarge { len, max } => {
                write!(f, "a message of {len} bytes is announced; at most {max} are accepted")
            }
            FrameError::Invalid(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for FrameError {}

/// Takes the next length-delimited protobuf message off the front of `buf`, if it is complete.
/// A prefix announcing more than `max_message` bytes is an error at once, so a broken or
/// hostile peer cannot make the reader buffer without end. After an error the stream is
/// unusable: the caller must stop reading it.
pub fn next_length_delimited<M: prost::Message + Default>(
    buf: &mut BytesMut,
    max_message: usize,
) -> Option<Result<M, FrameError>> {
    // A varint is at most 10 bytes; decode it by hand so that no length can overflow.
    let mut len: u64 = 0;
    let mut prefix = 0usize;
    loop {
        let Some(&b) = buf.get(prefix) else {
            // Still incomplete: an empty buffer, or a prefix cut short.
            return None;
        };
        if prefix == 9 && b > 1 {
            return Some(Err(FrameError::Invalid(
                "invalid length prefix: varint overflows 64 bits".into(),
            )));
        }
        len |= u64::from(b & 0x7f) << (7 * prefix);
        prefix += 1;
        if b & 0x80 == 0 {
            break;
        }
        if prefix == 10 {
            return Some(Err(FrameError::Invalid(
                "invalid length prefix: varint longer than 10 bytes".into(),
            )));
        }
    }
    if len > max_message as u64 {
        return Some(Err(FrameError::TooLarge { len, max: max_message }));
    }
    let len = len as usize;
    // `buf` holds at least the prefix here; subtracting cannot overflow where adding could.
    if buf.len() - prefix < len {
        return None;
    }
    buf.advance(prefix);
    Some(M::decode(buf.split_to(len).freeze()).map_err(|e| FrameError::Invalid(e.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StreamChunk;
    use prost::Message as _;

    #[test]
    fn depth_counts_brackets_outside_strings_only() {
        assert!(!json_nests_deeper_than(br#"{"a":[1,{"b":2}]}"#, 3));
        assert!(json_nests_deeper_than(br#"{"a":[1,{"b":[]}]}"#, 3));
        assert!(!json_nests_deeper_than(br#"{"a":"[[[[[[\"{{{{"}"#, 1));
        assert!(json_nests_deeper_than(&b"[".repeat(100_000), 64));
        assert!(!json_nests_deeper_than(b"", 0));
    }

    #[test]
    fn model_names() {
        for ok in [
            "smollm2:135m",
            "library/llama3:8b",
            "registry.example:5000/ns/m:tag",
            "strata.smollm2-135m-instruct-v1:0",
            "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-micro-v1:0",
            "m@sha256:ab12",
        ] {
            assert_eq!(check_model_name(ok, 256, false), Ok(()), "{ok}");
        }
        let cases: [(&str, BadModelName); 9] = [
            ("", BadModelName::Empty),
            ("../../etc/passwd", BadModelName::PathLike),
            ("a/../b", BadModelName::PathLike),
            ("/abs/model", BadModelName::PathLike),
            ("a//b", BadModelName::PathLike),
            ("a\\b", BadModelName::Character('\\')),
            ("a\0b", BadModelName::Character('\0')),
            ("m\n", BadModelName::Character('\n')),
            ("x.gguf", BadModelName::FilePath),
        ];
        for (bad, why) in cases {
            assert_eq!(check_model_name(bad, 256, false), Err(why), "{bad:?}");
        }
        assert_eq!(
            check_model_name(&"m".repeat(257), 256, false),
            Err(BadModelName::TooLong { max: 256 })
        );
        assert_eq!(check_model_name("models/x.gguf", 256, true), Ok(()));
        assert_eq!(check_model_name("/models/x.gguf", 256, true), Err(BadModelName::PathLike));
    }

    #[test]
    fn frames_split_anywhere_are_joined_and_oversized_ones_refused() {
        let mut wire = Vec::new();
        StreamChunk::delta("hello").encode_length_delimited(&mut wire).unwrap();
        StreamChunk::delta("x".repeat(300)).encode_length_delimited(&mut wire).unwrap();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for byte in &wire {
            buf.extend_from_slice(&[*byte]);
            while let Some(c) = next_length_delimited::<StreamChunk>(&mut buf, 1024) {
                out.push(c.unwrap());
            }
        }
        assert_eq!(out.len(), 2);
        let mut buf = BytesMut::from(&wire[..]);
        assert_eq!(
            next_length_delimited::<StreamChunk>(&mut buf, 1024).unwrap().unwrap(),
            StreamChunk::delta("hello")
        );
        assert!(matches!(
            next_length_delimited::<StreamChunk>(&mut buf, 100),
            Some(Err(FrameError::TooLarge { .. }))
        ));
        // The largest varint there is: refused under a limit, awaited (not overflowed) without one.
        let max_varint = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert!(matches!(
            next_length_delimited::<StreamChunk>(&mut BytesMut::from(&max_varint[..]), 1024),
            Some(Err(FrameError::TooLarge { .. }))
        ));
        assert!(next_length_delimited::<StreamChunk>(
            &mut BytesMut::from(&max_varint[..]),
            usize::MAX
        )
        .is_none());
        let mut too_long = BytesMut::from(&[0xff; 11][..]);
        assert!(matches!(
            next_length_delimited::<StreamChunk>(&mut too_long, 1024),
            Some(Err(FrameError::Invalid(_)))
        ));
    }
}
