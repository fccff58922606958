//! Text normalisation shared by the keyword rules, the app detection and the hints.

/// Lower-cases `s` and turns every run of non-alphanumeric characters into one space, so
/// `"Crée-moi un Dashboard!"` becomes `"crée moi un dashboard"`. Accents are kept: keyword
/// lists carry both spellings where users drop them.
pub(crate) fn normalize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = true;
    for c in s.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            out.push(c);
            space = false;
        } else if !space {
            out.push(' ');
            space = true;
        }
    }
    if out.ends_with(' ') {
        out.pop();
    }
    out
}

/// Whether normalised `text` contains normalised `phrase` as whole words.
pub(crate) fn contains_word(text: &str, phrase: &str) -> bool {
    !phrase.is_empty() && format!(" {text} ").contains(&format!(" {phrase} "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_not_substrings() {
        let t = normalize("Crée-moi un Tableau de bord, vite!");
        assert_eq!(t, "crée moi un tableau de bord vite");
        assert!(contains_word(&t, "crée"));
        assert!(contains_word(&t, "tableau de bord"));
        assert!(!contains_word(&t, "de b"));
        assert!(!contains_word(&normalize("this"), "hi"));
    }
}
