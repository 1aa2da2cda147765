//! `shoal-tune` command line.

fn main() {}
