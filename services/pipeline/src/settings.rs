//! The pipeline's own settings (`app.*`, env `GETLOOD_PIPELINE_APP__*`): the intent model, the
//! rule classifier, routing rules, thresholds, deadlines and input limits.

use std::time::Duration;

use getlood_config::{ConfigError, Validate};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::types::{Intent, Mode};

/// pipeline settings (`GETLOOD_PIPELINE_APP__*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineSettings {
    /// The closed set of intents the classifiers may answer (names of `getlood.pipeline.v1.Intent`
    /// without the prefix, e.g. `GENERATE_UI`).
    pub intents: Vec<String>,
    /// The LLM classifier: a MindsDB model in the tenant's project.
    pub intent_model: IntentModelSettings,
    /// The keyword classifier that may answer before the LLM.
    pub rules: RuleSettings,
    /// Below this confidence the turn stops after intent detection with a clarification question.
    pub clarification_threshold: f64,
    /// What stage 1 answers when the LLM fails or returns something unusable and no rule matched.
    pub fallback: FallbackSettings,
    /// Routing rules, tried in order; the first whose intent and confidence match wins.
    pub routes: Vec<RouteRule>,
    /// Name of the agent used when none has the route's skill and no agent of the tenant is
    /// marked `default=true` in its metadata.
    pub default_agent: Option<String>,
    /// App ids recognised in the user's message for `open_window` actions, with their keywords.
    pub apps: Vec<AppKeywords>,
    /// App opened for a UI intent whose message names no known app.
    pub default_ui_app: String,
    /// Input limits.
    pub limits: Limits,
    /// Deadline of each unary call to the agent registry (FindAgents, GetAgent, ListAgents).
    #[serde(with = "humantime_serde")]
    pub registry_timeout: Duration,
    /// Deadline of a whole agent answer (stage 4).
    #[serde(with = "humantime_serde")]
    pub agent_timeout: Duration,
    /// Longest silence tolerated on the agent stream (the registry sends heartbeats meanwhile).
    #[serde(with = "humantime_serde")]
    pub agent_idle_timeout: Duration,
    /// Heartbeat period of Execute streams while a stage works.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// How often the outbox relay looks for unpublished events without being woken.
    #[serde(with = "humantime_serde")]
    pub outbox_poll: Duration,
    /// Whether a turn's commit waits for Postgres to flush it to disk. Off by default: the
    /// answer has already reached the user, and waiting for the flush (about 4 ms here) is most
    /// of the gateway's overhead on a chat turn. A Postgres crash can then lose the turns of its
    /// last few hundred milliseconds, each with its `turn.completed` event (never one without the
    /// other). Turn it on when every turn must survive a database crash.
    pub durable_turn_commit: bool,
    /// What the agent is told of the user's earlier conversations (stage 4).
    pub memory: MemorySettings,
}

/// Recall of the caller's past turns from the memory knowledge base (event-dispatcher
/// `Search`, always restricted to the caller's own turns), given to the agent with the question.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemorySettings {
    /// Off: agents see only the current conversation.
    pub enabled: bool,
    /// Past turns given to the agent at most, 1..=20.
    pub top_k: u32,
    /// Turns less relevant than this (0..=1) are left out.
    pub min_score: f64,
    /// Recall is best effort: past this the agent answers without it.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Characters of one recalled turn given to the agent at most.
    pub max_chars: usize,
}

impl Default for MemorySettings {
    fn default() -> Self {
        Self { enabled: true, top_k: 3, min_score: 0.0, timeout: Duration::from_secs(2), max_chars: 600 }
    }
}

/// The MindsDB model that classifies intents (stage 1).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntentModelSettings {
    /// Whether the LLM classifier is used at all; without it, unsure rules fall back.
    pub enabled: bool,
    /// MindsDB ML handler (`openai` for any OpenAI-compatible endpoint).
    pub provider: String,
    /// Base URL of the provider (`http://127.0.0.1:18080/v1` for the local model).
    pub base_url: Option<String>,
    /// Provider model name.
    pub model_name: String,
    /// Provider key; kept on the MindsDB engine, never in SQL text.
    #[serde(serialize_with = "serialize_secret_opt")]
    pub api_key: Option<SecretString>,
    /// `max_tokens` of the MindsDB model. MindsDB 26.1's openai handler also uses it as the
    /// prompt budget: a prompt longer than this many tokens is silently dropped and the LLM gets
    /// no user message at all (measured; the default of 100 loses our prompt). Keep it above
    /// the template plus `max_input_chars` worth of tokens.
    pub max_tokens: u32,
    /// Deadline of one classification call.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Deadline of creating the engine and model the first time a tenant needs them.
    #[serde(with = "humantime_serde")]
    pub setup_timeout: Duration,
    /// Longest user message sent to the classifier, in characters (the tail is cut).
    pub max_input_chars: usize,
}

/// The keyword classifier.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuleSettings {
    /// Whether rules are tried first.
    pub enabled: bool,
    /// A rule answers alone (the LLM is skipped) when its confidence reaches this.
    pub min_confidence: f64,
    /// The rules.
    pub rules: Vec<KeywordRule>,
}

/// One keyword rule: it matches when every group has at least one of its keywords in the
/// message (whole words, case-insensitive).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeywordRule {
    /// Rule name, recorded with the decision.
    pub name: String,
    /// Intent it votes for.
    pub intent: String,
    /// Confidence when it matches.
    pub confidence: f64,
    /// Keyword groups, all required.
    pub all_of: Vec<Vec<String>>,
}

/// Stage 1's answer when no classifier produced a usable one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FallbackSettings {
    /// Intent used.
    pub intent: String,
    /// Its confidence; below `clarification_threshold` the fallback asks the user instead.
    pub confidence: f64,
}

/// One routing rule.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    /// Rule name, reported in `RouteSelected.rule`.
    pub name: String,
    /// Intent it applies to, or `*` for any.
    pub intent: String,
    /// Minimum confidence.
    #[serde(default)]
    pub min_confidence: f64,
    /// `chat`, `ui` or `workflow`.
    pub mode: Mode,
    /// Skill the selected agent needs.
    pub skill: String,
}

/// An app that `open_window` can target, found in the message by keyword.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppKeywords {
    /// App id sent as `params.app_id`.
    pub app_id: String,
    /// Keywords (whole words, case-insensitive).
    pub keywords: Vec<String>,
}

/// Input limits of Execute.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Messages per request.
    pub max_messages: usize,
    /// Characters per message.
    pub max_message_chars: usize,
    /// Characters over all messages.
    pub max_total_chars: usize,
    /// Metadata entries.
    pub max_metadata_entries: usize,
}

fn serialize_secret_opt<S: serde::Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    // Never written back out in clear (config dumps, debug endpoints).
    match v {
        Some(_) => s.serialize_some("******"),
        None => s.serialize_none(),
    }
}

fn words(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn rule(name: &str, intent: &str, confidence: f64, groups: &[&[&str]]) -> KeywordRule {
    KeywordRule {
        name: name.to_owned(),
        intent: intent.to_owned(),
        confidence,
        all_of: groups.iter().map(|g| words(g)).collect(),
    }
}

fn route(name: &str, intent: &str, min_confidence: f64, mode: Mode, skill: &str) -> RouteRule {
    RouteRule { name: name.to_owned(), intent: intent.to_owned(), min_confidence, mode, skill: skill.to_owned() }
}

// Creation verbs in French, English, Spanish and German; shared by the UI and report rules.
const MAKE: &[&str] = &[
    "crée",
    "créer",
    "créez",
    "cree",
    "creer",
    "génère",
    "générer",
    "genere",
    "generer",
    "fais",
    "faites",
    "construis",
    "construire",
    "prépare",
    "préparer",
    "rédige",
    "create",
    "build",
    "make",
    "generate",
    "design",
    "prepare",
    "write",
    "crea",
    "crear",
    "genera",
    "haz",
    "erstelle",
    "erstellen",
    "baue",
];

impl Default for PipelineSettings {
    fn default() -> Self {
        Self {
            intents: words(&["CHAT", "GENERATE_UI", "GENERATE_REPORT", "RUN_WORKFLOW", "QUERY_DATA"]),
            intent_model: IntentModelSettings::default(),
            rules: RuleSettings {
                enabled: true,
                min_confidence: 0.85,
                rules: vec![
                    rule(
                        "make_ui",
                        "GENERATE_UI",
                        0.92,
                        &[
                            MAKE,
                            &[
                                "dashboard",
                                "tableau de bord",
                                "interface",
                                "ui",
                                "widget",
                                "formulaire",
                                "form",
                                "page",
                                "écran",
                                "screen",
                                "fenêtre",
                                "window",
                                "panneau",
                                "panel",
                                "panel de control",
                            ],
                        ],
                    ),
                    rule(
                        "make_report",
                        "GENERATE_REPORT",
                        0.9,
                        &[MAKE, &["rapport", "report", "compte rendu", "informe", "bericht", "synthèse", "summary"]],
                    ),
                    rule(
                        "run_workflow",
                        "RUN_WORKFLOW",
                        0.9,
                        &[
                            &[
                                "lance",
                                "lancer",
                                "exécute",
                                "exécuter",
                                "execute",
                                "run",
                                "start",
                                "démarre",
                                "déclenche",
                                "trigger",
                                "ejecuta",
                                "starte",
                            ],
                            &["workflow", "flux", "automatisation", "automation", "job", "pipeline"],
                        ],
                    ),
                    rule(
                        "ask_data",
                        "QUERY_DATA",
                        0.86,
                        &[
                            &[
                                "combien",
                                "how many",
                                "how much",
                                "total",
                                "moyenne",
                                "average",
                                "somme",
                                "sum",
                                "count",
                                "cuántos",
                                "wie viele",
                                "top",
                            ],
                            &[
                                "ventes",
                                "sales",
                                "revenue",
                                "chiffre d'affaires",
                                "clients",
                                "customers",
                                "commandes",
                                "orders",
                                "utilisateurs",
                                "users",
                                "lignes",
                                "rows",
                                "données",
                                "data",
                                "ventas",
                                "umsatz",
                            ],
                        ],
                    ),
                    rule(
                        "greeting",
                        "CHAT",
                        0.9,
                        &[&["bonjour", "salut", "hello", "hi", "hey", "hola", "hallo", "merci", "thanks", "thank you"]],
                    ),
                ],
            },
            clarification_threshold: 0.5,
            fallback: FallbackSettings { intent: "CHAT".to_owned(), confidence: 0.6 },
            routes: vec![
                route("ui", "GENERATE_UI", 0.0, Mode::Ui, "ui-generation"),
                route("report", "GENERATE_REPORT", 0.0, Mode::Workflow, "data-analysis"),
                route("workflow", "RUN_WORKFLOW", 0.0, Mode::Workflow, "workflow"),
                route("data", "QUERY_DATA", 0.0, Mode::Chat, "data-analysis"),
                route("chat", "*", 0.0, Mode::Chat, "chat"),
            ],
            default_agent: None,
            apps: vec![
                AppKeywords {
                    app_id: "dashboard".into(),
                    keywords: words(&["dashboard", "tableau de bord", "panel de control"]),
                },
                AppKeywords {
                    app_id: "report".into(),
                    keywords: words(&["report", "rapport", "compte rendu", "informe", "bericht"]),
                },
                AppKeywords {
                    app_id: "editor".into(), keywords: words(&["editor", "éditeur", "editeur", "document"])
                },
                AppKeywords { app_id: "terminal".into(), keywords: words(&["terminal", "console", "shell"]) },
                AppKeywords {
                    app_id: "workflow".into(),
                    keywords: words(&["workflow", "flux", "automation", "automatisation"]),
                },
                AppKeywords {
                    app_id: "spreadsheet".into(),
                    keywords: words(&["spreadsheet", "tableur", "table", "tableau"]),
                },
            ],
            default_ui_app: "dashboard".to_owned(),
            limits: Limits::default(),
            registry_timeout: Duration::from_secs(5),
            agent_timeout: Duration::from_secs(120),
            agent_idle_timeout: Duration::from_secs(30),
            heartbeat: Duration::from_secs(5),
            outbox_poll: Duration::from_secs(1),
            durable_turn_commit: false,
            memory: MemorySettings::default(),
        }
    }
}

impl Default for IntentModelSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            provider: "openai".to_owned(),
            // The local SmolLM2 server of scripts/llm.sh.
            base_url: Some("http://127.0.0.1:18080/v1".to_owned()),
            // A cl100k name: offline, MindsDB's tiktoken has only the cl100k_base file that
            // scripts/mindsdb.sh caches (`gpt-4o` would need o200k and fail).
            model_name: "gpt-4".to_owned(),
            api_key: Some(SecretString::from("sk-local")),
            max_tokens: 1024,
            timeout: Duration::from_secs(20),
            setup_timeout: Duration::from_secs(60),
            max_input_chars: 2000,
        }
    }
}

impl Default for RuleSettings {
    fn default() -> Self {
        PipelineSettings::default().rules
    }
}

impl Default for FallbackSettings {
    fn default() -> Self {
        Self { intent: "CHAT".to_owned(), confidence: 0.6 }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_messages: 100, max_message_chars: 32_000, max_total_chars: 128_000, max_metadata_entries: 32 }
    }
}

fn unit(key: &str, v: f64) -> Result<(), ConfigError> {
    if (0.0..=1.0).contains(&v) { Ok(()) } else { Err(ConfigError::invalid(key, "must be between 0 and 1")) }
}

impl Validate for PipelineSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.intents.is_empty() {
            return Err(ConfigError::invalid("app.intents", "must name at least one intent"));
        }
        for (i, name) in self.intents.iter().enumerate() {
            if Intent::parse(name).is_none() {
                return Err(ConfigError::invalid(format!("app.intents[{i}]"), format!("unknown intent '{name}'")));
            }
        }
        let known = |key: String, name: &str| -> Result<(), ConfigError> {
            if self.intents.iter().any(|i| i == name) {
                Ok(())
            } else {
                Err(ConfigError::invalid(key, format!("intent '{name}' is not in app.intents")))
            }
        };
        unit("app.clarification_threshold", self.clarification_threshold)?;
        unit("app.rules.min_confidence", self.rules.min_confidence)?;
        unit("app.fallback.confidence", self.fallback.confidence)?;
        known("app.fallback.intent".to_owned(), &self.fallback.intent)?;
        for (i, r) in self.rules.rules.iter().enumerate() {
            known(format!("app.rules.rules[{i}].intent"), &r.intent)?;
            unit(&format!("app.rules.rules[{i}].confidence"), r.confidence)?;
            if r.all_of.is_empty() || r.all_of.iter().any(Vec::is_empty) {
                return Err(ConfigError::invalid(
                    format!("app.rules.rules[{i}].all_of"),
                    "needs non-empty keyword groups",
                ));
            }
        }
        if self.routes.is_empty() {
            return Err(ConfigError::invalid("app.routes", "needs at least one rule"));
        }
        for (i, r) in self.routes.iter().enumerate() {
            if r.intent != "*" {
                known(format!("app.routes[{i}].intent"), &r.intent)?;
            }
            unit(&format!("app.routes[{i}].min_confidence"), r.min_confidence)?;
            if r.skill.is_empty() {
                return Err(ConfigError::invalid(format!("app.routes[{i}].skill"), "must not be empty"));
            }
        }
        let m = &self.intent_model;
        if m.enabled && (m.provider.is_empty() || m.model_name.is_empty()) {
            return Err(ConfigError::invalid("app.intent_model", "provider and model_name are required"));
        }
        if m.base_url.as_deref().is_some_and(|u| !(u.starts_with("http://") || u.starts_with("https://"))) {
            return Err(ConfigError::invalid("app.intent_model.base_url", "must be an http(s) url"));
        }
        if m.max_input_chars == 0 {
            return Err(ConfigError::invalid("app.intent_model.max_input_chars", "must be positive"));
        }
        // See `max_tokens`: below this MindsDB drops the classification prompt itself.
        if m.max_tokens < 512 {
            return Err(ConfigError::invalid(
                "app.intent_model.max_tokens",
                "must be at least 512 (mindsdb uses it as the prompt budget)",
            ));
        }
        let l = &self.limits;
        if l.max_messages == 0 || l.max_message_chars == 0 || l.max_total_chars == 0 {
            return Err(ConfigError::invalid("app.limits", "limits must be positive"));
        }
        getlood_config::require_positive([
            ("app.registry_timeout", self.registry_timeout),
            ("app.agent_timeout", self.agent_timeout),
            ("app.agent_idle_timeout", self.agent_idle_timeout),
            ("app.heartbeat", self.heartbeat),
            ("app.outbox_poll", self.outbox_poll),
            ("app.intent_model.timeout", m.timeout),
            ("app.intent_model.setup_timeout", m.setup_timeout),
            ("app.memory.timeout", self.memory.timeout),
        ])?;
        if !(1..=20).contains(&self.memory.top_k) {
            return Err(ConfigError::invalid("app.memory.top_k", "must be between 1 and 20"));
        }
        unit("app.memory.min_score", self.memory.min_score)?;
        if !(50..=10_000).contains(&self.memory.max_chars) {
            return Err(ConfigError::invalid("app.memory.max_chars", "must be between 50 and 10000"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        PipelineSettings::default().validate().unwrap();
    }

    #[test]
    fn unknown_intents_are_refused() {
        let mut s = PipelineSettings::default();
        s.routes[0].intent = "DANCE".into();
        assert!(s.validate().unwrap_err().to_string().contains("app.routes[0].intent"));
        let mut s = PipelineSettings::default();
        s.intents.push("DANCE".into());
        assert!(s.validate().unwrap_err().to_string().contains("app.intents[5]"));
    }
}
