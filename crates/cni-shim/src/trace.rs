//! Linking a call to the call that made it.
//!
//! Each call gets a span id; the shim passes `CNI_SHIM_TRACEPARENT` (W3C trace-context syntax:
//! `00-<trace-id>-<span-id>-01`) to the real plugin, whose delegated calls inherit it and so name their parent.
//! A call with no shim parent honours the runtime's `TRACEPARENT` (libcni passes it), so that every network of a
//! pod's set-up shares the runtime's trace id. `TRACEPARENT` itself is passed through untouched.

use rustix::rand::{getrandom, GetRandomFlags};

/// The variable the shim sets for the real plugin's children.
pub(crate) const ENV: &str = "CNI_SHIM_TRACEPARENT";
/// The W3C variable a runtime may set.
pub(crate) const W3C_ENV: &str = "TRACEPARENT";

/// Where a call's parent link came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// An enclosing call through the shim.
    Shim,
    /// The runtime's `TRACEPARENT`: the parent is a span of the runtime's, not a record.
    W3c,
}

/// A call's place in its trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Span {
    /// 32 hex digits, shared by every call of one trace.
    pub trace_id: String,
    /// 16 hex digits, this call's own.
    pub id: String,
    /// The parent's span id, and where it came from.
    pub parent: Option<(String, Source)>,
}

impl Span {
    /// This call's span, from the values of `CNI_SHIM_TRACEPARENT` and `TRACEPARENT`.
    pub(crate) fn start(shim: Option<&str>, w3c: Option<&str>) -> Span {
        let parent = shim
            .and_then(parse)
            .map(|(t, p)| (t, p, Source::Shim))
            .or_else(|| w3c.and_then(parse).map(|(t, p)| (t, p, Source::W3c)));
        match parent {
            Some((trace_id, parent_id, source)) => Span {
                trace_id,
                id: span_id(),
                parent: Some((parent_id, source)),
            },
            None => Span {
                trace_id: format!("{:016x}{:016x}", random_nonzero(), random_nonzero()),
                id: span_id(),
                parent: None,
            },
        }
    }

    /// The value of `CNI_SHIM_TRACEPARENT` for this call's children.
    pub(crate) fn child_env(&self) -> String {
        format!("00-{}-{}-01", self.trace_id, self.id)
    }
}

pub(crate) fn span_id() -> String {
    format!("{:016x}", random_nonzero())
}

/// 64 random bits from the kernel (getrandom(2), one system call), never zero: an all-zero id is invalid in trace
/// context. Should the kernel refuse (a seccomp filter, a kernel before 3.17), the bits come from the clock and the
/// process id: unique enough to link records, which is all they are for.
fn random_nonzero() -> u64 {
    let mut bytes = [0u8; 8];
    let v = match getrandom(&mut bytes, GetRandomFlags::empty()) {
        Ok(8) => u64::from_ne_bytes(bytes),
        _ => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            (nanos as u64).rotate_left(20) ^ u64::from(std::process::id())
        }
    };
    v.max(1)
}

/// Reads `VV-TTTT…(32)-PPPP…(16)-FF`: returns (trace id, parent id). Version ff, upper-case hex and all-zero ids
/// are invalid (W3C trace-context, "traceparent header").
pub(crate) fn parse(value: &str) -> Option<(String, String)> {
    let mut parts = value.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
    };
    let ok = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace.bytes().any(|c| c != b'0')
        && parent.bytes().any(|c| c != b'0')
        && (version != "00" || parts.next().is_none());
    ok.then(|| (trace.to_owned(), parent.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_valid_traceparents_only() {
        assert_eq!(
            parse(TP),
            Some((
                "4bf92f3577b34da6a3ce929d0e0e4736".into(),
                "00f067aa0ba902b7".into()
            ))
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_shim_parent_wins_over_the_runtime_one() {
        let shim = "00-11111111111111111111111111111111-2222222222222222-01";
        let s = Span::start(Some(shim), Some(TP));
        assert_eq!(s.trace_id, "11111111111111111111111111111111");
        assert_eq!(s.parent, Some(("2222222222222222".into(), Source::Shim)));
        let s = Span::start(None, Some(TP));
        assert_eq!(s.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(s.parent, Some(("00f067aa0ba902b7".into(), Source::W3c)));
        assert_eq!(
            parse(&s.child_env()),
            Some((s.trace_id.clone(), s.id.clone()))
        );
    }

    #[test]
    fn a_root_gets_fresh_distinct_ids() {
        let a = Span::start(None, Some("garbage"));
        let b = Span::start(None, None);
        assert_eq!(a.parent, None);
        assert_ne!(a.trace_id, b.trace_id);
        assert_ne!(a.id, b.id);
        assert!(parse(&a.child_env()).is_some());
    }
}
