//! Stage 5 without I/O: UI actions derived from the intent and the message, and the rule-based
//! user-intent hints (what the seed calls "theory of mind"; here plain, named rules).

use getlood_proto::common::v1::{ChatMessage, Role};
use getlood_proto::pipeline::v1::{Intent as P, UiAction, UserIntentHint};
use serde_json::json;

use crate::convert::json_to_struct;
use crate::settings::PipelineSettings;
use crate::text::{contains_word, normalize};
use crate::types::Intent;

/// The language a message is most likely written in, by stop words; `None` when unsure.
fn language(text: &str) -> Option<&'static str> {
    const LANGS: [(&str, &[&str]); 3] = [
        (
            "french",
            &[
                "le", "la", "les", "un", "une", "des", "moi", "de", "du", "pour", "est", "crée", "je", "mon", "mes",
                "vous", "avec",
            ],
        ),
        ("spanish", &["el", "los", "las", "una", "para", "por", "con", "es", "mi", "crea", "quiero"]),
        ("german", &["der", "die", "das", "ein", "eine", "und", "mit", "für", "ist", "mir", "erstelle", "ich"]),
    ];
    let english: &[&str] = &["the", "a", "an", "and", "for", "with", "is", "me", "my", "please", "create", "i"];
    let words: Vec<&str> = text.split(' ').collect();
    let score = |list: &[&str]| words.iter().filter(|w| list.contains(w)).count();
    let en = score(english);
    LANGS
        .iter()
        .map(|(name, list)| (*name, score(list)))
        .filter(|(_, s)| *s > en && *s > 0)
        .max_by_key(|(_, s)| *s)
        .map(|(n, _)| n)
}

/// Whether normalised `text` reads as French.
pub(crate) fn is_french(text: &str) -> bool {
    language(text) == Some("french")
}

/// The app a message names, by configured keywords.
pub(crate) fn app_in(settings: &PipelineSettings, message: &str) -> Option<String> {
    let text = normalize(message);
    settings
        .apps
        .iter()
        .find(|a| a.keywords.iter().any(|k| contains_word(&text, &normalize(k))))
        .map(|a| a.app_id.clone())
}

fn open_window(id: usize, app_id: &str, french: bool) -> UiAction {
    let label = if french { format!("Ouvrir le {app_id}") } else { format!("Open {app_id}") };
    UiAction {
        id: format!("action-{id}"),
        r#type: "open_window".to_owned(),
        params: Some(json_to_struct(json!({ "app_id": app_id, "title": label.clone() }))),
        label,
    }
}

/// UI actions for the client: `open_window` for intents that produce something to look at.
pub(crate) fn ui_actions(settings: &PipelineSettings, intent: Intent, message: &str) -> Vec<UiAction> {
    let french = language(&normalize(message)) == Some("french");
    let app = app_in(settings, message);
    let app = match intent.0 {
        P::GenerateUi => Some(app.unwrap_or_else(|| settings.default_ui_app.clone())),
        P::GenerateReport => Some(app.unwrap_or_else(|| "report".to_owned())),
        P::RunWorkflow => Some("workflow".to_owned()),
        // Data questions and chat answer in text; an explicitly named app is still offered.
        P::QueryData | P::Chat | P::Unspecified => app,
    };
    app.map(|a| vec![open_window(1, &a, french)]).unwrap_or_default()
}

fn hint(kind: &str, description: &str, confidence: f64, rule: &str) -> UserIntentHint {
    UserIntentHint { kind: kind.to_owned(), description: description.to_owned(), confidence, rule: rule.to_owned() }
}

/// Rule-based guesses about what the user wants beyond the literal request. Each names the
/// rule that produced it; none of them models the user.
pub(crate) fn user_intent_hints(messages: &[ChatMessage], intent: Intent, has_actions: bool) -> Vec<UserIntentHint> {
    let last = messages.iter().rev().find(|m| m.role == Role::User as i32).map(|m| m.content.as_str()).unwrap_or("");
    let text = normalize(last);
    let mut hints = Vec::new();
    // A request phrased as an order ("crée-moi", "build me", "vite") that yields a window: the
    // user most likely wants the button, not a discussion.
    const URGENT: [&str; 10] =
        ["moi", "me", "vite", "quickly", "now", "maintenant", "asap", "rapidement", "please", "stp"];
    if has_actions && (URGENT.iter().any(|w| contains_word(&text, w)) || matches!(intent.0, P::GenerateUi)) {
        hints.push(hint(
            "wants_quick_action",
            "the request is an instruction with a direct UI result; offer the action first",
            0.7,
            "imperative_request_with_action",
        ));
    }
    if let Some(lang) = language(&text) {
        hints.push(hint(
            &format!("prefers_{lang}"),
            &format!("the message is written in {lang}; answer in {lang}"),
            0.8,
            "stop_word_language",
        ));
    }
    if last.trim_end().ends_with('?') {
        hints.push(hint(
            "wants_explanation",
            "the message is a question; a short explanation is expected",
            0.6,
            "question_mark",
        ));
    }
    if messages.iter().any(|m| m.role == Role::Assistant as i32) {
        hints.push(hint(
            "continues_conversation",
            "earlier answers are in the history; the user builds on them",
            0.6,
            "assistant_turn_in_history",
        ));
    }
    if last.chars().count() < 25 && matches!(intent.0, P::Chat) {
        hints.push(hint("wants_brief_answer", "short message; a short answer fits", 0.5, "short_message"));
    }
    hints
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::struct_to_json;

    #[test]
    fn seed_message_opens_the_dashboard_in_french() {
        let s = PipelineSettings::default();
        let actions = ui_actions(&s, Intent(P::GenerateUi), "Crée-moi un dashboard analytics");
        assert_eq!(actions.len(), 1);
        assert_eq!(actions[0].r#type, "open_window");
        assert_eq!(actions[0].label, "Ouvrir le dashboard");
        let params = struct_to_json(actions[0].params.as_ref().unwrap());
        assert_eq!(params["app_id"], "dashboard");
        let msgs = vec![ChatMessage {
            role: Role::User as i32,
            content: "Crée-moi un dashboard analytics".into(),
            name: String::new(),
        }];
        let hints = user_intent_hints(&msgs, Intent(P::GenerateUi), true);
        let kinds: Vec<&str> = hints.iter().map(|h| h.kind.as_str()).collect();
        assert_eq!(kinds, ["wants_quick_action", "prefers_french"]);
    }

    #[test]
    fn apps_and_no_actions() {
        let s = PipelineSettings::default();
        assert_eq!(app_in(&s, "open a terminal"), Some("terminal".into()));
        assert!(ui_actions(&s, Intent(P::Chat), "how are you").is_empty());
        assert_eq!(ui_actions(&s, Intent(P::GenerateUi), "make me a form")[0].label, "Open dashboard");
    }
}
