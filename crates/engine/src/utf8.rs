//! Tokens are byte sequences that can split a UTF-8 character; this turns a stream of token
//! bytes into a stream of whole characters.

#[derive(Debug, Default)]
pub struct Utf8Stream {
    buf: Vec<u8>,
}

impl Utf8Stream {
    /// Appends bytes and returns the longest complete UTF-8 text now available.
    /// Invalid sequences become U+FFFD rather than being held forever.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.buf.extend_from_slice(bytes);
        match std::str::from_utf8(&self.buf) {
            Ok(s) => {
                let out = s.to_owned();
                self.buf.clear();
                out
            }
            Err(e) => {
                let valid = e.valid_up_to();
                match e.error_len() {
                    // Incomplete character at the end: release what is valid, keep the rest.
                    None => {
                        let out = String::from_utf8_lossy(&self.buf[..valid]).into_owned();
                        self.buf.drain(..valid);
                        out
                    }
                    // Truly invalid bytes: replace them and go on.
                    Some(_) => {
                        let out = String::from_utf8_lossy(&self.buf).into_owned();
                        self.buf.clear();
                        out
                    }
                }
            }
        }
    }

    /// Whatever is left at the end of generation (an incomplete character becomes U+FFFD).
    pub fn flush(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.buf).into_owned();
        self.buf.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_split_characters() {
        let mut s = Utf8Stream::default();
        let bytes = "né😀".as_bytes();
        assert_eq!(s.push(&bytes[..2]), "n");
        assert_eq!(s.push(&bytes[2..4]), "é");
        assert_eq!(s.push(&bytes[4..6]), "");
        assert_eq!(s.push(&bytes[6..]), "😀");
        assert_eq!(s.flush(), "");
    }

    #[test]
    fn invalid_bytes_do_not_stall() {
        let mut s = Utf8Stream::default();
        assert_eq!(s.push(&[b'a', 0xff, b'b']), "a\u{fffd}b");
        assert_eq!(s.push(&[0xe2, 0x82]), "");
        assert_eq!(s.flush(), "\u{fffd}");
    }
}
