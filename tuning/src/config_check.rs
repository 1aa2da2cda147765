//! Checks an existing broker config against the probed host (pure).
//!
//! The broker's own `validate()` catches settings that are wrong anywhere;
//! this adds what is wrong here: more shards than CPUs, io memory past the
//! memlock limit, a write chunk the file system cannot write directly, caches
//! larger than memory, ports that collide. Each problem names its key and
//! explains what will happen and what to do.

use serde::{Deserialize, Serialize};
use shoal_config::{Config, FlushMode};

use crate::device_bench::format_bytes;
use crate::host_changes::{OPEN_FILES_MIN, SOMAXCONN_MIN};
use crate::host_probe::HostProbe;
use crate::kernel::KERNEL_MIN;
use crate::process_limits::LimitValue;

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The broker will not start, or will fail on its first writes.
    Error,
    /// It runs, but slower or less safely than it could.
    Warning,
}

/// One thing wrong with a config on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub severity: Severity,
    /// `section.key`, or `host` for problems of the host alone.
    pub key: String,
    pub explanation: String,
}

struct Problems(Vec<Problem>);

impl Problems {
    fn error(&mut self, key: &str, explanation: String) {
        self.0.push(Problem {
            severity: Severity::Error,
            key: key.into(),
            explanation,
        });
    }
    fn warning(&mut self, key: &str, explanation: String) {
        self.0.push(Problem {
            severity: Severity::Warning,
            key: key.into(),
            explanation,
        });
    }
}

/// Parses `text` as a broker config and checks it; a file that does not parse is one error.
pub fn check_config_text(text: &str, probe: &HostProbe) -> Vec<Problem> {
    match toml::from_str::<Config>(text) {
        Ok(config) => check_config(&config, probe),
        Err(e) => vec![Problem {
            severity: Severity::Error,
            key: "file".into(),
            explanation: e.to_string(),
        }],
    }
}

/// Every problem of `config` on the probed host.
pub fn check_config(config: &Config, probe: &HostProbe) -> Vec<Problem> {
    let mut p = Problems(Vec::new());
    if let Err(e) = config.validate() {
        p.error("config", format!("the broker rejects this file: {e}"));
    }
    runtime_problems(config, probe, &mut p);
    storage_problems(config, probe, &mut p);
    memory_problems(config, probe, &mut p);
    port_problems(config, &mut p);
    host_problems(probe, &mut p);
    p.0
}

fn shards(config: &Config, probe: &HostProbe) -> u32 {
    if config.server.shards == 0 {
        probe.default_shards()
    } else {
        config.server.shards
    }
}

fn runtime_problems(config: &Config, probe: &HostProbe, p: &mut Problems) {
    let (shards, cpus) = (shards(config, probe), probe.live.available_cpus);
    if shards > cpus {
        p.warning(
            "server.shards",
            format!("{shards} shards on {cpus} available CPUs: shards share cores and preempt each other, which undoes thread-per-core; use at most {cpus}"),
        );
    }
    if config.runtime.spin_before_park_us > 0 && shards >= cpus {
        p.warning(
            "runtime.spin_before_park_us",
            format!("spinning shards occupy all {cpus} CPUs, leaving none for the kernel's network and I/O completion work; set 0 or run fewer shards"),
        );
    }
    let limits = &probe.facts.limits;
    let locked = u64::from(shards) * config.runtime.io_memory_bytes as u64;
    if !limits.cap_ipc_lock && !limits.memlock_soft_bytes.allows(locked) {
        p.error(
            "runtime.io_memory_bytes",
            format!(
                "{shards} shards x {} = {} of locked memory, but the memlock limit is {}: executors fail to start. Lower it to {} or raise LimitMEMLOCK",
                format_bytes(config.runtime.io_memory_bytes as u64),
                format_bytes(locked),
                limits.memlock_soft_bytes,
                match limits.memlock_soft_bytes {
                    LimitValue::Value(v) => format_bytes(v / u64::from(shards.max(1))),
                    LimitValue::Unlimited => "any value".into(),
                }
            ),
        );
    }
}

fn storage_problems(config: &Config, probe: &HostProbe, p: &mut Problems) {
    let s = &config.storage;
    if let Some(e) = &probe.live.dio_error {
        p.error(
            "server.data_dir",
            format!("direct I/O does not work there: {e}; put the data on xfs or ext4"),
        );
    }
    let align = u64::from(probe.dio_offset_align_bytes());
    if !(s.write_chunk_bytes as u64).is_multiple_of(align) {
        p.error(
            "storage.write_chunk_bytes",
            format!("{} is not a multiple of the file system's O_DIRECT alignment {align}; writes would fail with EINVAL", s.write_chunk_bytes),
        );
    }
    let physical = u64::from(
        probe
            .facts
            .device
            .as_ref()
            .map_or(4096, |d| d.queue.physical_block_size_bytes),
    );
    if !s.preallocate_bytes.is_multiple_of(physical) {
        p.warning(
            "storage.preallocate_bytes",
            format!("{} is not a multiple of the {physical}-byte physical block; the last block of each step is shared with the next", s.preallocate_bytes),
        );
    }
    if s.preallocate_bytes > s.segment_bytes_max {
        p.warning(
            "storage.preallocate_bytes",
            format!(
                "larger than segment_bytes_max ({}): every segment reserves space it never uses",
                s.segment_bytes_max
            ),
        );
    }
    if let Some(space) = probe.live.free_space {
        let first_steps = u64::from(shards(config, probe)) * s.preallocate_bytes;
        if space.available_bytes < first_steps {
            p.error(
                "storage.preallocate_bytes",
                format!(
                    "{} free, but one step per shard needs {}: the first appends fail with ENOSPC",
                    format_bytes(space.available_bytes),
                    format_bytes(first_steps)
                ),
            );
        } else if space.available_bytes < s.segment_bytes_max * 4 {
            p.warning(
                "storage.segment_bytes_max",
                format!("only {} free: fewer than four segments fit, so retention cannot free space a segment at a time", format_bytes(space.available_bytes)),
            );
        }
    }
    if s.flush == FlushMode::Never {
        p.warning("storage.flush", "\"never\": acknowledged appends are lost on power loss or kernel crash; use \"always\" or \"interval\"".into());
    }
}

fn memory_problems(config: &Config, probe: &HostProbe, p: &mut Problems) {
    let shards = u64::from(shards(config, probe));
    let caches = shards * config.storage.batch_cache_bytes_max as u64;
    let inflight = shards * config.limits.shard_inflight_bytes_max as u64;
    let m = &probe.facts.memory;
    if caches > m.total_bytes {
        p.error(
            "storage.batch_cache_bytes_max",
            format!("{shards} shards x cache = {} exceeds the host's {} of memory: the OOM killer will end the broker", format_bytes(caches), format_bytes(m.total_bytes)),
        );
    } else if caches > m.available_bytes / 2 {
        p.warning(
            "storage.batch_cache_bytes_max",
            format!(
                "caches take {} of {} available, leaving little for requests in flight and the OS",
                format_bytes(caches),
                format_bytes(m.available_bytes)
            ),
        );
    }
    if caches + inflight > m.total_bytes {
        p.warning(
            "limits.shard_inflight_bytes_max",
            format!(
                "caches plus in-flight request bytes ({}) can exceed memory ({}) under a burst",
                format_bytes(caches + inflight),
                format_bytes(m.total_bytes)
            ),
        );
    }
}

fn port_problems(config: &Config, p: &mut Problems) {
    let s = &config.server;
    if s.shard_port_base == 0 {
        return;
    }
    let first = u32::from(s.shard_port_base);
    let last = first + config.server.shards.max(1) - 1;
    if last > u32::from(u16::MAX) {
        p.error(
            "server.shard_port_base",
            format!("shard ports {first}..={last} run past 65535"),
        );
    }
    for (key, addr) in [("server.listen", s.listen), ("server.http_listen", s.http_listen)] {
        if (first..=last).contains(&u32::from(addr.port())) {
            p.error(
                key,
                format!(
                    "port {} is inside the shard port range {first}..={last}; one bind will fail",
                    addr.port()
                ),
            );
        }
    }
    if s.listen.port() == s.http_listen.port() && s.listen.ip() == s.http_listen.ip() && s.listen.port() != 0
    {
        p.error(
            "server.http_listen",
            "same address as server.listen; one bind will fail".into(),
        );
    }
}

fn host_problems(probe: &HostProbe, p: &mut Problems) {
    let f = &probe.facts;
    if !f.kernel.at_least(KERNEL_MIN) {
        p.error(
            "host",
            format!(
                "kernel {} is older than {}.{}, which glommio needs",
                f.kernel.release, KERNEL_MIN.0, KERNEL_MIN.1
            ),
        );
    }
    let u = &probe.live.uring;
    if !u.available {
        p.error(
            "host",
            format!(
                "io_uring is unavailable ({}); the broker cannot run",
                u.error.as_deref().unwrap_or("unknown")
            ),
        );
    } else if !u.missing_needed().is_empty() {
        p.error(
            "host",
            format!(
                "io_uring lacks operations the broker uses: {}",
                u.missing_needed().join(" ")
            ),
        );
    }
    if let Some(v) = f.sysctls.somaxconn.filter(|v| *v < SOMAXCONN_MIN) {
        p.warning(
            "host",
            format!("net.core.somaxconn is {v}: accept backlogs are capped there; raise to {SOMAXCONN_MIN}"),
        );
    }
    if let LimitValue::Value(v) = f.limits.open_files_soft {
        if v < OPEN_FILES_MIN {
            p.warning("host", format!("open files limit is {v}: connections and segment files share it; raise to {OPEN_FILES_MIN}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host_probe::fixtures::{nvme_probe, virtio_probe};
    use crate::recommend::fixtures::{nvme_bench, virtio_bench};
    use crate::recommend::{recommend, Priority};

    fn keys(problems: &[Problem], severity: Severity) -> Vec<&str> {
        problems
            .iter()
            .filter(|p| p.severity == severity)
            .map(|p| p.key.as_str())
            .collect()
    }

    /// A recommended config has no errors on its own host, once the host changes are made.
    #[test]
    fn recommendation_passes_its_own_check() {
        let rec = recommend(
            &virtio_probe(),
            Some(&virtio_bench()),
            "/d".into(),
            Priority::Durability,
        );
        let problems = check_config(&rec.config, &virtio_probe());
        assert!(keys(&problems, Severity::Error).is_empty(), "{problems:?}");
        // The NVMe host's only error is the memlock limit, which the host changes raise.
        let rec = recommend(
            &nvme_probe(),
            Some(&nvme_bench()),
            "/d".into(),
            Priority::Durability,
        );
        let problems = check_config(&rec.config, &nvme_probe());
        assert_eq!(
            keys(&problems, Severity::Error),
            ["runtime.io_memory_bytes"],
            "{problems:?}"
        );
        assert!(rec.host_changes.iter().any(|c| c.setting == "RLIMIT_MEMLOCK"));
    }

    /// Each host-specific mistake is reported against its key with an explanation.
    #[test]
    fn reports_host_mismatches() {
        let mut probe = nvme_probe();
        probe.live.dio_alignment.as_mut().unwrap().offset_align_bytes = 8192;
        let text = r#"
            [server]
            shards = 64
            listen = "127.0.0.1:9401"
            [runtime]
            spin_before_park_us = 100
            io_memory_bytes = 16777216
            [storage]
            flush = "never"
            write_chunk_bytes = 4096
            preallocate_bytes = 1000000000
            segment_bytes_max = 268435456
            batch_cache_bytes_max = 8589934592
        "#;
        let problems = check_config_text(text, &probe);
        let errors = keys(&problems, Severity::Error);
        for key in [
            "runtime.io_memory_bytes",
            "storage.write_chunk_bytes",
            "server.listen",
            "storage.batch_cache_bytes_max",
        ] {
            assert!(errors.contains(&key), "{key} missing from {problems:#?}");
        }
        let warnings = keys(&problems, Severity::Warning);
        for key in [
            "server.shards",
            "runtime.spin_before_park_us",
            "storage.flush",
            "storage.preallocate_bytes",
            "host",
        ] {
            assert!(warnings.contains(&key), "{key} missing from {problems:#?}");
        }
        assert!(problems.iter().all(|p| p.explanation.len() > 20), "{problems:#?}");
    }

    /// A file that is not a broker config is one error naming the problem.
    #[test]
    fn unparsable_file_is_one_error() {
        let problems = check_config_text("[server]\nbogus = 1\n", &virtio_probe());
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key, "file");
        assert!(
            problems[0].explanation.contains("bogus"),
            "{}",
            problems[0].explanation
        );
    }

    /// A host without io_uring is an error whatever the config.
    #[test]
    fn host_without_io_uring() {
        let mut probe = virtio_probe();
        probe.live.uring = crate::uring_support::UringSupport::unavailable("Operation not permitted");
        let problems = check_config(&shoal_config::Config::default(), &probe);
        assert!(
            problems
                .iter()
                .any(|p| p.key == "host" && p.explanation.contains("not permitted")),
            "{problems:?}"
        );
    }
}
