//! # shoal-tune
//!
//! Host probe, device micro-benchmarks and config recommendations for Shoal
//! brokers on Linux (NVMe hosts first; virtio VMs work too).
//!
//! Layout, from the edge inwards:
//! - [`host_root`] is the only reader of /proc and /sys; [`kernel`],
//!   [`mountinfo`], [`block_device`], [`cpu_topology`], [`sysctl`] and
//!   [`process_limits`] turn the text of those files into typed structs, so
//!   all of them run against the fixture trees in `tuning/testdata/`.
//! - [`uring_support`] (io_uring `Probe`) and [`dio_alignment`] (statx
//!   STATX_DIOALIGN, else a measured O_DIRECT check) ask the live kernel.
//! - [`host_probe`] gathers both into one [`host_probe::HostProbe`].
//! - [`bench_plan`] splits the size and time limits over the benchmark cases
//!   (pure); [`uring_file`] drives O_DIRECT writes and fdatasync through the
//!   io-uring crate at a controlled queue depth; [`device_bench`] runs the plan.
//! - [`recommend`] and [`host_changes`] turn a probe and a bench report into a
//!   broker config plus host changes, each with its reason; [`config_toml`]
//!   renders the commented TOML; [`config_check`] explains what is wrong with
//!   an existing config on this host. These are pure functions of their inputs.
//!
//! Nothing here changes the host: host changes are printed, never applied.

pub mod aligned_buffer;
pub mod bench_plan;
pub mod block_device;
pub mod config_check;
pub mod config_toml;
pub mod cpu_topology;
pub mod device_bench;
pub mod dio_alignment;
pub mod error;
pub mod host_changes;
pub mod host_probe;
pub mod host_root;
pub mod interrupt;
pub mod kernel;
pub mod mountinfo;
pub mod process_limits;
pub mod recommend;
pub mod sysctl;
pub mod text_report;
pub mod uring_file;
pub mod uring_support;

pub use error::TuneError;
