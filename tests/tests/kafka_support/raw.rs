//! A raw Kafka connection: requests encoded by kafka-protocol, sent as
//! exact bytes, responses read back in order. For what a real client never
//! sends on purpose (a retried batch, a sequence gap, malformed frames).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

pub struct RawKafka {
    pub stream: TcpStream,
    next_correlation: i32,
}

/// The bytes of one request frame (length prefix included).
pub fn request_frame(key: ApiKey, version: i16, correlation_id: i32, body: &RequestKind) -> Vec<u8> {
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("raw-test")))
        .encode(&mut buf, key.request_header_version(version))
        .expect("header encodes");
    body.encode(&mut buf, version).expect("body encodes");
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    buf.to_vec()
}

impl RawKafka {
    pub fn connect(addr: &str) -> RawKafka {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        stream.set_nodelay(true).unwrap();
        RawKafka {
            stream,
            next_correlation: 1,
        }
    }

    /// Sends a request without reading its response; returns its correlation id.
    pub fn send(&mut self, key: ApiKey, version: i16, body: &RequestKind) -> i32 {
        let id = self.next_correlation;
        self.next_correlation += 1;
        self.stream
            .write_all(&request_frame(key, version, id, body))
            .expect("write");
        id
    }

    /// Reads the next response frame: (correlation id, body bytes).
    pub fn read_frame(&mut self, key: ApiKey, version: i16) -> std::io::Result<(i32, Bytes)> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let mut frame = vec![0u8; i32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut frame)?;
        let mut frame = Bytes::from(frame);
        let header =
            ResponseHeader::decode(&mut frame, key.response_header_version(version)).expect("header");
        Ok((header.correlation_id, frame))
    }

    /// Reads the next response, checking it answers `correlation_id`.
    pub fn receive(&mut self, key: ApiKey, version: i16, correlation_id: i32) -> ResponseKind {
        let (id, mut body) = self.read_frame(key, version).expect("a response");
        assert_eq!(id, correlation_id, "responses come in request order");
        let response = ResponseKind::decode(key, &mut body, version).expect("response decodes");
        assert!(!body.has_remaining(), "nothing after the response");
        response
    }

    /// One request and its response.
    pub fn call(&mut self, key: ApiKey, version: i16, body: RequestKind) -> ResponseKind {
        let id = self.send(key, version, &body);
        self.receive(key, version, id)
    }

    /// True once the broker has closed the connection (reads EOF or reset).
    pub fn is_closed_by_peer(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.stream.read(&mut b), Ok(0) | Err(_))
    }
}

/// A RecordBatch v2 of `values`, as an idempotent producer with `producer`
/// = (id, epoch, base sequence) would send it (or a plain one for `None`).
pub fn batch(values: &[&str], producer: Option<(i64, i16, i32)>) -> Bytes {
    let (id, epoch, seq) = producer.unwrap_or((-1, -1, -1));
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: id,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: seq.max(0) + i as i32,
            timestamp: 1_700_000_000_000 + i as i64,
            key: None,
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).expect("batch encodes");
    buf.freeze()
}
