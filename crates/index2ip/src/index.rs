//! Where a pod's index comes from: `ipam.index`, or else the pod's name.

use serde_json::Value;

use crate::{Error, Index};

/// The index for a call: `ipam.index` when the configuration has one (an invalid one is an error, never a reason
/// to look elsewhere), else the number after the first `index` followed by digits in the pod's name, as the original
/// read it from `K8S_POD_NAME` (a pod of the DaemonSet `ndt-index2` gets 2).
pub fn resolve(configured: Option<&Value>, pod_name: Option<&str>) -> Result<Index, Error> {
    match configured {
        Some(value) if !value.is_null() => from_config(value),
        _ => match pod_name {
            Some(name) => from_pod_name(name).ok_or_else(|| Error::NoIndex {
                pod: Some(name.to_owned()),
            })?,
            None => Err(Error::NoIndex { pod: None }),
        },
    }
}

fn from_config(value: &Value) -> Result<Index, Error> {
    let invalid = || Error::InvalidIndex {
        value: value.to_string(),
    };
    value.as_u64().and_then(Index::new).ok_or_else(invalid)
}

/// `Some` when the name holds `index` followed by digits; the digits must then form a valid index.
fn from_pod_name(name: &str) -> Option<Result<Index, Error>> {
    name.match_indices("index").find_map(|(at, word)| {
        let rest = &name[at + word.len()..];
        let digits = &rest[..rest.bytes().take_while(u8::is_ascii_digit).count()];
        (!digits.is_empty()).then(|| {
            digits
                .parse()
                .ok()
                .and_then(Index::new)
                .ok_or_else(|| Error::InvalidPodIndex {
                    pod: name.to_owned(),
                    digits: digits.to_owned(),
                })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(configured: Option<Value>, pod: Option<&str>) -> Option<u32> {
        resolve(configured.as_ref(), pod).ok().map(Index::get)
    }

    fn err(configured: Option<Value>, pod: Option<&str>) -> String {
        resolve(configured.as_ref(), pod)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn config_wins_over_the_pod_name() {
        assert_eq!(ok(Some(json!(5)), Some("ndt-index2-abc")), Some(5));
        assert_eq!(ok(None, Some("ndt-index2-abc")), Some(2));
        assert_eq!(ok(Some(Value::Null), Some("ndt-index12-abc")), Some(12));
    }

    #[test]
    fn pod_name_takes_the_first_index_followed_by_digits() {
        assert_eq!(ok(None, Some("reindexer-index3-index4")), Some(3));
        assert_eq!(ok(None, Some("index007")), Some(7));
        assert!(err(None, Some("ndt-indexx")).contains("\"ndt-indexx\" holds no index<N>"));
        assert!(err(None, Some("ndt-index0")).contains("index0"));
        assert!(err(None, Some("ndt-index99999999999999999999")).contains("not a valid index"));
    }

    #[test]
    fn refuses_anything_but_a_positive_integer() {
        for bad in [
            json!(0),
            json!(-1),
            json!(2.5),
            json!(5.0),
            json!("5"),
            json!(true),
            json!([5]),
            json!({}),
            json!(9_223_372_036_854_775_808u64),
            json!(4_294_967_296u64),
        ] {
            let msg = err(Some(bad.clone()), Some("ndt-index2"));
            assert!(
                msg.starts_with("ipam.index must be a positive integer"),
                "{bad}: {msg}"
            );
        }
        assert_eq!(ok(Some(json!(4_294_967_295u64)), None), Some(u32::MAX));
    }

    #[test]
    fn no_index_anywhere_says_where_to_put_one() {
        assert!(err(None, None).contains("set ipam.index"));
    }
}
