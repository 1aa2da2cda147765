//! Deliberate bugs, for proving that the tests catch them.
//!
//! Compiled in only with the `mutations` cargo feature (never enabled by
//! the broker or any build that keeps data); then `SHOAL_STORAGE_MUTATION`
//! names the one bug to switch on, for example
//!
//! ```text
//! SHOAL_STORAGE_MUTATION=ack-before-sync \
//!     cargo test -p shoal-storage --features mutations --test log_sim
//! ```
//!
//! which must fail. Without the feature [`active`] is a constant `false`
//! and every hook compiles away.

/// The bugs that can be switched on, by their `SHOAL_STORAGE_MUTATION` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mutation {
    /// `ack-before-sync`: a sync round counts as done when it starts, so
    /// appends are acknowledged `Fsynced` before the fdatasync returns.
    AckBeforeSync,
    /// `skip-fdatasync`: sync rounds never call fdatasync.
    SkipFdatasync,
    /// `ignore-checkpoint`: recovery neither trusts nor verifies the segment
    /// header's checkpoint, so damage at the tail is cut as torn.
    IgnoreCheckpoint,
    /// `skip-dir-sync`: a new segment's directory entry is not synced.
    SkipDirSync,
    /// `wake-early`: `wait_for_offset` returns at once.
    WakeEarly,
    /// `damage-appended`: the last byte of every appended batch is flipped
    /// after its CRC was checked, and the CRC recomputed: the log stays
    /// self-consistent, so only a test that knows what it appended sees it.
    DamageAppended,
    /// `offset-gap`: each append leaves one unused offset before its batch.
    OffsetGap,
    /// `retention-noop`: retention deletes nothing.
    RetentionNoop,
}

impl Mutation {
    #[cfg(feature = "mutations")]
    fn name(self) -> &'static str {
        match self {
            Mutation::AckBeforeSync => "ack-before-sync",
            Mutation::SkipFdatasync => "skip-fdatasync",
            Mutation::IgnoreCheckpoint => "ignore-checkpoint",
            Mutation::SkipDirSync => "skip-dir-sync",
            Mutation::WakeEarly => "wake-early",
            Mutation::DamageAppended => "damage-appended",
            Mutation::OffsetGap => "offset-gap",
            Mutation::RetentionNoop => "retention-noop",
        }
    }
}

/// Whether `mutation` is switched on for this process.
#[cfg(feature = "mutations")]
pub(crate) fn active(mutation: Mutation) -> bool {
    static CHOSEN: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    CHOSEN
        .get_or_init(|| std::env::var("SHOAL_STORAGE_MUTATION").ok())
        .as_deref()
        == Some(mutation.name())
}

/// Whether `mutation` is switched on: never, without the `mutations` feature.
#[cfg(not(feature = "mutations"))]
#[inline(always)]
pub(crate) const fn active(_mutation: Mutation) -> bool {
    false
}
