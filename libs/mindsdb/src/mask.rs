//! Secret masking for everything an adapter returns.
//!
//! MindsDB masks some listings itself and not others (agents' `model.api_key` and
//! `GET /api/databases/{name}` come back in clear), so every adapter passes
//! connection data and model settings through [`mask_secrets`] before returning them.

use serde_json::Value;

/// What a masked secret reads as; the same text MindsDB uses.
pub const MASK: &str = "******";

/// Whether a settings key names a secret (`api_key`, `openai_api_key`, `password`, `token`...).
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    // `ends_with` for key/token so `max_tokens` and `key_columns`-style settings stay visible.
    ["password", "passwd", "secret", "credential", "api_key", "apikey"].iter().any(|n| k.contains(n))
        || k == "key"
        || k.ends_with("_key")
        || k.ends_with("token")
}

/// Replaces the value of every secret-named key, at any depth, with [`MASK`]; `null` stays
/// `null` so "not set" is still visible.
pub fn mask_secrets(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if is_secret_key(k) && !v.is_null() {
                    *v = Value::String(MASK.to_owned());
                } else {
                    mask_secrets(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_secrets),
        // MindsDB lists some settings as JSON text inside a cell.
        Value::String(s) if s.starts_with('{') => {
            if let Ok(mut inner) = serde_json::from_str::<Value>(s) {
                mask_secrets(&mut inner);
                *value = inner;
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn masks_nested_and_textual_secrets() {
        let mut v = json!({
            "model": {"provider": "openai", "api_key": "sk-1", "base_url": "http://x"},
            "connection": "{\"password\": \"pw\", \"host\": \"h\"}",
            "list": [{"openai_api_key": "sk-2"}],
            "token": null,
        });
        mask_secrets(&mut v);
        let text = v.to_string();
        assert!(!text.contains("sk-1") && !text.contains("sk-2") && !text.contains("\"pw\""), "{text}");
        assert_eq!(v["model"]["base_url"], "http://x");
        assert_eq!(v["connection"]["host"], "h");
        assert!(v["token"].is_null());
        let mut v = json!({"max_tokens": 10, "access_token": "t"});
        mask_secrets(&mut v);
        assert_eq!(v["max_tokens"], 10);
        assert_eq!(v["access_token"], MASK);
    }
}
