//! Churn: many calls at once and many calls in a row, each leaving one intact record, with the size bound held.
//!
//! The real plugin is `/bin/cat` itself (linked into the real directory), so the cost measured is the shim's.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Barrier};

use crate::util::{text, Lab};

/// A lab whose real plugin `cat` is `/bin/cat`, with the given install arguments.
fn cat_lab(install_args: &[&str]) -> Lab {
    let lab = Lab::with_args(&[("cat", "exec cat")], install_args);
    let real = lab.real.join("cat");
    fs::remove_file(&real).unwrap();
    std::os::unix::fs::symlink("/bin/cat", &real).unwrap();
    lab
}

fn conf(i: usize) -> String {
    format!(r#"{{"cniVersion":"1.0.0","name":"net-{i}","type":"cat"}}"#)
}

/// The files of the log directory: (name, size).
fn files(lab: &Lab) -> Vec<(String, u64)> {
    fs::read_dir(&lab.logs)
        .unwrap()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().map(|m| m.len()).unwrap_or(0),
            )
        })
        .collect()
}

/// What the bound counts: each record as the 4 KiB blocks it occupies.
fn counted(files: &[(String, u64)]) -> u64 {
    files
        .iter()
        .map(|(_, len)| len.max(&1).div_ceil(4096) * 4096)
        .sum()
}

/// Asserts a record is the intact record of call `i`: its container, its stdin, and stdout equal to stdin.
fn assert_record_of(r: &cni_shim::Record, i: usize) {
    assert_eq!(r.container_id.as_deref(), Some(format!("ctr-{i}").as_str()));
    assert_eq!(r.stdin.text.as_deref(), Some(conf(i).as_str()), "{r:?}");
    assert_eq!(r.stdout.text, r.stdin.text, "{r:?}");
    assert_eq!((r.exit.code, r.stdin.truncated), (0, false));
}

/// Runs calls `ids` through the shim all at once (released together by a barrier) and checks what each caller got.
fn concurrently(lab: &Lab, ids: std::ops::Range<usize>) {
    let barrier = Arc::new(Barrier::new(ids.len()));
    let threads: Vec<_> = ids
        .map(|i| {
            let mut c = lab.command("cat");
            c.env("CNI_CONTAINERID", format!("ctr-{i}"));
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                (i, Lab::run_detached(c, conf(i).into_bytes()))
            })
        })
        .collect();
    for t in threads {
        let (i, out) = t.join().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "call {i}: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout), conf(i), "call {i}");
    }
}

#[test]
fn two_hundred_fifty_six_concurrent_calls_leave_256_intact_records() {
    let lab = cat_lab(&[]);
    concurrently(&lab, 0..256);
    let records = lab.records();
    assert_eq!(records.len(), 256);
    let mut seen = BTreeSet::new();
    for r in &records {
        let i: usize = r
            .container_id
            .as_deref()
            .and_then(|c| c.strip_prefix("ctr-"))
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert_record_of(r, i);
        seen.insert(i);
    }
    assert_eq!(seen.len(), 256);
    let ids: BTreeSet<_> = records.iter().map(|r| r.id.clone()).collect();
    assert_eq!(ids.len(), 256, "every call has its own record id");
    let temp: Vec<_> = files(&lab)
        .into_iter()
        .filter(|(n, _)| n.starts_with('.'))
        .collect();
    assert!(temp.is_empty(), "{temp:?}");
}

#[test]
fn two_hundred_fifty_six_concurrent_pruning_calls_hold_the_bound() {
    const BOUND: u64 = 64 * 1024;
    let lab = cat_lab(&["--max-bytes", &BOUND.to_string()]);
    lab.configure(|c| c.prune_every = 1);
    concurrently(&lab, 0..256);
    let left = files(&lab);
    assert!(
        counted(&left) <= BOUND,
        "{} bytes counted: {left:?}",
        counted(&left)
    );
    assert!(left.iter().all(|(n, _)| !n.starts_with('.')), "{left:?}");
    // What is kept is intact.
    let records = lab.records();
    assert!(!records.is_empty());
    for r in &records {
        let i = r
            .container_id
            .as_deref()
            .and_then(|c| c.strip_prefix("ctr-"));
        assert_record_of(r, i.and_then(|n| n.parse().ok()).unwrap());
    }
}

/// 10 000 calls in a row, with the bound enforced by every call: after each, its own record is there and intact,
/// the directory is within the bound, and nothing half-written lies about. Run by `scripts/churn.sh`: over a minute
/// in a debug build on two busy cores, too long for the suite.
#[test]
#[ignore = "10 000 calls: run by scripts/churn.sh"]
fn ten_thousand_sequential_calls_each_leave_an_intact_record_within_the_bound() {
    const BOUND: u64 = 64 * 1024;
    const CALLS: usize = 10_000;
    let lab = cat_lab(&["--max-bytes", &BOUND.to_string()]);
    lab.configure(|c| c.prune_every = 1);
    let started = std::time::Instant::now();
    let mut ids = BTreeSet::new();
    for i in 0..CALLS {
        let mut c = lab.command("cat");
        c.env("CNI_CONTAINERID", format!("ctr-{i}"));
        let out = lab.run(c, conf(i).as_bytes());
        assert_eq!(
            out.status.code(),
            Some(0),
            "call {i}: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout), conf(i), "call {i}");
        let left = files(&lab);
        assert!(
            counted(&left) <= BOUND,
            "call {i}: {} bytes counted",
            counted(&left)
        );
        assert!(
            left.iter().all(|(n, _)| !n.starts_with('.')),
            "call {i}: {left:?}"
        );
        let records = lab.records();
        let newest = records.last().unwrap();
        assert_record_of(newest, i);
        assert!(ids.insert(newest.id.clone()), "call {i}: record id reused");
        // Oldest first, contiguous: the bound dropped only the oldest.
        let first = i + 1 - records.len();
        for (k, r) in records.iter().enumerate() {
            assert_record_of(r, first + k);
        }
        assert!(fs::metadata(&lab.logs).unwrap().mode() & 0o077 == 0);
    }
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "{CALLS} sequential calls through cni-shim in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
