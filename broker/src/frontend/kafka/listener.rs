//! Accepting Kafka-protocol connections on a shard's sockets: its share of
//! the shared Kafka port (SO_REUSEPORT) and its own Kafka port, the one
//! Metadata advertises as Kafka broker `shard id`.

use std::rc::Rc;
use std::sync::Arc;

use futures_lite::io::AsyncWriteExt;
use glommio::net::TcpStream;

use super::connection::serve;
use super::context::Door;
use crate::frontend::accept;
use crate::frontend::admission::Refused;
use crate::frontend::tls::TlsAcceptor;
use crate::metrics::add;
use crate::shard::Shard;

/// Accepts connections until the task is dropped (shutdown). Admission is
/// the same table as the native and HTTP front doors
/// (`limits.connections_per_shard_max`, `limits.connections_per_ip_max`);
/// an admitted one goes through TLS first when `tls` is set.
pub async fn accept_loop(
    shard: Rc<Shard>,
    listener: glommio::net::TcpListener,
    door: Door,
    queue: glommio::TaskQueueHandle,
    tls: Option<Arc<TlsAcceptor>>,
) {
    let (serving, refusing) = (shard.clone(), shard.clone());
    accept::accept_loop(
        shard,
        listener,
        queue,
        "kafka",
        move |stream, peer, admitted| serve(serving.clone(), stream, peer, door, admitted, tls.clone()),
        move |stream, refused| refuse(refusing.clone(), stream, refused),
    )
    .await
}

/// Closes a refused connection. The Kafka protocol has no message a broker
/// sends unasked, so (as Kafka's own broker does at `max.connections`) the
/// refusal is the close itself; the reason is logged and counted.
async fn refuse(shard: Rc<Shard>, mut stream: TcpStream, refused: Refused) {
    add(&shard.metrics().connections_refused, 1);
    tracing::debug!(reason = %refused, "kafka connection refused");
    let _ = stream.close().await;
}
