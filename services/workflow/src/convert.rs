//! Conversions between protobuf `Struct`/`Timestamp` and the JSON and chrono values stored in
//! Postgres.

use chrono::{DateTime, Utc};
use prost_types::value::Kind;
use serde_json::{Map, Value, json};

/// A JSON value as a protobuf `Value` (numbers become doubles, as protobuf has no integers there).
pub(crate) fn json_to_value(v: Value) -> prost_types::Value {
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => Kind::StringValue(s),
        Value::Array(a) => {
            Kind::ListValue(prost_types::ListValue { values: a.into_iter().map(json_to_value).collect() })
        }
        Value::Object(o) => Kind::StructValue(object_to_struct(o)),
    };
    prost_types::Value { kind: Some(kind) }
}

fn object_to_struct(o: Map<String, Value>) -> prost_types::Struct {
    prost_types::Struct { fields: o.into_iter().map(|(k, v)| (k, json_to_value(v))).collect() }
}

/// A JSON object as a protobuf `Struct`; a non-object is wrapped as `{"value": ...}` so nothing
/// a node produced is silently dropped.
pub(crate) fn json_to_struct(v: Value) -> prost_types::Struct {
    match v {
        Value::Object(o) => object_to_struct(o),
        Value::Null => prost_types::Struct::default(),
        other => object_to_struct(Map::from_iter([("value".to_owned(), other)])),
    }
}

/// A protobuf `Value` as JSON; whole doubles come back as integers, so `3` stays `3`.
pub(crate) fn value_to_json(v: &prost_types::Value) -> Value {
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => json!(b),
        Some(Kind::NumberValue(n)) => {
            if n.fract() == 0.0 && n.abs() < 9.0e15 {
                json!(*n as i64)
            } else {
                json!(n)
            }
        }
        Some(Kind::StringValue(s)) => json!(s),
        Some(Kind::ListValue(l)) => Value::Array(l.values.iter().map(value_to_json).collect()),
        Some(Kind::StructValue(s)) => struct_to_json(s),
    }
}

/// A protobuf `Struct` as a JSON object.
pub(crate) fn struct_to_json(s: &prost_types::Struct) -> Value {
    Value::Object(s.fields.iter().map(|(k, v)| (k.clone(), value_to_json(v))).collect())
}

/// An optional `Struct` as a JSON object (`{}` when absent).
pub(crate) fn opt_struct_to_json(s: Option<&prost_types::Struct>) -> Value {
    s.map(struct_to_json).unwrap_or_else(|| Value::Object(Map::new()))
}

/// A chrono time as a protobuf timestamp.
pub(crate) fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: t.timestamp(), nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0) }
}

/// An optional chrono time as an optional protobuf timestamp.
pub(crate) fn ts_opt(t: Option<DateTime<Utc>>) -> Option<prost_types::Timestamp> {
    t.map(ts)
}

/// A protobuf timestamp as a chrono time (`None` when out of range).
pub(crate) fn from_ts(t: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_through_struct() {
        let v = json!({"a": 1, "b": [true, null, "x"], "c": {"d": 2.5}});
        assert_eq!(struct_to_json(&json_to_struct(v.clone())), v);
    }
}
