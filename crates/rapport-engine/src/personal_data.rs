//! Which traits, properties and identifier types are personal data, and the masker that
//! hides their values from keys that may only read without personal data (`read_masked`).
//!
//! The configuration lives in one state-store record ([`NS_PERSONAL_DATA`]), written only
//! by the personal-data route of the API; none stored reads as [`PersonalData::default`].
//! The masker is a pure function over the JSON of an answer, so every route's answer is
//! masked the same way, new routes included.

use crate::EngineError;
use rapport_store::{StateStore, StateWrite};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The namespace of the personal-data configuration.
pub const NS_PERSONAL_DATA: &str = "personal_data";
const PARTITION: &str = "all";
const KEY: &[u8] = b"config";
/// What a masked value reads as.
pub const MASK: &str = "***";
/// The fields that hold a customer's data, in events, profiles and payloads.
const DATA_FIELDS: &[&str] = &["traits", "properties", "context", "computed"];
/// Most names in one list.
pub const MAX_NAMES: usize = 1_000;

/// Names whose values are personal data, wherever they appear in an answer (a profile's
/// traits, an event's `properties`, `traits` or `context`, a dead letter's payload, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonalData {
    /// Trait names (`email`, `phone`, …).
    pub traits: Vec<String>,
    /// Event property names.
    pub properties: Vec<String>,
    /// Identifier types whose values are personal (`email`, `phone`).
    pub identifier_types: Vec<String>,
}

impl Default for PersonalData {
    fn default() -> Self {
        let names = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect();
        PersonalData {
            traits: names(&[
                "email",
                "phone",
                "name",
                "first_name",
                "last_name",
                "firstName",
                "lastName",
                "address",
                "street",
                "postal_code",
                "postalCode",
                "zip",
                "birthday",
                "ip",
            ]),
            properties: names(&["email", "phone", "name", "address", "ip"]),
            identifier_types: names(&["email", "phone"]),
        }
    }
}

impl PersonalData {
    /// Checks the lists; the error names the field (`traits[2]`).
    pub fn validate(&self) -> Result<(), EngineError> {
        for (field, list) in [
            ("traits", &self.traits),
            ("properties", &self.properties),
            ("identifier_types", &self.identifier_types),
        ] {
            if list.len() > MAX_NAMES {
                return Err(EngineError::InvalidAt {
                    field: field.into(),
                    message: format!("at most {MAX_NAMES} names"),
                });
            }
            for (i, n) in list.iter().enumerate() {
                if n.is_empty() || n.len() > 256 || n.trim() != n {
                    return Err(EngineError::InvalidAt {
                        field: format!("{field}[{i}]"),
                        message: "a name is 1 to 256 bytes, without surrounding spaces".into(),
                    });
                }
            }
        }
        Ok(())
    }

    fn is_personal_name(&self, name: &str) -> bool {
        self.traits
            .iter()
            .chain(&self.properties)
            .chain(&self.identifier_types)
            .any(|n| n.eq_ignore_ascii_case(name))
    }

    fn is_personal_type(&self, kind: &str) -> bool {
        self.identifier_types
            .iter()
            .any(|t| t.eq_ignore_ascii_case(kind))
    }

    /// `value` with personal data masked: inside a customer's data — the value of a field
    /// named `traits`, `properties`, `context` or `computed`, at any depth — the value of
    /// every field named personal (whatever its type) becomes [`MASK`]; anywhere, so does
    /// the `value` of an identifier object (`{"type": "email", "value": …}`) of a personal
    /// type, and what follows a reference of a personal type in text
    /// (`email:ann@example.com` → `email:***`). Outside customer data, names are left
    /// alone, so that a segment's or a key's `name` stays readable.
    pub fn mask(&self, value: &mut Value) {
        self.walk(value, false);
    }

    fn walk(&self, value: &mut Value, in_data: bool) {
        match value {
            Value::Object(map) => {
                let personal_identifier = map
                    .get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| self.is_personal_type(t));
                for (k, v) in map.iter_mut() {
                    if v.is_null() {
                        continue;
                    }
                    if (in_data && self.is_personal_name(k))
                        || (personal_identifier && k == "value")
                    {
                        *v = Value::String(MASK.into());
                    } else {
                        self.walk(v, in_data || DATA_FIELDS.contains(&k.as_str()));
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.walk(v, in_data)),
            Value::String(text) => {
                if let Some(masked) = self.mask_text(text) {
                    *text = masked;
                }
            }
            _ => {}
        }
    }

    /// Text masked, if it needs to be. JSON held as text (a dead letter's request body, a
    /// log entry) is masked as JSON; text that looks like JSON but does not parse (cut at
    /// 2 KiB) is masked whole, since its fields cannot be told apart; other text has its
    /// references of personal types and its e-mail addresses masked.
    fn mask_text(&self, text: &str) -> Option<String> {
        let trimmed = text.trim_start();
        if trimmed.starts_with('{') || trimmed.starts_with('[') {
            return Some(match serde_json::from_str::<Value>(text) {
                Ok(mut v) => {
                    self.mask(&mut v);
                    v.to_string()
                }
                Err(_) => MASK.to_owned(),
            });
        }
        let referenced = self.mask_references(text);
        let base = referenced.as_deref().unwrap_or(text);
        if !base.contains('@') {
            return referenced;
        }
        let mut changed = false;
        let words: Vec<String> = base
            .split(' ')
            .map(|w| {
                let at = w.find('@');
                let looks_like_address = at.is_some_and(|i| i > 0 && w[i + 1..].contains('.'));
                if looks_like_address && w != MASK {
                    changed = true;
                    MASK.to_owned()
                } else {
                    w.to_owned()
                }
            })
            .collect();
        if changed {
            Some(words.join(" "))
        } else {
            referenced
        }
    }

    /// `text` with every `type:value` reference of a personal type masked, if it has one.
    fn mask_references(&self, text: &str) -> Option<String> {
        let mut out = text.to_owned();
        let mut changed = false;
        for kind in &self.identifier_types {
            let needle = format!("{kind}:");
            let mut from = 0;
            while let Some(at) = out[from..].find(&needle).map(|i| i + from) {
                let start = at + needle.len();
                // Only at a word's start: `hemail:x` is not a reference.
                let boundary = out[..at]
                    .chars()
                    .next_back()
                    .is_none_or(|c| !c.is_alphanumeric() && c != '_');
                let end = out[start..]
                    .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ',' | ')'))
                    .map_or(out.len(), |i| i + start);
                if boundary && end > start && &out[start..end] != MASK {
                    out.replace_range(start..end, MASK);
                    changed = true;
                    from = start + MASK.len();
                } else {
                    from = start;
                }
            }
        }
        changed.then_some(out)
    }
}

/// The configuration in force.
pub fn load(store: &dyn StateStore) -> Result<PersonalData, EngineError> {
    match store.state_get(NS_PERSONAL_DATA, PARTITION, KEY)? {
        None => Ok(PersonalData::default()),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| EngineError::Corrupt(format!("the personal-data configuration: {e}"))),
    }
}

/// Replaces the configuration (validated).
pub fn save(store: &dyn StateStore, config: &PersonalData) -> Result<(), EngineError> {
    config.validate()?;
    store.state_commit(
        &[StateWrite {
            namespace: NS_PERSONAL_DATA.into(),
            profile: PARTITION.into(),
            key: KEY.to_vec(),
            value: Some(serde_json::to_vec(config).expect("config serialises")),
        }],
        None,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn personal_values_are_masked_at_any_depth() {
        let config = PersonalData::default();
        let mut v = json!({
            "id": "p_1",
            "identifiers": [{"type": "email", "value": "ann@example.com"},
                            {"type": "user_id", "value": "42"}],
            "traits": {"email": "ann@example.com", "plan": "pro", "Phone": "+33 1",
                       "address": {"city": "Paris"}, "name": null},
            "data": [{"properties": {"email": "b@x.io", "total": 3},
                      "context": {"ip": "203.0.113.7", "traits": {"lastName": "Doe"}}}],
            "message": "no profile email:ann@example.com here; hemail:x stays",
            "name": "a segment's name stays",
            "request_body": "{\"traits\":{\"email\":\"ann@example.com\",\"plan\":\"pro\"}}",
            "cut": "{\"traits\":{\"email\":\"ann@exa",
            "response_body": "unknown user ann@example.com, sorry",
        });
        config.mask(&mut v);
        assert_eq!(
            v,
            json!({
                "id": "p_1",
                "identifiers": [{"type": "email", "value": "***"},
                                {"type": "user_id", "value": "42"}],
                "traits": {"email": "***", "plan": "pro", "Phone": "***",
                           "address": "***", "name": null},
                "data": [{"properties": {"email": "***", "total": 3},
                          "context": {"ip": "***", "traits": {"lastName": "***"}}}],
                "message": "no profile email:*** here; hemail:x stays",
                "name": "a segment's name stays",
                "request_body": "{\"traits\":{\"email\":\"***\",\"plan\":\"pro\"}}",
                "cut": "***",
                "response_body": "unknown user *** sorry",
            })
        );
        let bad = PersonalData {
            traits: vec!["ok".into(), " no".into()],
            ..PersonalData::default()
        };
        assert!(
            matches!(bad.validate(), Err(EngineError::InvalidAt { field, .. }) if field == "traits[1]")
        );
    }
}
