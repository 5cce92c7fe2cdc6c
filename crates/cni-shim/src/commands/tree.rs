//! `tree`: a container's calls as the trees they formed.

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};

use crate::commands::logs::{millis, short};
use crate::record::Record;
use crate::time;

/// A call and the calls it made.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub record: Record,
    /// The calls it made, in start order.
    pub children: Vec<Node>,
}

/// The records of one container (by id prefix), together with every record of the same traces, as a forest:
/// roots are calls whose parent is not a record here (a runtime's call, or a `TRACEPARENT` parent), in start order.
pub(crate) fn forest(records: &[Record], container: &str) -> Vec<Node> {
    let traces: HashSet<&str> = records
        .iter()
        .filter(|r| r.in_container(container))
        .map(|r| r.trace_id.as_str())
        .collect();
    let mut chosen: Vec<&Record> = records
        .iter()
        .filter(|r| traces.contains(r.trace_id.as_str()))
        .collect();
    chosen.sort_by_key(|r| r.start_unix_ns);
    let ids: HashSet<&str> = chosen.iter().map(|r| r.id.as_str()).collect();
    let mut children: HashMap<&str, Vec<&Record>> = HashMap::new();
    let mut roots = Vec::new();
    for r in &chosen {
        match r
            .parent_id
            .as_deref()
            .filter(|p| ids.contains(p) && *p != r.id)
        {
            Some(p) => children.entry(p).or_default().push(r),
            None => roots.push(*r),
        }
    }
    fn build(r: &Record, children: &HashMap<&str, Vec<&Record>>, depth: usize) -> Node {
        let kids = if depth > 64 {
            Vec::new()
        } else {
            children
                .get(r.id.as_str())
                .map(|v| v.iter().map(|c| build(c, children, depth + 1)).collect())
                .unwrap_or_default()
        };
        Node {
            record: r.clone(),
            children: kids,
        }
    }
    roots.iter().map(|r| build(r, &children, 0)).collect()
}

fn label(r: &Record) -> String {
    let exit = match r.exit.signal {
        Some(s) => format!("killed by signal {s}"),
        None if r.exit.code == 0 => "ok".to_owned(),
        None => format!("FAILED exit {}", r.exit.code),
    };
    format!(
        "{} {} {}  {}  {}  [{}]",
        r.plugin,
        r.command.as_deref().unwrap_or("?"),
        r.ifname.as_deref().unwrap_or("-"),
        exit,
        millis(r.duration_us),
        r.id
    )
}

/// Prints the forest with box-drawing branches.
pub(crate) fn print(out: &mut impl Write, container: &str, nodes: &[Node]) -> io::Result<()> {
    fn walk(out: &mut impl Write, node: &Node, prefix: &str, last: bool) -> io::Result<()> {
        writeln!(
            out,
            "{prefix}{}{}",
            if last { "└─ " } else { "├─ " },
            label(&node.record)
        )?;
        let deeper = format!("{prefix}{}", if last { "   " } else { "│  " });
        for (i, c) in node.children.iter().enumerate() {
            walk(out, c, &deeper, i + 1 == node.children.len())?;
        }
        Ok(())
    }
    if nodes.is_empty() {
        writeln!(out, "no calls recorded for container {container}")?;
    }
    for root in nodes {
        let r = &root.record;
        writeln!(
            out,
            "{} {} container {}{}  trace {}",
            time::clock(r.start_unix_ns),
            r.command.as_deref().unwrap_or("?"),
            short(r.container_id.as_deref().unwrap_or(container)),
            r.pod().map(|p| format!(" pod {p}")).unwrap_or_default(),
            r.trace_id
        )?;
        walk(out, root, "", true)?;
    }
    Ok(())
}
