//! The Kafka client the end-to-end tests will use links and has what they
//! need: librdkafka, built from source by rdkafka-sys (`./configure` and
//! make, no cmake), with gzip (zlib), snappy, lz4 and zstd compiled in.
//! No broker is involved; the Kafka end-to-end tests come with the front
//! end's integration (issue 18).

use rdkafka::config::ClientConfig;
use rdkafka::util::get_rdkafka_version;

/// librdkafka is 2.x and lists every codec the Kafka front end accepts.
#[test]
fn librdkafka_links_with_every_codec() {
    let (number, version) = get_rdkafka_version();
    println!("librdkafka {version} ({number:#010x})");
    assert!(number >= 0x0200_0000, "librdkafka {version} is older than 2.0");
    let features = ClientConfig::new()
        .create_native_config()
        .expect("native config")
        .get("builtin.features")
        .expect("builtin.features");
    println!("builtin.features: {features}");
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        assert!(
            features.split(',').any(|f| f == codec),
            "{codec} missing from {features}"
        );
    }
}
