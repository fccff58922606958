//! Conversions between JSON (our Postgres columns) and the proto messages.

use getlood_proto::common::v1::{ChatMessage, Role};
use getlood_proto::pipeline::v1::{Stage, StageStatus, StageTiming, UiAction, UserIntentHint};
use serde_json::{Value, json};

pub(crate) use getlood_common::structs::struct_to_json;

/// A JSON object as a protobuf `Struct` (anything else becomes an empty struct).
pub(crate) fn json_to_struct(v: Value) -> prost_types::Struct {
    match v {
        Value::Object(o) => getlood_common::structs::object_to_struct(&o),
        _ => prost_types::Struct::default(),
    }
}

/// `ROLE_USER` → `user`.
pub(crate) fn role_name(role: i32) -> &'static str {
    match Role::try_from(role) {
        Ok(Role::System) => "system",
        Ok(Role::User) => "user",
        Ok(Role::Assistant) => "assistant",
        Ok(Role::Tool) => "tool",
        _ => "unspecified",
    }
}

/// Messages as the JSON column stores them.
pub(crate) fn messages_json(messages: &[ChatMessage]) -> Value {
    Value::Array(
        messages
            .iter()
            .map(|m| {
                let mut o = json!({ "role": role_name(m.role), "content": m.content });
                if !m.name.is_empty() {
                    o["name"] = json!(m.name);
                }
                o
            })
            .collect(),
    )
}

/// UI actions as the JSON column stores them.
pub(crate) fn actions_json(actions: &[UiAction]) -> Value {
    Value::Array(
        actions
            .iter()
            .map(|a| {
                json!({
                    "id": a.id, "type": a.r#type, "label": a.label,
                    "params": a.params.as_ref().map(struct_to_json).unwrap_or(json!({})),
                })
            })
            .collect(),
    )
}

/// Hints as the JSON column stores them.
pub(crate) fn hints_json(hints: &[UserIntentHint]) -> Value {
    Value::Array(
        hints
            .iter()
            .map(
                |h| json!({ "kind": h.kind, "description": h.description, "confidence": h.confidence, "rule": h.rule }),
            )
            .collect(),
    )
}

/// `STAGE_INTENT_DETECTION` → `intent_detection`.
pub(crate) fn stage_name(stage: i32) -> String {
    Stage::try_from(stage)
        .map(|s| s.as_str_name().trim_start_matches("STAGE_").to_ascii_lowercase())
        .unwrap_or_default()
}

/// Stage timings as the JSON column stores them.
pub(crate) fn timings_json(timings: &[StageTiming]) -> Value {
    Value::Array(
        timings
            .iter()
            .map(|t| {
                let status = StageStatus::try_from(t.status)
                    .map(|s| s.as_str_name().trim_start_matches("STAGE_STATUS_").to_ascii_lowercase())
                    .unwrap_or_default();
                let started = t.started_at.as_ref().map(|ts| {
                    chrono::DateTime::from_timestamp(ts.seconds, u32::try_from(ts.nanos).unwrap_or(0))
                        .map(|d| d.to_rfc3339())
                        .unwrap_or_default()
                });
                json!({ "stage": stage_name(t.stage), "status": status, "started_at": started, "duration_ms": t.duration_ms })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_round_trip() {
        let v = json!({"app_id": "dashboard", "n": 2, "w": 2.5, "list": [true, null], "o": {"k": "v"}});
        assert_eq!(struct_to_json(&json_to_struct(v.clone())), v);
        assert_eq!(stage_name(Stage::IntentDetection as i32), "intent_detection");
    }
}
