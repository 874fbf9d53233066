//! Smithy RPC v2 CBOR, as botocore's `RpcV2CBORSerializer` and `RpcV2CBORParser` speak
//! it: a request body is one CBOR map (an empty body is an empty map), timestamps are
//! tag 1 around epoch seconds; an error answer is a map with `__type` (the error shape's
//! name) and `message`, and for a service with `awsQueryCompatible` (CloudWatch) the
//! header `x-amzn-query-error: <Code>;Sender`, whose code clients report.
//!
//! Requests are read into a `serde_json::Value` first (tags dropped, integers where a
//! double is expected accepted), then into their shape by the same machinery as the JSON
//! APIs, so a bad member is named the same way; answers go the other way, the shape's
//! [`TIMESTAMP_MEMBERS`] (each element, for a list of timestamps) becoming tag 1.

use axum::response::Response;
use ciborium::Value;
use controlplane::ops::cloudwatch::CwError;
use model::wire::Required;
use model::wire_cw::TIMESTAMP_MEMBERS;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// `Content-Type` of requests and answers.
pub const CBOR_CT: &str = "application/cbor";
/// The `smithy-protocol` header every request and answer carries.
pub const SMITHY_PROTOCOL: &str = "rpc-v2-cbor";

/// An empty CBOR map: the answer of an operation without output.
pub const EMPTY_MAP: [u8; 1] = [0xa0];

/// CBOR as JSON: tags dropped (tag 1 keeps its epoch seconds), text keys only, floats
/// finite; anything else is a `SerializationException`.
fn to_json(v: Value) -> Result<serde_json::Value, ApiError> {
    let bad = |what: &str| ApiError::Serialization(format!("The CBOR body has {what}."));
    Ok(match v {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(b),
        Value::Integer(i) => {
            let i = i128::from(i);
            if let Ok(u) = u64::try_from(i) {
                serde_json::Value::from(u)
            } else if let Ok(s) = i64::try_from(i) {
                serde_json::Value::from(s)
            } else {
                return Err(bad("an integer out of range"));
            }
        }
        Value::Float(f) => serde_json::Number::from_f64(f)
            .map(serde_json::Value::Number)
            .ok_or_else(|| bad("a number that is not finite"))?,
        Value::Text(s) => serde_json::Value::String(s),
        Value::Bytes(_) => return Err(bad("a byte string where none is expected")),
        Value::Tag(_, inner) => to_json(*inner)?,
        Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(to_json).collect::<Result<_, _>>()?)
        }
        Value::Map(entries) => {
            let mut m = serde_json::Map::with_capacity(entries.len());
            for (k, v) in entries {
                let Value::Text(k) = k else {
                    return Err(bad("a map key that is not text"));
                };
                // A null member is an absent one (botocore's parser drops them too).
                if !v.is_null() {
                    m.insert(k, to_json(v)?);
                }
            }
            serde_json::Value::Object(m)
        }
        _ => return Err(bad("a value of an unknown kind")),
    })
}

/// JSON as CBOR; the value of a member named in [`TIMESTAMP_MEMBERS`] (each element of
/// it, when it is a list: GetMetricData's `Timestamps`) becomes tag 1.
fn to_cbor(v: serde_json::Value, timestamp: bool) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => {
            let value = if let Some(u) = n.as_u64() {
                Value::Integer(u.into())
            } else if let Some(i) = n.as_i64() {
                Value::Integer(i.into())
            } else {
                Value::Float(n.as_f64().unwrap_or(0.0))
            };
            if timestamp {
                Value::Tag(1, Box::new(value))
            } else {
                value
            }
        }
        serde_json::Value::String(s) => Value::Text(s),
        serde_json::Value::Array(items) => {
            Value::Array(items.into_iter().map(|i| to_cbor(i, timestamp)).collect())
        }
        serde_json::Value::Object(m) => Value::Map(
            m.into_iter()
                .map(|(k, v)| {
                    let ts = TIMESTAMP_MEMBERS.contains(&k.as_str());
                    (Value::Text(k), to_cbor(v, ts))
                })
                .collect(),
        ),
    }
}

/// Parses a request body into `T`: a body that is not one CBOR map is a
/// `SerializationException`, a member of the wrong type a `ValidationError` naming it,
/// a required member that is absent `MissingParameter`.
pub fn parse<T: DeserializeOwned + Required>(body: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = if body.is_empty() {
        serde_json::Value::Object(serde_json::Map::new())
    } else {
        let cbor: Value = ciborium::from_reader(body).map_err(|e| {
            ApiError::Serialization(format!("The request body is not valid CBOR: {e}"))
        })?;
        to_json(cbor)?
    };
    let json = serde_json::to_vec(&value)
        .map_err(|e| ApiError::Serialization(format!("The request body cannot be read: {e}")))?;
    super::parse_json_body(&json)
}

/// Encodes an answer.
pub fn encode<T: Serialize>(resp: &T) -> Result<Vec<u8>, ApiError> {
    let json = serde_json::to_value(resp)
        .map_err(|e| CwError::Internal(format!("cannot encode the response: {e}")))?;
    let mut out = Vec::new();
    ciborium::into_writer(&to_cbor(json, false), &mut out)
        .map_err(|e| CwError::Internal(format!("cannot encode the response: {e}")))?;
    Ok(out)
}

/// A CBOR error body: `{__type, message}`.
fn error_body(code: &str, message: &str) -> Vec<u8> {
    let map = Value::Map(vec![
        (Value::Text("__type".into()), Value::Text(code.into())),
        (Value::Text("message".into()), Value::Text(message.into())),
    ]);
    let mut out = Vec::new();
    // Writing a small map into a Vec cannot fail.
    let _ = ciborium::into_writer(&map, &mut out);
    out
}

/// The HTTP answer: the CBOR body, or the error as a CBOR `{__type, message}` with
/// `x-amzn-query-error` for CloudWatch's own errors.
pub fn answer(result: Result<Vec<u8>, ApiError>) -> Response {
    super::answer_with(result, CBOR_CT, error_body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::testing::rejected;
    use axum::http::StatusCode;
    use model::wire_cw::{
        DescribeAlarmsResult, MetricAlarm, PutMetricAlarmRequest, PutMetricDataRequest,
        SetAlarmStateRequest, StateValue,
    };

    fn cbor(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(v, &mut out).unwrap();
        out
    }

    /// The member `key` of the CBOR map `map` (panics when absent).
    fn member(map: &Value, key: &str) -> Value {
        map.as_map()
            .unwrap()
            .iter()
            .find(|(k, _)| k.as_text() == Some(key))
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no member {key}"))
    }

    fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    #[test]
    fn tagged_timestamps_and_integer_doubles_are_read() {
        // As botocore writes PutMetricData: a timestamp is tag 1 around an integer, a
        // double may be given as an integer by other clients.
        let body = cbor(&Value::Map(vec![
            (text("Namespace"), text("App")),
            (
                text("MetricData"),
                Value::Array(vec![Value::Map(vec![
                    (text("MetricName"), text("Errors")),
                    (
                        text("Timestamp"),
                        Value::Tag(1, Box::new(Value::Integer(1_700_000_000.into()))),
                    ),
                    (text("Value"), Value::Integer(3.into())),
                    (text("Unit"), Value::Null),
                ])]),
            ),
        ]));
        let req: PutMetricDataRequest = parse(&body).unwrap();
        let d = &req.metric_data.unwrap()[0];
        assert_eq!(d.timestamp, Some(1_700_000_000.0));
        assert_eq!(d.value, Some(3.0));
        assert_eq!(d.unit, None);
    }

    #[test]
    fn bad_bodies_are_named() {
        rejected(
            parse::<PutMetricAlarmRequest>(b"\xff\x00"),
            "SerializationException",
        );
        rejected(
            parse::<PutMetricAlarmRequest>(&cbor(&Value::Array(vec![]))),
            "SerializationException",
        );
        let m = rejected(
            parse::<PutMetricAlarmRequest>(&cbor(&Value::Map(vec![
                (text("AlarmName"), text("a")),
                (text("Period"), text("sixty")),
            ]))),
            "ValidationError",
        );
        assert!(m.contains("Period"), "{m}");
        let m = rejected(
            parse::<SetAlarmStateRequest>(&cbor(&Value::Map(vec![(text("AlarmName"), text("a"))]))),
            "MissingRequiredParameterException",
        );
        assert!(m.contains("StateValue"), "{m}");
        // An empty body is an empty map.
        rejected(
            parse::<PutMetricAlarmRequest>(b""),
            "MissingRequiredParameterException",
        );
    }

    #[test]
    fn answers_tag_timestamps_and_keep_other_numbers() {
        let out = encode(&DescribeAlarmsResult {
            metric_alarms: vec![MetricAlarm {
                alarm_name: Some("a".into()),
                state_value: Some(StateValue::Alarm),
                state_updated_timestamp: Some(1_700_000_000.5),
                threshold: Some(2.0),
                period: Some(60),
                ..Default::default()
            }],
            ..Default::default()
        })
        .unwrap();
        let v: Value = ciborium::from_reader(&out[..]).unwrap();
        let alarm = &v.as_map().unwrap()[0].1.as_array().unwrap()[0];
        let get = |k: &str| member(alarm, k);
        assert_eq!(
            get("StateUpdatedTimestamp"),
            Value::Tag(1, Box::new(Value::Float(1_700_000_000.5)))
        );
        assert_eq!(get("Threshold"), Value::Float(2.0));
        assert_eq!(get("Period"), Value::Integer(60.into()));
        assert_eq!(get("StateValue"), text("ALARM"));
    }

    #[test]
    fn a_list_of_timestamps_tags_each_and_its_values_stay_numbers() {
        let out = encode(&model::wire_cw::GetMetricDataResult {
            metric_data_results: vec![model::wire_cw::MetricDataResult {
                id: "m1".into(),
                label: "Errors".into(),
                timestamps: vec![1_700_000_160.0, 1_700_000_100.0],
                values: vec![2.5, 1.0],
                status_code: model::wire_cw::StatusCode::Complete,
                messages: Vec::new(),
            }],
            ..Default::default()
        })
        .unwrap();
        let v: Value = ciborium::from_reader(&out[..]).unwrap();
        let results = member(&v, "MetricDataResults");
        let result = &results.as_array().unwrap()[0];
        let get = |k: &str| member(result, k);
        let tagged = |s: f64| Value::Tag(1, Box::new(Value::Float(s)));
        assert_eq!(
            get("Timestamps"),
            Value::Array(vec![tagged(1_700_000_160.0), tagged(1_700_000_100.0)])
        );
        assert_eq!(
            get("Values"),
            Value::Array(vec![Value::Float(2.5), Value::Float(1.0)])
        );
        assert_eq!(get("StatusCode"), text("Complete"));
    }

    #[tokio::test]
    async fn errors_carry_type_message_and_the_query_code() {
        let resp = answer(Err(
            CwError::ResourceNotFound("Alarm x not found".into()).into()
        ));
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            resp.headers()["x-amzn-query-error"],
            "ResourceNotFound;Sender"
        );
        assert_eq!(resp.headers()["smithy-protocol"], SMITHY_PROTOCOL);
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let v: Value = ciborium::from_reader(&body[..]).unwrap();
        let m = v.as_map().unwrap();
        assert_eq!(m[0], (text("__type"), text("ResourceNotFound")));
        assert_eq!(m[1], (text("message"), text("Alarm x not found")));
        let resp = answer(Err(ApiError::MissingAuthentication));
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert!(resp.headers().get("x-amzn-query-error").is_none());
    }
}
