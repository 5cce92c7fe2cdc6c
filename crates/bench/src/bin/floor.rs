//! Does nothing: the benchmark's floor for starting a static process.

fn main() {}
