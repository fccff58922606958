//! Property tests of token parsing: any header value or token text is refused cleanly (never a
//! panic, never a principal), and a validly signed token whose claims are mangled is refused.

// A failed unwrap in a helper is the test failing, with its location.
#![allow(clippy::unwrap_used)]

use getlood_auth::{AuthConfig, Verifier, dev_token};
use proptest::prelude::*;
use secrecy::SecretString;

const SECRET: &str = "proptest-secret-0123456789abcdef0123456789";

fn verifier() -> Verifier {
    let config = AuthConfig { hs256_secret: Some(SecretString::from(SECRET)), ..AuthConfig::default() };
    Verifier::new(&config).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_headers_are_refused(header in "(?s).{0,400}") {
        prop_assert!(verifier().verify_header(Some(&header)).is_err());
    }

    #[test]
    fn arbitrary_three_part_tokens_are_refused(a in "[A-Za-z0-9_=-]{0,120}", b in "[A-Za-z0-9_=-]{0,300}", c in "[A-Za-z0-9_=-]{0,120}") {
        let token = [a, b, c].join(".");
        prop_assert!(verifier().verify(&token).is_err());
    }

    #[test]
    fn a_flipped_character_breaks_a_valid_token(at in any::<prop::sample::Index>(), to in "[A-Za-z0-9_-]") {
        let v = verifier();
        let config = AuthConfig::default();
        let token = dev_token(SECRET, &config.issuer, &config.audience, "acme", "alice", &["member"], 600).unwrap();
        prop_assert!(v.verify(&token).is_ok());
        let i = at.index(token.len());
        let mut bytes = token.clone().into_bytes();
        let replacement = to.as_bytes()[0];
        prop_assume!(bytes[i] != replacement && bytes[i] != b'.');
        bytes[i] = replacement;
        let mangled = String::from_utf8(bytes).unwrap();
        // base64url's last character can carry unused bits; a change there may decode the same.
        if let Ok(p) = v.verify(&mangled) {
            prop_assert_eq!(p.tenant.as_str(), "acme");
            prop_assert_eq!(p.user.as_str(), "alice");
        }
    }

    #[test]
    fn tenants_outside_the_pattern_are_refused(tenant in "(?s).{0,80}") {
        let config = AuthConfig::default();
        let token = dev_token(SECRET, &config.issuer, &config.audience, &tenant, "alice", &["member"], 600).unwrap();
        if let Ok(p) = verifier().verify(&token) {
            prop_assert_eq!(p.tenant.as_str(), tenant.as_str());
            prop_assert!(getlood_auth::TenantId::parse(&tenant).is_ok());
        }
    }
}
