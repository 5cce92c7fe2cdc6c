//! `diff`: a container's ADD input against its DEL (or CHECK) input, per plugin and interface.
//!
//! Runtimes have sent DEL with a configuration that lost its IPAM keys; the IPAM plugin then freed nothing and
//! addresses leaked. That shows here as keys present in ADD and missing in DEL.

use std::io::{self, Write};

use serde_json::Value;

use crate::record::Record;

/// One difference between two JSON documents.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Change {
    /// In the first only.
    Removed(String, Value),
    /// In the second only.
    Added(String, Value),
    /// In both, different.
    Changed(String, Value, Value),
}

/// The differences from `a` to `b`, by JSON pointer; arrays compare element by element.
pub(crate) fn json_diff(a: &Value, b: &Value, pointer: &str, out: &mut Vec<Change>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                let p = format!("{pointer}/{k}");
                match y.get(k) {
                    Some(vb) => json_diff(va, vb, &p, out),
                    None => out.push(Change::Removed(p, va.clone())),
                }
            }
            for (k, vb) in y {
                if !x.contains_key(k) {
                    out.push(Change::Added(format!("{pointer}/{k}"), vb.clone()));
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            for i in 0..x.len().max(y.len()) {
                let p = format!("{pointer}/{i}");
                match (x.get(i), y.get(i)) {
                    (Some(va), Some(vb)) => json_diff(va, vb, &p, out),
                    (Some(va), None) => out.push(Change::Removed(p, va.clone())),
                    (None, Some(vb)) => out.push(Change::Added(p, vb.clone())),
                    (None, None) => {}
                }
            }
        }
        _ if a != b => out.push(Change::Changed(pointer.to_owned(), a.clone(), b.clone())),
        _ => {}
    }
}

/// A pair to compare: the latest ADD and the latest `verb` call of one plugin on one interface.
#[derive(Debug)]
pub(crate) struct Pair<'a> {
    pub add: &'a Record,
    /// The DEL or CHECK call, if there was one.
    pub other: Option<&'a Record>,
}

/// Pairs a container's ADD calls with its `verb` calls by (plugin, ifname).
pub(crate) fn pairs<'a>(records: &'a [Record], container: &str, verb: &str) -> Vec<Pair<'a>> {
    let mine: Vec<&Record> = records
        .iter()
        .filter(|r| r.in_container(container))
        .collect();
    let is = |r: &Record, v: &str| {
        r.command
            .as_deref()
            .is_some_and(|c| c.eq_ignore_ascii_case(v))
    };
    let mut out: Vec<Pair<'a>> = Vec::new();
    for add in mine.iter().rev().filter(|r| is(r, "ADD")) {
        if out
            .iter()
            .any(|p| p.add.plugin == add.plugin && p.add.ifname == add.ifname)
        {
            continue;
        }
        let other = mine
            .iter()
            .rev()
            .find(|r| is(r, verb) && r.plugin == add.plugin && r.ifname == add.ifname)
            .copied();
        out.push(Pair { add, other });
    }
    out.reverse();
    out
}

/// Prints the differences; `all` includes `prevResult`, which legitimately differs.
pub(crate) fn print(
    out: &mut impl Write,
    pairs: &[Pair<'_>],
    verb: &str,
    all: bool,
) -> io::Result<usize> {
    let mut total = 0;
    for pair in pairs {
        let add = pair.add;
        let head = format!("{} {}", add.plugin, add.ifname.as_deref().unwrap_or("-"));
        let Some(other) = pair.other else {
            writeln!(out, "{head}: ADD [{}], no {verb} recorded", add.id)?;
            continue;
        };
        writeln!(out, "{head}: ADD [{}] vs {verb} [{}]", add.id, other.id)?;
        let (Some(a), Some(b)) = (add.stdin.json(), other.stdin.json()) else {
            writeln!(
                out,
                "  (an input is not JSON: compare with `cni-shim show`)"
            )?;
            continue;
        };
        let mut changes = Vec::new();
        json_diff(&a, &b, "", &mut changes);
        let shown: Vec<&Change> = changes
            .iter()
            .filter(|c| {
                all || !matches!(c, Change::Removed(p, _) | Change::Added(p, _) | Change::Changed(p, _, _)
                    if p.starts_with("/prevResult"))
            })
            .collect();
        if shown.is_empty() {
            writeln!(out, "  identical")?;
        }
        for c in shown {
            total += 1;
            match c {
                Change::Removed(p, v) => writeln!(out, "  - {p}: {v}   (missing in {verb})")?,
                Change::Added(p, v) => writeln!(out, "  + {p}: {v}   (only in {verb})")?,
                Change::Changed(p, a, b) => writeln!(out, "  ~ {p}: {a} -> {b}")?,
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_the_stripped_ipam() {
        let add = json!({"cniVersion":"0.3.1","type":"ipvlan","ipam":{"type":"index2ip","index":2},"args":[1,2]});
        let del = json!({"cniVersion":"0.3.1","type":"ipvlan","ipam":{"type":"index2ip"},"args":[1],"x":true});
        let mut changes = Vec::new();
        json_diff(&add, &del, "", &mut changes);
        assert_eq!(
            changes,
            vec![
                Change::Removed("/args/1".into(), json!(2)),
                Change::Removed("/ipam/index".into(), json!(2)),
                Change::Added("/x".into(), json!(true)),
            ]
        );
        let mut none = Vec::new();
        json_diff(&add, &add, "", &mut none);
        assert!(none.is_empty());
    }
}
