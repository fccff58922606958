//! The base vocabulary of the stages: the closed intent set and the route modes. The
//! classifiers, the settings and the router all speak it, so it depends on none of them.

use getlood_proto::pipeline::v1::{Intent as ProtoIntent, Mode as ProtoMode};
use serde::{Deserialize, Serialize};

/// An intent name of the closed set, mapped to the proto enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Intent(pub ProtoIntent);

impl Intent {
    /// Parses `CHAT`, `GENERATE_UI`, ... (exact, upper case).
    pub(crate) fn parse(name: &str) -> Option<Self> {
        let full = format!("INTENT_{name}");
        match ProtoIntent::from_str_name(&full) {
            Some(ProtoIntent::Unspecified) | None => None,
            Some(i) => Some(Self(i)),
        }
    }

    /// The name without the `INTENT_` prefix.
    pub(crate) fn name(self) -> &'static str {
        self.0.as_str_name().trim_start_matches("INTENT_")
    }
}

/// The route's mode, as written in the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Plain chat with an agent.
    Chat,
    /// A UI-producing answer with UI actions.
    Ui,
    /// A multi-step, workflow-oriented answer.
    Workflow,
}

impl Mode {
    pub(crate) fn proto(self) -> ProtoMode {
        match self {
            Self::Chat => ProtoMode::Chat,
            Self::Ui => ProtoMode::Ui,
            Self::Workflow => ProtoMode::Workflow,
        }
    }
}
