//! Stage 1 without I/O: the intent names, the keyword classifier, the LLM prompt and the strict
//! parser of the LLM's JSON answer.

use serde_json::Value;

use crate::settings::{KeywordRule, PipelineSettings};
use crate::text::{contains_word, normalize};
use crate::types::Intent;

/// A classifier's decision.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Decision {
    pub intent: Intent,
    pub confidence: f64,
    /// Which rule decided, for rule decisions.
    pub rule: Option<String>,
}

/// The outcome of the keyword rules.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RuleOutcome {
    /// One intent matched with enough confidence: the LLM is skipped.
    Sure(Decision),
    /// Something matched, but not surely (low confidence, or rules disagreeing): a best guess
    /// kept for the fallback.
    Guess(Decision),
    /// Nothing matched.
    Nothing,
}

/// The keyword classifier: whole-word keyword groups per rule, multilingual by configuration.
#[derive(Debug, Clone)]
pub(crate) struct RuleClassifier {
    rules: Vec<(KeywordRule, Intent)>,
    min_confidence: f64,
    enabled: bool,
}

impl RuleClassifier {
    pub(crate) fn new(settings: &PipelineSettings) -> Self {
        let rules = settings
            .rules
            .rules
            .iter()
            .filter_map(|r| {
                let groups = r.all_of.iter().map(|g| g.iter().map(|k| normalize(k)).collect()).collect();
                Intent::parse(&r.intent).map(|i| (KeywordRule { all_of: groups, ..r.clone() }, i))
            })
            .collect();
        Self { rules, min_confidence: settings.rules.min_confidence, enabled: settings.rules.enabled }
    }

    pub(crate) fn classify(&self, message: &str) -> RuleOutcome {
        if !self.enabled {
            return RuleOutcome::Nothing;
        }
        let text = normalize(message);
        let mut matched: Vec<Decision> = self
            .rules
            .iter()
            .filter(|(r, _)| r.all_of.iter().all(|group| group.iter().any(|k| contains_word(&text, k))))
            .map(|(r, i)| Decision { intent: *i, confidence: r.confidence, rule: Some(r.name.clone()) })
            .collect();
        // Highest confidence first; the configured order breaks ties, so the result is stable.
        matched.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
        let Some(best) = matched.first().cloned() else {
            return RuleOutcome::Nothing;
        };
        // Two rules voting for different intents: the message is ambiguous, let the LLM decide.
        let disagree = matched.iter().any(|d| d.intent != best.intent);
        if best.confidence >= self.min_confidence && !disagree {
            RuleOutcome::Sure(best)
        } else {
            RuleOutcome::Guess(best)
        }
    }
}

/// Marker at the start of the classification prompt; tests script the LLM double on it.
pub(crate) const PROMPT_MARKER: &str = "GETLOOD intent classifier.";

/// The prompt template of the intent model (`{{question}}` is the user's message). No braces
/// besides the placeholder: MindsDB fills templates by text substitution, and a literal JSON
/// example would be one more thing for it to interpret.
pub(crate) fn prompt_template(intents: &[String]) -> String {
    format!(
        "{PROMPT_MARKER} Classify the user message below into exactly one intent from this closed set: {set}. \
         Answer with a single JSON object and nothing else. The object has exactly two keys: \"intent\", whose \
         value is one of {set} as a string, and \"confidence\", a number from 0 to 1 saying how sure you are. \
         User message: {{{{question}}}}",
        set = intents.join(", ")
    )
}

/// Parses the LLM's answer strictly: one JSON object with exactly `intent` (a name of the
/// configured set) and `confidence` (a number in [0, 1]). A surrounding Markdown code fence is
/// tolerated, since small models add one; nothing else is. The error says why, for the stage's
/// fallback reason.
pub(crate) fn parse_llm_answer(raw: &str, intents: &[String]) -> Result<Decision, String> {
    let mut text = raw.trim();
    if let Some(inner) = text.strip_prefix("```") {
        let inner = inner.strip_prefix("json").unwrap_or(inner);
        text = inner.strip_suffix("```").unwrap_or(inner).trim();
    }
    let value: Value = serde_json::from_str(text).map_err(|_| "the model did not answer with valid JSON".to_owned())?;
    let obj = value.as_object().ok_or_else(|| "the model's JSON is not an object".to_owned())?;
    if let Some(extra) = obj.keys().find(|k| !matches!(k.as_str(), "intent" | "confidence")) {
        return Err(format!("the model's JSON has an unexpected key '{}'", truncate(extra, 40)));
    }
    let name = obj
        .get("intent")
        .and_then(Value::as_str)
        .ok_or_else(|| "the model's JSON has no string 'intent'".to_owned())?;
    let intent =
        intents.iter().find(|i| i.as_str() == name).and_then(|i| Intent::parse(i)).ok_or_else(|| {
            format!("the model answered an intent outside the configured set: '{}'", truncate(name, 40))
        })?;
    let confidence = obj
        .get("confidence")
        .and_then(Value::as_f64)
        .ok_or_else(|| "the model's JSON has no numeric 'confidence'".to_owned())?;
    if !(0.0..=1.0).contains(&confidence) {
        return Err(format!("the model's confidence {confidence} is outside [0, 1]"));
    }
    Ok(Decision { intent, confidence, rule: None })
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

#[cfg(test)]
mod tests {
    use getlood_proto::pipeline::v1::Intent as ProtoIntent;

    use super::*;

    fn set() -> Vec<String> {
        PipelineSettings::default().intents
    }

    #[test]
    fn seed_message_is_a_sure_ui_intent() {
        let c = RuleClassifier::new(&PipelineSettings::default());
        match c.classify("Crée-moi un dashboard analytics") {
            RuleOutcome::Sure(d) => {
                assert_eq!(d.intent.0, ProtoIntent::GenerateUi);
                assert!(d.confidence >= 0.85);
                assert_eq!(d.rule.as_deref(), Some("make_ui"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(c.classify("Build me a dashboard please"), RuleOutcome::Sure(_)));
        assert!(
            matches!(c.classify("Lance le workflow de facturation"), RuleOutcome::Sure(d) if d.intent.0 == ProtoIntent::RunWorkflow)
        );
        assert_eq!(c.classify("Tell me about the weather on Mars"), RuleOutcome::Nothing);
        // "this" must not match the keyword "hi".
        assert_eq!(c.classify("what is this thing"), RuleOutcome::Nothing);
    }

    #[test]
    fn disagreeing_rules_are_only_a_guess() {
        let c = RuleClassifier::new(&PipelineSettings::default());
        assert!(matches!(c.classify("create a dashboard and a report"), RuleOutcome::Guess(_)));
    }

    #[test]
    fn llm_answers_are_parsed_strictly() {
        let d = parse_llm_answer(r#"{"intent": "QUERY_DATA", "confidence": 0.8}"#, &set()).unwrap();
        assert_eq!(d.intent.0, ProtoIntent::QueryData);
        assert!(parse_llm_answer("```json\n{\"intent\":\"CHAT\",\"confidence\":1}\n```", &set()).is_ok());
        for bad in [
            "I think it is CHAT",
            r#"{"intent": "DANCE", "confidence": 0.9}"#,
            r#"{"intent": "CHAT", "confidence": 1.5}"#,
            r#"{"intent": "CHAT"}"#,
            r#"{"intent": "CHAT", "confidence": 0.5, "why": "x"}"#,
            r#"["CHAT", 0.5]"#,
            r#"{"intent": "chat", "confidence": 0.5}"#,
        ] {
            assert!(parse_llm_answer(bad, &set()).is_err(), "{bad}");
        }
        // An intent of the proto enum that the deployment did not configure is refused too.
        assert!(parse_llm_answer(r#"{"intent": "CHAT", "confidence": 0.5}"#, &["QUERY_DATA".to_owned()]).is_err());
    }

    #[test]
    fn prompt_keeps_only_the_placeholder_braces() {
        let p = prompt_template(&set());
        assert!(p.contains("{{question}}"));
        assert_eq!(p.matches('{').count(), 2);
        assert!(p.starts_with(PROMPT_MARKER));
    }
}
