//! Forwarding a stream while keeping a bounded copy of it for the record.

use std::io::{self, ErrorKind, Read, Write};

/// A bounded copy of a stream: its first `limit` bytes and its total length.
#[derive(Debug, Clone, Default)]
pub struct Capture {
    /// The bytes kept.
    pub bytes: Vec<u8>,
    /// How many bytes passed in all.
    pub total: u64,
    limit: usize,
}

impl Capture {
    /// An empty capture keeping at most `limit` bytes.
    pub fn new(limit: u64) -> Capture {
        Capture {
            bytes: Vec::new(),
            total: 0,
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
        }
    }

    /// Keeps what fits of `chunk` and counts all of it.
    pub fn push(&mut self, chunk: &[u8]) {
        self.total += chunk.len() as u64;
        let room = self.limit.saturating_sub(self.bytes.len());
        self.bytes
            .extend_from_slice(&chunk[..room.min(chunk.len())]);
    }

    /// Whether bytes were dropped.
    pub fn truncated(&self) -> bool {
        self.total > self.bytes.len() as u64
    }
}

/// What [`pump`] does when writing fails because the reader went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnBroken {
    /// Keep reading (and keeping) to the end of input, so the writer on the other side never blocks.
    Drain,
    /// Stop reading, so the writer on the other side meets the broken pipe too, as it would without the shim.
    Stop,
}

/// Copies `from` to `to` until end of input, keeping a bounded copy in `keep`. Returns the first read error, if
/// any.
pub fn pump(
    mut from: impl Read,
    to: Option<impl Write>,
    on_broken: OnBroken,
    keep: &mut dyn FnMut(&[u8]),
) -> io::Result<()> {
    let mut to = to;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = &buf[..n];
        keep(chunk);
        if let Some(w) = to.as_mut() {
            if w.write_all(chunk).is_err() {
                if on_broken == OnBroken::Stop {
                    return Ok(());
                }
                to = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_bounded_prefix_and_counts_everything() {
        let mut c = Capture::new(5);
        c.push(b"abc");
        c.push(b"defgh");
        assert_eq!(c.bytes, b"abcde");
        assert_eq!(c.total, 8);
        assert!(c.truncated());
    }

    #[test]
    fn pump_forwards_everything_and_survives_a_dead_writer() -> io::Result<()> {
        struct Dead;
        impl Write for Dead {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        let mut c = Capture::new(10);
        pump(&data[..], Some(&mut out), OnBroken::Stop, &mut |b| {
            c.push(b)
        })?;
        assert_eq!(out, data);
        assert_eq!(c.total, data.len() as u64);
        let mut c = Capture::new(u64::MAX);
        pump(&data[..], Some(Dead), OnBroken::Drain, &mut |b| c.push(b))?;
        assert_eq!(c.bytes, data, "a dead writer does not stop the drain");
        let mut c = Capture::new(u64::MAX);
        pump(&data[..], Some(Dead), OnBroken::Stop, &mut |b| c.push(b))?;
        assert_eq!(
            c.total,
            64 * 1024,
            "a dead writer stops the copy after the chunk it refused"
        );
        Ok(())
    }
}
