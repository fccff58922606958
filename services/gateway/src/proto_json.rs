//! Conversions between the protobuf well-known types the services speak and the JSON the REST
//! routes, the WebSocket and SSE return, shared so every route renders them alike.

use getlood_common::ApiError;
use serde_json::{Value, json};

/// `google.protobuf.Value` as JSON.
pub(crate) fn proto_value_to_json(value: &prost_types::Value) -> Value {
    use prost_types::value::Kind;
    match &value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::NumberValue(n)) => json!(n),
        Some(Kind::StringValue(s)) => json!(s),
        Some(Kind::BoolValue(b)) => json!(b),
        Some(Kind::StructValue(s)) => proto_struct_to_json(s),
        Some(Kind::ListValue(l)) => Value::Array(l.values.iter().map(proto_value_to_json).collect()),
    }
}

/// `google.protobuf.Struct` as a JSON object.
pub(crate) fn proto_struct_to_json(s: &prost_types::Struct) -> Value {
    Value::Object(s.fields.iter().map(|(k, v)| (k.clone(), proto_value_to_json(v))).collect())
}

/// An optional `Struct` as a JSON object, `{}` when absent (clients need not test for null).
pub(crate) fn opt_struct_to_json(s: Option<&prost_types::Struct>) -> Value {
    s.map_or_else(|| json!({}), proto_struct_to_json)
}

/// JSON as a `google.protobuf.Value` (numbers become doubles, as protobuf has no integers here).
pub(crate) fn json_to_proto_value(v: &Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(a) => {
            Kind::ListValue(prost_types::ListValue { values: a.iter().map(json_to_proto_value).collect() })
        }
        Value::Object(o) => Kind::StructValue(prost_types::Struct {
            fields: o.iter().map(|(k, v)| (k.clone(), json_to_proto_value(v))).collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

/// An optional JSON object of a request body (`field` names it in the error) as a `Struct`;
/// absent and `null` are `None`, anything but an object is 400.
pub(crate) fn json_object_to_struct(v: Option<&Value>, field: &str) -> Result<Option<prost_types::Struct>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(prost_types::Struct {
            fields: o.iter().map(|(k, v)| (k.clone(), json_to_proto_value(v))).collect(),
        })),
        Some(_) => Err(ApiError::invalid_argument(format!("{field} must be a JSON object"))),
    }
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
