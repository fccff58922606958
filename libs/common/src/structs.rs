//! The one conversion between JSON and protobuf's `Struct`/`Value`, used wherever a JSON
//! object crosses a gRPC boundary (window props, node inputs and outputs, UI action params,
//! REST bodies), so every service renders the same value the same way.

use prost_types::value::Kind;
use serde_json::{Map, Value};

/// Largest double that is still an exact integer (2^53): whole numbers below it come back as
/// JSON integers, so a `3` sent through a `Struct` is still `3`, not `3.0`.
const MAX_EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;

/// A JSON value as a protobuf `Value` (numbers become doubles: protobuf has no integers here).
pub fn json_to_value(v: &Value) -> prost_types::Value {
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(a) => Kind::ListValue(prost_types::ListValue { values: a.iter().map(json_to_value).collect() }),
        Value::Object(o) => Kind::StructValue(object_to_struct(o)),
    };
    prost_types::Value { kind: Some(kind) }
}

/// A JSON object as a protobuf `Struct`.
pub fn object_to_struct(o: &Map<String, Value>) -> prost_types::Struct {
    prost_types::Struct { fields: o.iter().map(|(k, v)| (k.clone(), json_to_value(v))).collect() }
}

/// A protobuf `Value` as JSON: whole doubles below 2^53 as integers, non-finite numbers
/// (which JSON cannot carry) as `null`.
pub fn value_to_json(v: &prost_types::Value) -> Value {
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::NumberValue(n)) => number_to_json(*n),
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::ListValue(l)) => Value::Array(l.values.iter().map(value_to_json).collect()),
        Some(Kind::StructValue(s)) => struct_to_json(s),
    }
}

/// A protobuf `Struct` as a JSON object.
pub fn struct_to_json(s: &prost_types::Struct) -> Value {
    Value::Object(s.fields.iter().map(|(k, v)| (k.clone(), value_to_json(v))).collect())
}

/// An optional `Struct` as a JSON object, `{}` when absent (readers need not test for null).
pub fn opt_struct_to_json(s: Option<&prost_types::Struct>) -> Value {
    s.map_or_else(|| Value::Object(Map::new()), struct_to_json)
}

fn number_to_json(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < MAX_EXACT_INTEGER {
        // Exact: the guard keeps the value inside i64's exactly representable range.
        #[allow(clippy::cast_possible_truncation)]
        Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_round_trips_through_struct() {
        let v = json!({"a": 3, "b": 2.5, "c": [true, null, "x"], "d": {"e": -7}});
        let s = object_to_struct(v.as_object().unwrap());
        assert_eq!(struct_to_json(&s), v);
    }

    #[test]
    fn non_finite_numbers_become_null_and_absent_structs_empty_objects() {
        let v = prost_types::Value { kind: Some(Kind::NumberValue(f64::NAN)) };
        assert_eq!(value_to_json(&v), Value::Null);
        assert_eq!(opt_struct_to_json(None), json!({}));
        let big = prost_types::Value { kind: Some(Kind::NumberValue(1e300)) };
        assert_eq!(value_to_json(&big), json!(1e300));
    }
}
