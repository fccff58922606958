//! Conversions between protobuf `Struct`/`Timestamp` and the JSON and chrono values stored in
//! Postgres.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use getlood_common::structs::object_to_struct;
pub(crate) use getlood_common::structs::opt_struct_to_json;

/// A JSON object as a protobuf `Struct`; a non-object is wrapped as `{"value": ...}` so nothing
/// a node produced is silently dropped.
pub(crate) fn json_to_struct(v: Value) -> prost_types::Struct {
    match v {
        Value::Object(o) => object_to_struct(&o),
        Value::Null => prost_types::Struct::default(),
        other => object_to_struct(&Map::from_iter([("value".to_owned(), other)])),
    }
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
    use getlood_common::structs::struct_to_json;
    use serde_json::json;

    use super::*;

    #[test]
    fn non_objects_are_wrapped_not_dropped() {
        assert_eq!(struct_to_json(&json_to_struct(json!(3))), json!({"value": 3}));
        assert_eq!(struct_to_json(&json_to_struct(Value::Null)), json!({}));
        let v = json!({"a": 1, "b": [true, null, "x"]});
        assert_eq!(struct_to_json(&json_to_struct(v.clone())), v);
    }
}
