//! Accepting native-protocol connections on a shard's sockets.

use std::rc::Rc;
use std::sync::Arc;

use futures_lite::io::AsyncWriteExt;
use glommio::net::TcpStream;
use shoal_protocol::codec;
use shoal_protocol::error::ErrorCode;

use super::connection::serve;
use crate::frontend::accept;
use crate::frontend::admission::Refused;
use crate::frontend::tls::TlsAcceptor;
use crate::metrics::add;
use crate::shard::Shard;

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
    let (serving, refusing) = (shard.clone(), shard.clone());
    accept::accept_loop(
        shard,
        listener,
        queue,
        "native",
        move |stream, _peer, admitted| serve(serving.clone(), stream, admitted, tls.clone()),
        move |stream, refused| refuse(refusing.clone(), stream, refused),
    )
    .await
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
