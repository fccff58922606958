//! One rule for every list API: page sizes and page tokens.
//!
//! `page_size` 0 asks for the default ([`DEFAULT_PAGE_SIZE`]), larger than [`MAX_PAGE_SIZE`] is
//! clamped to it, negative is refused. Tokens are opaque to clients: base64url of the query kind
//! they were issued for and the position, so a token from one list cannot be replayed on another.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::ApiError;

/// Items in a page when the request says 0.
pub const DEFAULT_PAGE_SIZE: i64 = 50;
/// Most items in one page, whatever the request says.
pub const MAX_PAGE_SIZE: i64 = 500;

/// The number of items to return for a requested `page_size`.
pub fn page_size(requested: i32) -> Result<i64, ApiError> {
    match requested {
        s if s < 0 => Err(ApiError::invalid_argument(format!("page.page_size: must not be negative (got {s})"))),
        0 => Ok(DEFAULT_PAGE_SIZE),
        s => Ok(i64::from(s).min(MAX_PAGE_SIZE)),
    }
}

/// A page token for `position` in the list `kind` (e.g. `agents`, or a conversation id).
pub fn encode_page_token(kind: &str, position: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}|{position}"))
}

/// The position a token issued for `kind` names; `None` for an empty token (the first page).
pub fn decode_page_token(kind: &str, token: &str) -> Result<Option<String>, ApiError> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || ApiError::invalid_argument("page.page_token: is not a token this list returned");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    match text.split_once('|') {
        Some((k, position)) if k == kind => Ok(Some(position.to_owned())),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert!(page_size(-1).is_err());
        assert_eq!(page_size(0).unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(7).unwrap(), 7);
        assert_eq!(page_size(i32::MAX).unwrap(), MAX_PAGE_SIZE);
    }

    #[test]
    fn tokens_are_bound_to_their_list() {
        let t = encode_page_token("agents", "b|c");
        assert_eq!(decode_page_token("agents", &t).unwrap().as_deref(), Some("b|c"));
        assert!(decode_page_token("skills", &t).is_err());
        assert!(decode_page_token("agents", "!!").is_err());
        assert_eq!(decode_page_token("agents", "").unwrap(), None);
    }
}
