//! Accepting native-protocol connections on a shard's sockets.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::io::AsyncWriteExt;
use glommio::net::TcpStream;
use shoal_protocol::codec;
use shoal_protocol::error::ErrorCode;

use super::connection::serve;
use crate::frontend::admission::{admit, Refused};
use crate::frontend::tls::TlsAcceptor;
use crate::metrics::add;
use crate::shard::Shard;

/// Pause after a failed accept (e.g. out of file descriptors).
const ACCEPT_RETRY_MS: u64 = 10;

/// Accepts connections until the task is dropped (shutdown); each admitted
/// one is served in its own task in `queue` (through TLS when `tls` is
/// set), a refused one gets an error frame (`too_many_connections`) and is
/// closed.
pub async fn accept_loop(
    shard: Rc<Shard>,
    listener: glommio::net::TcpListener,
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
                    Ok(admitted) => {
                        glommio::spawn_local_into(serve(shard.clone(), stream, admitted, tls.clone()), queue)
                    }
                    Err(refused) => glommio::spawn_local_into(refuse(shard.clone(), stream, refused), queue),
                };
                if let Ok(task) = task {
                    task.detach();
                }
            }
            Err(e) => {
                tracing::warn!(shard = %shard.id(), error = %e, "accept failed");
                crate::runtime::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
            }
        }
    }
}

/// Tells a refused peer why (an error frame, correlation id 0) and closes.
async fn refuse(shard: Rc<Shard>, mut stream: TcpStream, refused: Refused) {
    add(&shard.metrics().connections_refused, 1);
    tracing::debug!(reason = %refused, "connection refused");
    let code = ErrorCode::TooManyConnections;
    shard.metrics().count_error(code);
    if let Ok(head) = codec::encode_error(0, code.to_wire(), &refused.to_string()) {
        let _ = stream.write_all(&head).await;
    }
    let _ = stream.close().await;
}
