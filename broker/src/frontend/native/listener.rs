//! Accepting native-protocol connections on a shard's sockets.

use std::rc::Rc;
use std::time::Duration;

use super::connection::serve;
use crate::shard::Shard;

/// Pause after a failed accept (e.g. out of file descriptors).
const ACCEPT_RETRY_MS: u64 = 10;

/// Accepts connections until the task is dropped (shutdown); each is served
/// in its own task in `queue`.
pub async fn accept_loop(
    shard: Rc<Shard>,
    listener: glommio::net::TcpListener,
    queue: glommio::TaskQueueHandle,
) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                if shard.is_shutting_down() {
                    continue;
                }
                if let Ok(task) = glommio::spawn_local_into(serve(shard.clone(), stream), queue) {
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
