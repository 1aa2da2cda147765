//! Accepting Kafka-protocol connections on a shard's sockets: its share of
//! the shared Kafka port (SO_REUSEPORT) and its own Kafka port, the one
//! Metadata advertises as Kafka broker `shard id`.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::io::AsyncWriteExt;
use glommio::net::TcpStream;

use super::connection::serve;
use super::context::Door;
use crate::frontend::admission::{admit, Refused};
use crate::frontend::tls::TlsAcceptor;
use crate::metrics::add;
use crate::shard::Shard;

/// Pause after a failed accept (e.g. out of file descriptors).
const ACCEPT_RETRY_MS: u64 = 10;

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
    loop {
        match listener.accept().await {
            Ok(stream) => {
                if shard.is_shutting_down() {
                    continue;
                }
                let Ok(peer) = stream.peer_addr() else { continue };
                let task = match admit(peer.ip(), &shard.config().limits) {
                    Ok(admitted) => glommio::spawn_local_into(
                        serve(shard.clone(), stream, peer, door, admitted, tls.clone()),
                        queue,
                    ),
                    Err(refused) => glommio::spawn_local_into(refuse(shard.clone(), stream, refused), queue),
                };
                if let Ok(task) = task {
                    task.detach();
                }
            }
            Err(e) => {
                tracing::warn!(shard = %shard.id(), error = %e, "kafka accept failed");
                crate::runtime::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
            }
        }
    }
}

/// Closes a refused connection. The Kafka protocol has no message a broker
/// sends unasked, so (as Kafka's own broker does at `max.connections`) the
/// refusal is the close itself; the reason is logged and counted.
async fn refuse(shard: Rc<Shard>, mut stream: TcpStream, refused: Refused) {
    add(&shard.metrics().connections_refused, 1);
    tracing::debug!(reason = %refused, "kafka connection refused");
    let _ = stream.close().await;
}
