//! Property tests of the one SQL builder: identifiers cannot carry anything but the pattern,
//! values never reach the statement text, and an inlined value is one string literal that the
//! 26.1 lexer and unquoter give back exactly.

// A failed unwrap in a helper is the test failing, with its location.
#![allow(clippy::unwrap_used)]

use getlood_mindsdb::{Ident, SqlBuilder, check_inline_str};
use proptest::prelude::*;
use serde_json::Value;

/// What MindsDB 26.1 reads back from a string literal at the start of `text`: the lexer's token
/// (`'(?:\\.|[^'])*(?:''(?:\\.|[^'])*)*'`), then the unquoter (`''` -> `'`, strip quotes), and
/// the rest of the text after the token.
fn lex_string(text: &str) -> Option<(String, &str)> {
    let bytes = text.as_bytes();
    if bytes.first() != Some(&b'\'') {
        return None;
    }
    let mut i = 1;
    let mut out = Vec::new();
    loop {
        match bytes.get(i)? {
            b'\\' => {
                out.extend_from_slice(bytes.get(i..i + 2)?);
                i += 2;
            }
            b'\'' if bytes.get(i + 1) == Some(&b'\'') => {
                out.push(b'\'');
                i += 2;
            }
            b'\'' => return Some((String::from_utf8(out).ok()?, &text[i + 1..])),
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn identifiers_are_exactly_the_pattern(raw in ".{0,80}") {
        let ok = !raw.is_empty()
            && raw.len() <= 63
            && raw.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && raw.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        prop_assert_eq!(Ident::new(&raw).is_ok(), ok);
    }

    #[test]
    fn an_accepted_identifier_stays_inside_its_backticks(raw in "[a-z_][a-z0-9_]{0,62}") {
        let id = Ident::new(&raw).unwrap();
        let text = SqlBuilder::new().kw("SELECT * FROM").ident(&id).build().text();
        prop_assert_eq!(text, format!("SELECT * FROM `{raw}`"));
    }

    #[test]
    fn values_never_reach_the_text(a in ".{0,200}", b in ".{0,200}", n in any::<i64>()) {
        let build = |v: &str| SqlBuilder::new().kw("SELECT * FROM t WHERE x =").value(v).kw("AND y =").int(n).build();
        let (sa, sb) = (build(&a), build(&b));
        prop_assert_eq!(sa.text(), sb.text());
        prop_assert_eq!(sa.params().values().next(), Some(&Value::String(a.clone())));
    }

    #[test]
    fn an_inlined_value_is_one_literal_read_back_exactly(s in "(?s).{0,200}") {
        let sql = SqlBuilder::new().kw("USING x =").value(s.as_str()).kw(", y = 1").build();
        match sql.to_inline() {
            Ok(text) => {
                prop_assert!(check_inline_str(&s).is_ok());
                let literal = text.strip_prefix("USING x = ").unwrap();
                let (read, rest) = lex_string(literal).expect("one string token");
                prop_assert_eq!(read.trim_matches('\''), s.as_str());
                prop_assert_eq!(rest, " , y = 1");
            }
            Err(_) => prop_assert!(check_inline_str(&s).is_err()),
        }
    }
}
