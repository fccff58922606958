//! Property tests of the page-token parser: any input is a clean answer (never a panic), a
//! token round-trips in its own list only.

// A failed unwrap in a helper is the test failing, with its location.
#![allow(clippy::unwrap_used)]

use getlood_common::paging::{decode_page_token, encode_page_token, page_size};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_token_is_a_position_or_a_400(kind in "[a-z_]{1,20}", token in "(?s).{0,300}") {
        if let Err(err) = decode_page_token(&kind, &token) {
            prop_assert_eq!(err.code, getlood_common::ErrorCode::InvalidArgument);
        }
    }

    #[test]
    fn tokens_round_trip_in_their_own_list_only(kind in "[a-z_]{1,20}", other in "[a-z_]{1,20}", pos in "(?s).{0,200}") {
        let token = encode_page_token(&kind, &pos);
        prop_assert_eq!(decode_page_token(&kind, &token).unwrap(), Some(pos));
        if other != kind {
            prop_assert!(decode_page_token(&other, &token).is_err());
        }
    }

    #[test]
    fn page_sizes_are_bounded(requested in any::<i32>()) {
        match page_size(requested) {
            Ok(n) => prop_assert!((1..=500).contains(&n)),
            Err(_) => prop_assert!(requested < 0),
        }
    }
}
