//! # shoal-config
//!
//! Broker configuration: a TOML file, overridden by command-line flags.
//! A crate of its own so that `shoal-tune` (which writes and checks these
//! files) depends on the configuration without pulling in the broker's
//! runtime (glommio, hyper).
//!
//! Every setting is optional; the embedded defaults run a single node with
//! data in `./shoal-data`, the native protocol on `127.0.0.1:9400`, shard
//! ports from `9401`, HTTP on `127.0.0.1:9480`, the Kafka protocol on
//! `127.0.0.1:9092` (Kafka shard ports from `9093`) and one shard per
//! available core. `shoald --print-config` prints the effective configuration as TOML,
//! with the defaults filled in, and `shoal-tune recommend` writes a file in
//! this format. Units are the last part of every name (`_ms`, `_bytes`, `_us`).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

mod security;
pub use security::{SecurityConfig, TlsConfig, TlsVersion};
mod cluster;
pub use cluster::{ClusterConfig, NodeTlsConfig, PeerAddr, CLUSTER_NODES_MAX};

/// A configuration that cannot be used, with the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config: {0}")]
    Parse(String),
    #[error("invalid setting {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// The whole broker configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub runtime: RuntimeConfig,
    pub storage: StorageConfig,
    pub limits: LimitsConfig,
    /// Storm protection of consumer groups.
    pub delivery: DeliveryConfig,
    /// TLS, authentication, ACLs (issue 20): `security.rs`.
    pub security: SecurityConfig,
    /// The Kafka wire-protocol front end.
    pub kafka: KafkaConfig,
    /// Cluster membership (issue 14): `cluster.rs`.
    pub cluster: ClusterConfig,
}

/// Where the broker listens and keeps its data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Directory for topic metadata and partition logs.
    pub data_dir: PathBuf,
    /// Native protocol, shared port: every shard binds it with SO_REUSEPORT.
    pub listen: SocketAddr,
    /// Shard `i` also listens on `shard_port_base + i` (same IP as `listen`).
    /// 0 picks free ports (tests); metadata reports the real ones.
    pub shard_port_base: u16,
    /// HTTP/JSON API and `/metrics`.
    pub http_listen: SocketAddr,
    /// Number of shards (one pinned executor each); 0 = one per available core.
    pub shards: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data_dir: PathBuf::from("./shoal-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 9400)),
            shard_port_base: 9401,
            http_listen: SocketAddr::from(([127, 0, 0, 1], 9480)),
            shards: 0,
        }
    }
}

/// Executor settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Pin shard `i` to the i-th available core.
    pub pin_cores: bool,
    /// Busy-poll this long before parking an idle executor. Cuts cross-core
    /// wake-up from ~40 µs to ~5 µs but burns a core; 0 = park at once.
    pub spin_before_park_us: u64,
    /// Wake every executor at least this often, even when idle; 0 = never.
    /// Guards against an idle executor asleep in the io_uring wait while
    /// accepts and reads are ready (seen under load; see
    /// `broker/src/runtime.rs`): such a stall then lasts one interval. The
    /// cost is one timer per interval per shard.
    pub wake_interval_ms: u64,
    /// Locked memory per shard for io_uring buffers.
    pub io_memory_bytes: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            pin_cores: true,
            spin_before_park_us: 0,
            wake_interval_ms: 100,
            io_memory_bytes: 10 << 20,
        }
    }
}

/// Default flush policy for topics that do not set their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlushMode {
    /// fdatasync before every ack (group-committed).
    Always,
    /// fdatasync every `flush_interval_ms`; acks after the write.
    Interval,
    /// Never fdatasync on the append path; the OS and shutdown flush.
    Never,
}

/// Partition log settings (defaults for every partition on this broker).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub flush: FlushMode,
    pub flush_interval_ms: u64,
    pub segment_bytes_max: u64,
    pub segment_age_ms_max: u64,
    /// fallocate step when a segment grows.
    pub preallocate_bytes: u64,
    /// Largest single DMA write.
    pub write_chunk_bytes: usize,
    /// Tail batch cache per shard, shared by its partitions.
    pub batch_cache_bytes_max: usize,
    /// How often each shard applies retention and compacts compacted topics.
    pub maintenance_interval_ms: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            flush: FlushMode::Always,
            flush_interval_ms: 100,
            segment_bytes_max: 256 << 20,
            segment_age_ms_max: 7 * 24 * 3600 * 1000,
            preallocate_bytes: 64 << 20,
            write_chunk_bytes: 1 << 20,
            batch_cache_bytes_max: 64 << 20,
            maintenance_interval_ms: 30_000,
        }
    }
}

/// Bounds that keep a burst from exhausting memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest frame accepted; larger ones close the connection with an error.
    pub frame_bytes_max: usize,
    /// Request bytes being processed per connection before the broker stops
    /// reading that socket.
    pub connection_inflight_bytes_max: usize,
    /// Request bytes being processed per shard before every connection of the
    /// shard stops reading.
    pub shard_inflight_bytes_max: usize,
    /// Produce byte rate per client connection; 0 = unlimited.
    pub produce_bytes_per_sec_max: u64,
    /// Fetch byte rate per client connection; 0 = unlimited.
    pub fetch_bytes_per_sec_max: u64,
    /// Memory per shard for request frames larger than 64 KiB, reserved
    /// for a frame's whole announced length as soon as its header arrives
    /// (before its body is read) and held until the request is answered.
    /// When it is spent, connections with such frames stop being read, so
    /// bytes of incomplete frames are bounded too (Kafka's
    /// `queued.max.request.bytes`). Smaller frames draw from
    /// `shard_inflight_bytes_max` once complete.
    pub receive_pool_bytes_max: usize,
    /// A frame must arrive whole within this long of its first byte (after
    /// its memory was reserved); a slower peer is disconnected.
    pub frame_read_ms_max: u64,
    /// A native connection with no request in flight and no bytes received
    /// for this long is closed; 0 = never. A consumer that heartbeats is
    /// never idle.
    pub connection_idle_ms_max: u64,
    /// Client connections per shard (native and HTTP together); more are
    /// answered with `too_many_connections` and closed.
    pub connections_per_shard_max: u32,
    /// Client connections per source IP address on one shard.
    pub connections_per_ip_max: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            frame_bytes_max: 16 << 20,
            connection_inflight_bytes_max: 32 << 20,
            shard_inflight_bytes_max: 256 << 20,
            produce_bytes_per_sec_max: 0,
            fetch_bytes_per_sec_max: 0,
            receive_pool_bytes_max: 256 << 20,
            frame_read_ms_max: 30_000,
            connection_idle_ms_max: 600_000,
            connections_per_shard_max: 10_000,
            connections_per_ip_max: 1_000,
        }
    }
}

/// Default share of deliveries that may be retries, per 1000.
pub const RETRY_BUDGET_PERMILLE_DEFAULT: u32 = 200;
/// Default failure share above which a group's breaker opens, per 1000.
pub const BREAKER_FAILURE_PERMILLE_DEFAULT: u32 = 500;
/// Default time an open breaker pauses delivery before probing, in ms.
pub const BREAKER_OPEN_MS_DEFAULT: u32 = 3_000;

/// Broker-wide delivery settings: the `[delivery]` section. The topic's
/// `RetryPolicy` sets attempts and backoff per topic; these set the storm
/// protection every consumer group gets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Retries allowed per 1000 deliveries over the budget window.
    pub retry_budget_permille: u32,
    /// Failures per 1000 outcomes above which a group's breaker opens;
    /// 1000 never opens it.
    pub breaker_failure_permille: u32,
    /// How long an open breaker pauses the group before probing.
    pub breaker_open_ms: u32,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            retry_budget_permille: RETRY_BUDGET_PERMILLE_DEFAULT,
            breaker_failure_permille: BREAKER_FAILURE_PERMILLE_DEFAULT,
            breaker_open_ms: BREAKER_OPEN_MS_DEFAULT,
        }
    }
}

/// The Kafka wire-protocol front end: the `[kafka]` section.
///
/// Every shard serves Kafka clients on the shared `listen` port
/// (SO_REUSEPORT) and on its own port `shard_port_base + i`. Metadata
/// advertises each shard as its own Kafka broker (broker id = shard id) at
/// its own port and every partition's leader as its owning shard, so Kafka
/// clients send produce and fetch straight to the owning core.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Serve the Kafka protocol at all.
    pub enabled: bool,
    /// Shared Kafka port, bound by every shard.
    pub listen: SocketAddr,
    /// Shard `i` also serves Kafka on `shard_port_base + i` (same IP as
    /// `listen`); 0 picks free ports (tests). Metadata advertises these.
    pub shard_port_base: u16,
    /// Host name advertised to clients in Metadata and FindCoordinator;
    /// empty = the IP of `listen` (which must then not be unspecified).
    pub advertised_host: String,
    /// Create a topic a client's Metadata request names but that does not
    /// exist, when the client also allows it (Kafka's
    /// `auto.create.topics.enable`). Off: unknown topics are answered
    /// `UNKNOWN_TOPIC_OR_PARTITION`.
    pub auto_create_topics: bool,
    /// Partitions of an auto-created topic, and of a CreateTopics request
    /// that leaves the count to the broker (Kafka's `num.partitions`).
    pub default_partitions: u32,
    /// From an empty group, wait this long for more members before the
    /// first generation (Kafka's `group.initial.rebalance.delay.ms`).
    pub group_initial_rebalance_delay_ms: u64,
    /// Session timeouts a Kafka consumer may ask for (Kafka's
    /// `group.min.session.timeout.ms` and `group.max.session.timeout.ms`).
    pub group_session_timeout_ms_min: u32,
    pub group_session_timeout_ms_max: u32,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            shard_port_base: 9093,
            advertised_host: String::new(),
            auto_create_topics: false,
            default_partitions: 1,
            group_initial_rebalance_delay_ms: 3_000,
            group_session_timeout_ms_min: 6_000,
            group_session_timeout_ms_max: 1_800_000,
        }
    }
}

impl KafkaConfig {
    /// The host name clients are told to connect to.
    pub fn advertised_host(&self) -> String {
        if self.advertised_host.is_empty() {
            self.listen.ip().to_string()
        } else {
            self.advertised_host.clone()
        }
    }
}

/// Smallest segment the broker accepts: one write chunk must fit.
pub const SEGMENT_BYTES_MIN: u64 = 1 << 20;

impl Config {
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    pub fn from_file(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml_str(&text)
    }

    pub fn to_toml_string(&self) -> String {
        toml::to_string_pretty(self).expect("config always serialises")
    }

    /// Shard count after resolving 0 to the number of available cores.
    pub fn effective_shards(&self) -> u32 {
        if self.server.shards > 0 {
            return self.server.shards;
        }
        std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
    }

    /// Checks cross-field rules; each error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: String| Err(ConfigError::Invalid { key, reason });
        let s = &self.storage;
        if s.write_chunk_bytes < 4096 || !s.write_chunk_bytes.is_power_of_two() {
            return invalid(
                "storage.write_chunk_bytes",
                "must be a power of two >= 4096".into(),
            );
        }
        if s.segment_bytes_max < SEGMENT_BYTES_MIN {
            return invalid(
                "storage.segment_bytes_max",
                format!("must be >= {SEGMENT_BYTES_MIN}"),
            );
        }
        if s.maintenance_interval_ms == 0 {
            return invalid("storage.maintenance_interval_ms", "must be > 0".into());
        }
        if s.flush == FlushMode::Interval && s.flush_interval_ms == 0 {
            return invalid(
                "storage.flush_interval_ms",
                "must be > 0 when flush = \"interval\"".into(),
            );
        }
        self.validate_ports()?;
        if self.server.shards > 1024 {
            return invalid("server.shards", "at most 1024".into());
        }
        let l = &self.limits;
        if l.frame_bytes_max < 4096 || l.frame_bytes_max > shoal_protocol::batch::BATCH_LEN_MAX + (1 << 20) {
            return invalid(
                "limits.frame_bytes_max",
                "must be between 4 KiB and 65 MiB".into(),
            );
        }
        if l.connection_inflight_bytes_max < l.frame_bytes_max {
            return invalid(
                "limits.connection_inflight_bytes_max",
                "must be >= limits.frame_bytes_max (one frame must fit)".into(),
            );
        }
        if l.shard_inflight_bytes_max < l.connection_inflight_bytes_max {
            return invalid(
                "limits.shard_inflight_bytes_max",
                "must be >= limits.connection_inflight_bytes_max".into(),
            );
        }
        if l.receive_pool_bytes_max < l.frame_bytes_max {
            return invalid(
                "limits.receive_pool_bytes_max",
                "must be >= limits.frame_bytes_max (one frame must fit)".into(),
            );
        }
        if l.frame_read_ms_max == 0 {
            return invalid("limits.frame_read_ms_max", "must be > 0".into());
        }
        if l.connections_per_shard_max == 0 || l.connections_per_ip_max == 0 {
            return invalid(
                "limits.connections_per_shard_max",
                "connection limits must be > 0".into(),
            );
        }
        if self.runtime.io_memory_bytes < (1 << 20) {
            return invalid("runtime.io_memory_bytes", "must be >= 1 MiB".into());
        }
        if let Err((key, reason)) = self.security.validate() {
            return invalid(key, reason);
        }
        let mut exposed = vec![self.server.listen, self.server.http_listen];
        if self.kafka.enabled {
            exposed.push(self.kafka.listen);
        }
        if let Some(addr) = self.security.exposed_without_protection(&exposed) {
            return invalid(
                "security",
                format!(
                    "refusing to serve {addr} without TLS and authentication: set [security.tls] and \
                     security.authentication = true, bind a loopback address, or set security.insecure = true"
                ),
            );
        }
        if let Err((key, reason)) = self.cluster.validate(self.effective_shards()) {
            return invalid(key, reason);
        }
        if let Some(addr) = self
            .cluster
            .exposed_node_listen()
            .filter(|_| !self.security.insecure)
        {
            return invalid("cluster.node_listen", node_links_refusal(addr));
        }
        self.validate_kafka()
    }

    /// The fixed ports the broker binds (port 0 excluded), each with its key.
    fn fixed_ports(&self) -> Vec<(&'static str, u32)> {
        let mut ports = vec![
            ("server.listen", u32::from(self.server.listen.port())),
            ("server.http_listen", u32::from(self.server.http_listen.port())),
        ];
        if self.kafka.enabled {
            ports.push(("kafka.listen", u32::from(self.kafka.listen.port())));
        }
        ports.retain(|(_, p)| *p != 0);
        ports
    }

    /// Shard port runs (native, and Kafka when enabled) must not overlap
    /// each other or a fixed port.
    fn validate_ports(&self) -> Result<(), ConfigError> {
        let shards = self.effective_shards();
        let mut runs = vec![("server.shard_port_base", u32::from(self.server.shard_port_base))];
        if self.kafka.enabled {
            runs.push(("kafka.shard_port_base", u32::from(self.kafka.shard_port_base)));
        }
        runs.retain(|(_, base)| *base != 0);
        for (key, base) in &runs {
            let run = *base..*base + shards;
            if run.end > u32::from(u16::MAX) + 1 {
                return Err(ConfigError::Invalid {
                    key,
                    reason: format!("shard ports {}..{} run past 65535", run.start, run.end),
                });
            }
            let fixed = self.fixed_ports().into_iter();
            let others = runs.iter().filter(|(k, _)| k != key).map(|(k, b)| (*k, *b));
            for (other, port) in fixed.chain(others) {
                if run.contains(&port) {
                    return Err(ConfigError::Invalid {
                        key,
                        reason: format!(
                            "shard ports {}..{} overlap {other} port {port}",
                            run.start, run.end
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    fn validate_kafka(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: String| Err(ConfigError::Invalid { key, reason });
        let k = &self.kafka;
        if !k.enabled {
            return Ok(());
        }
        if k.advertised_host.is_empty() && k.listen.ip().is_unspecified() {
            return invalid(
                "kafka.advertised_host",
                format!(
                    "kafka.listen is {}: set the host name clients should connect to",
                    k.listen.ip()
                ),
            );
        }
        if k.default_partitions == 0 {
            return invalid("kafka.default_partitions", "must be >= 1".into());
        }
        if k.group_session_timeout_ms_min == 0
            || k.group_session_timeout_ms_min > k.group_session_timeout_ms_max
            || k.group_session_timeout_ms_max > i32::MAX as u32
        {
            return invalid(
                "kafka.group_session_timeout_ms_min",
                "must be > 0 and <= kafka.group_session_timeout_ms_max (at most 2^31 - 1)".into(),
            );
        }
        Ok(())
    }
}

/// Why a plaintext node-link listener on `addr` is refused (secure by
/// default).
pub fn node_links_refusal(addr: std::net::SocketAddr) -> String {
    format!(
        "refusing to serve node links on {addr} without TLS: anyone who reaches the port could join \
         the cluster's traffic; set [cluster.tls] (mutual TLS with a cluster CA), bind a loopback or \
         otherwise protected address, or set security.insecure = true"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cluster node binding plaintext node links to a non-loopback
    /// address needs `[cluster.tls]` or `security.insecure = true`.
    #[test]
    fn exposed_node_links_need_tls_or_insecure() {
        let cluster = "[cluster]\nnode_id = 1\ncluster_id = \"c\"\nnode_listen = \"0.0.0.0:9500\"\npeers = [\"2@10.0.0.2:9500\"]\n";
        let err = Config::from_toml_str(cluster).unwrap_err();
        assert!(err.to_string().contains("cluster.node_listen"), "{err}");
        assert!(err.to_string().contains("without TLS"), "{err}");
        assert!(err.to_string().contains("[cluster.tls]"), "{err}");
        let allowed = format!("{cluster}[security]\ninsecure = true\n");
        assert!(Config::from_toml_str(&allowed).is_ok());
        let loopback = cluster.replace("0.0.0.0:9500", "127.0.0.1:9500");
        assert!(Config::from_toml_str(&loopback).is_ok());
        let mutual_tls = format!(
            "{cluster}[cluster.tls]\ncert_file = \"n1.pem\"\nkey_file = \"n1.key\"\nca_file = \"ca.pem\"\n"
        );
        let c = Config::from_toml_str(&mutual_tls).unwrap();
        assert_eq!(c.cluster.tls.as_ref().unwrap().ca_file, PathBuf::from("ca.pem"));
        assert_eq!(
            Config::from_toml_str(&c.to_toml_string()).unwrap(),
            c,
            "printed and read back"
        );
        let missing_ca = mutual_tls.replace("ca_file = \"ca.pem\"\n", "");
        let err = Config::from_toml_str(&missing_ca).unwrap_err();
        assert!(err.to_string().contains("ca_file"), "{err}");
    }

    /// The printed defaults parse back to the same configuration.
    #[test]
    fn defaults_roundtrip() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(Config::from_toml_str(&c.to_toml_string()).unwrap(), c);
    }

    /// Shard ports may not run into the shared or the HTTP port, nor the
    /// Kafka ports into the native ones.
    #[test]
    fn shard_ports_must_not_overlap() {
        let err = Config::from_toml_str("[server]\nshards = 100\n").unwrap_err();
        assert!(err.to_string().contains("server.shard_port_base"), "{err}");
        assert!(Config::from_toml_str("[server]\nshards = 79\n").is_ok());
        let err =
            Config::from_toml_str("[kafka]\nshard_port_base = 9399\n[server]\nshards = 4\n").unwrap_err();
        assert!(err.to_string().contains("kafka.shard_port_base"), "{err}");
        let err = Config::from_toml_str("[kafka]\nlisten = \"127.0.0.1:9401\"\n").unwrap_err();
        assert!(err.to_string().contains("server.shard_port_base"), "{err}");
        let off = "[kafka]\nenabled = false\nshard_port_base = 9399\n[server]\nshards = 4\n";
        assert!(
            Config::from_toml_str(off).is_ok(),
            "a disabled listener binds nothing"
        );
    }

    /// An unspecified Kafka listen address needs a host to advertise.
    #[test]
    fn kafka_needs_an_advertised_host() {
        let exposed = "[kafka]\nlisten = \"0.0.0.0:9092\"\n[security]\ninsecure = true\n";
        let err = Config::from_toml_str(exposed).unwrap_err();
        assert!(err.to_string().contains("kafka.advertised_host"), "{err}");
        let c =
            Config::from_toml_str(
                "[kafka]\nlisten = \"0.0.0.0:9092\"\nadvertised_host = \"mq.example\"\n[security]\ninsecure = true\n",
            )
            .unwrap();
        assert_eq!(c.kafka.advertised_host(), "mq.example");
        assert_eq!(Config::default().kafka.advertised_host(), "127.0.0.1");
    }

    /// Unknown keys and bad values are rejected with the key named.
    #[test]
    fn rejects_bad_input() {
        assert!(Config::from_toml_str("[server]\nbogus = 1\n").is_err());
        let err = Config::from_toml_str("[storage]\nwrite_chunk_bytes = 1000\n").unwrap_err();
        assert!(err.to_string().contains("storage.write_chunk_bytes"), "{err}");
        let c = Config::from_toml_str("[storage]\nflush = \"never\"\n[server]\nshards = 2\n").unwrap();
        assert_eq!(c.storage.flush, FlushMode::Never);
        assert_eq!(c.effective_shards(), 2);
    }
}
