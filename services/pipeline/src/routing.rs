//! Stage 2: configurable rules map an intent and its confidence to a mode and the skill the
//! agent must have.

use crate::settings::RouteRule;
use crate::types::{Intent, Mode};

/// Stage 2's decision.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Route {
    pub mode: Mode,
    pub rule: String,
    pub skill: String,
}

/// The ordered routing rules.
#[derive(Debug, Clone)]
pub(crate) struct Router {
    rules: Vec<RouteRule>,
}

impl Router {
    pub(crate) fn new(rules: &[RouteRule]) -> Self {
        Self { rules: rules.to_vec() }
    }

    /// The first rule whose intent (or `*`) and minimum confidence match; `None` when no rule
    /// covers the decision (a configuration without a catch-all).
    pub(crate) fn route(&self, intent: Intent, confidence: f64) -> Option<Route> {
        self.rules
            .iter()
            .find(|r| (r.intent == "*" || r.intent == intent.name()) && confidence >= r.min_confidence)
            .map(|r| Route { mode: r.mode, rule: r.name.clone(), skill: r.skill.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::PipelineSettings;
    use getlood_proto::pipeline::v1::Intent as P;

    #[test]
    fn default_routes() {
        let r = Router::new(&PipelineSettings::default().routes);
        let ui = r.route(Intent(P::GenerateUi), 0.9).unwrap();
        assert_eq!((ui.mode, ui.skill.as_str(), ui.rule.as_str()), (Mode::Ui, "ui-generation", "ui"));
        assert_eq!(r.route(Intent(P::QueryData), 0.9).unwrap().skill, "data-analysis");
        assert_eq!(r.route(Intent(P::GenerateReport), 0.9).unwrap().skill, "data-analysis");
        assert_eq!(r.route(Intent(P::RunWorkflow), 0.9).unwrap().mode, Mode::Workflow);
        assert_eq!(r.route(Intent(P::Chat), 0.9).unwrap().skill, "chat");
    }

    #[test]
    fn min_confidence_falls_through_to_later_rules() {
        let mut rules = PipelineSettings::default().routes;
        rules[0].min_confidence = 0.95;
        let r = Router::new(&rules);
        assert_eq!(r.route(Intent(P::GenerateUi), 0.9).unwrap().rule, "chat");
    }
}
