//! Conversions between the protobuf well-known types the services speak and the JSON the REST
//! routes, the WebSocket and SSE return, shared so every route renders them alike.

use getlood_common::ApiError;
use serde_json::{Value, json};

pub(crate) use getlood_common::structs::{opt_struct_to_json, struct_to_json as proto_struct_to_json};

/// An optional JSON object of a request body (`field` names it in the error) as a `Struct`;
/// absent and `null` are `None`, anything but an object is 400.
pub(crate) fn json_object_to_struct(v: Option<&Value>, field: &str) -> Result<Option<prost_types::Struct>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(getlood_common::structs::object_to_struct(o))),
        Some(_) => Err(ApiError::invalid_argument(format!("{field} must be a JSON object"))),
    }
}

/// A typed body as a JSON value, for the callers that assemble JSON (GraphQL, socket frames).
/// Writing a struct of strings, numbers and JSON values cannot fail; `null` if it ever did.
pub(crate) fn to_json(body: &impl serde::Serialize) -> Value {
    serde_json::to_value(body).unwrap_or_default()
}

/// A timestamp as RFC 3339 text, `None` (written `null`) when absent: the field type of the
/// typed response bodies.
pub(crate) fn timestamp(ts: Option<&prost_types::Timestamp>) -> Option<String> {
    ts.map(ToString::to_string)
}

/// A timestamp as RFC 3339 text, `null` when absent.
pub(crate) fn timestamp_json(ts: Option<&prost_types::Timestamp>) -> Value {
    ts.map_or(Value::Null, |t| json!(t.to_string()))
}

/// An RFC 3339 timestamp of a request body (`field` names it in the error).
pub(crate) fn parse_timestamp(raw: Option<&str>, field: &str) -> Result<Option<prost_types::Timestamp>, ApiError> {
    match raw {
        None | Some("") => Ok(None),
        Some(raw) => raw.parse::<prost_types::Timestamp>().map(Some).map_err(|_| {
            ApiError::invalid_argument(format!(
                "{field} must be an RFC 3339 time such as 2026-01-31T08:00:00Z, not '{}'",
                raw.chars().take(40).collect::<String>()
            ))
        }),
    }
}

/// A proto enum value's name without its prefix, lowercase (`RUN_STATUS_SUCCEEDED` with prefix
/// `RUN_STATUS_` is `succeeded`): the spelling of enums in REST bodies.
pub(crate) fn enum_name(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix).unwrap_or(name).to_ascii_lowercase()
}

/// Parses the REST spelling of a proto enum (`engine`, case-insensitive) with `from_str_name`
/// of the proto's full names; `field` and `allowed` make the 400 say what would have worked.
pub(crate) fn parse_enum<E>(
    raw: &str,
    prefix: &str,
    from_str_name: fn(&str) -> Option<E>,
    field: &str,
    allowed: &str,
) -> Result<E, ApiError> {
    from_str_name(&format!("{prefix}{}", raw.to_ascii_uppercase())).ok_or_else(|| {
        ApiError::invalid_argument(format!(
            "{field} '{}' is not one of {allowed}",
            raw.chars().take(32).collect::<String>()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_through_struct() {
        let v = json!({"a": 1.5, "b": [true, null, "x"], "c": {"d": "e"}});
        let s = json_object_to_struct(Some(&v), "data").unwrap().unwrap();
        assert_eq!(proto_struct_to_json(&s), v);
        assert!(json_object_to_struct(Some(&json!([1])), "data").is_err());
        assert_eq!(json_object_to_struct(Some(&Value::Null), "data").unwrap(), None);
    }

    #[test]
    fn timestamps_parse_rfc3339_and_refuse_garbage() {
        let ts = parse_timestamp(Some("2026-01-31T08:00:00Z"), "start_at").unwrap().unwrap();
        assert_eq!(timestamp_json(Some(&ts)), json!("2026-01-31T08:00:00Z"));
        let err = parse_timestamp(Some("tomorrow"), "start_at").unwrap_err();
        assert!(err.message.contains("start_at"), "{}", err.message);
    }
}
