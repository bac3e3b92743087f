//! Keys as a setting: a TOML list, or one string of comma-separated keys, which is what an
//! environment variable gives (`STRATA_SERVER__API_KEYS=key1,key2`).

use serde::{Deserialize, Deserializer, Serialize};

/// Configured keys: read with [`deserialize_list`], written as a list, and never shown by
/// `Debug` (settings are debug-printed; keys must not be).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyList(#[serde(deserialize_with = "deserialize_list")] pub Vec<String>);

impl std::fmt::Debug for KeyList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{} keys]", self.0.len())
    }
}

impl KeyList {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `#[serde(deserialize_with = "api_keys::deserialize_list")]` for a `Vec<String>` of keys:
/// a list, or one comma-separated string; blanks are dropped, and a key made only of digits
/// (which an environment variable delivers as a number) is read as its text.
pub fn deserialize_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Key {
        Text(String),
        Unsigned(u64),
        Signed(i64),
    }
    impl Key {
        fn text(self) -> String {
            match self {
                Key::Text(s) => s,
                Key::Unsigned(n) => n.to_string(),
                Key::Signed(n) => n.to_string(),
            }
        }
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Keys {
        One(Key),
        Many(Vec<Key>),
    }
    let keys: Vec<String> = match Keys::deserialize(d)? {
        Keys::One(k) => k.text().split(',').map(str::to_owned).collect(),
        Keys::Many(v) => v.into_iter().map(Key::text).collect(),
    };
    Ok(keys.into_iter().map(|k| k.trim().to_owned()).filter(|k| !k.is_empty()).collect())
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize)]
    struct S {
        #[serde(deserialize_with = "super::deserialize_list")]
        keys: Vec<String>,
    }

    #[test]
    fn keys_from_a_list_or_a_comma_separated_string() {
        let read = |json: &str| serde_json::from_str::<S>(json).unwrap().keys;
        assert_eq!(read(r#"{"keys": " a, b,,c "}"#), ["a", "b", "c"]);
        assert_eq!(read(r#"{"keys": ["a", "b", 123]}"#), ["a", "b", "123"]);
        assert_eq!(read(r#"{"keys": 12345}"#), ["12345"]);
        assert!(read(r#"{"keys": []}"#).is_empty());
    }

    #[test]
    fn a_key_list_reads_the_same_and_never_debug_prints_its_keys() {
        let list: super::KeyList = serde_json::from_str(r#""k-1,k-2""#).unwrap();
        assert_eq!(list.0, ["k-1", "k-2"]);
        assert_eq!(format!("{list:?}"), "[2 keys]");
        assert_eq!(serde_json::to_string(&list).unwrap(), r#"["k-1","k-2"]"#);
    }
}
