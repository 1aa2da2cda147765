//! # shoal-tests
//!
//! Cross-crate integration, crash and fault tests that run the real binaries.
