//! The accept loop every client front end (native, HTTP, Kafka) runs on
//! its shard's listening sockets: admission against the shard's
//! connection table ([`admit`]), then each connection in its own task.

use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use glommio::net::{TcpListener, TcpStream};

use super::admission::{admit, Admitted, Refused};
use crate::shard::Shard;

/// Pause after a failed accept (e.g. out of file descriptors).
const ACCEPT_RETRY_MS: u64 = 10;

/// Accepts connections until the task is dropped (shutdown). An admitted
/// one is served by `serve`, a refused one answered by `refuse` (each in
/// its own task in `queue`); connections arriving while the shard drains
/// are dropped. `what` names the front end in the log.
pub async fn accept_loop<S, SF, R, RF>(
    shard: Rc<Shard>,
    listener: TcpListener,
    queue: glommio::TaskQueueHandle,
    what: &'static str,
    serve: S,
    refuse: R,
) where
    S: Fn(TcpStream, SocketAddr, Admitted) -> SF,
    SF: Future<Output = ()> + 'static,
    R: Fn(TcpStream, Refused) -> RF,
    RF: Future<Output = ()> + 'static,
{
    loop {
        match listener.accept().await {
            Ok(stream) => {
                if shard.is_shutting_down() {
                    continue;
                }
                let Ok(peer) = stream.peer_addr() else { continue };
                let task = match admit(peer.ip(), &shard.config().limits) {
                    Ok(admitted) => glommio::spawn_local_into(serve(stream, peer, admitted), queue),
                    Err(refused) => glommio::spawn_local_into(refuse(stream, refused), queue),
                };
                if let Ok(task) = task {
                    task.detach();
                }
            }
            Err(e) => {
                tracing::warn!(shard = %shard.id(), front_end = what, error = %e, "accept failed");
                crate::runtime::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
            }
        }
    }
}
