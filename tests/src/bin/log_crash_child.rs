//! Child process of the storage crash test: opens the partition log in the
//! directory given as the only argument (running recovery), then appends
//! batches from several concurrent tasks with flush `always` forever,
//! printing `ack <base> <last> <tag>` for each acknowledged append and
//! flushing stdout after every line. The parent kills it with SIGKILL.

use glommio::{LocalExecutorBuilder, Placement};
use shoal_storage::PartitionLog;
use shoal_tests::log_crash::{self, Ack};
use std::cell::Cell;
use std::io::Write;
use std::rc::Rc;

fn main() {
    let dir = std::env::args().nth(1).expect("usage: log_crash_child <log dir>");
    // Tags must differ between runs on the same directory: start from the
    // clock (microseconds), then count up.
    let first_tag = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_micros() as u64;
    let ex = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(log_crash::IO_MEMORY_BYTES)
        .make()
        .expect("executor");
    ex.run(async move {
        let log = PartitionLog::open(&dir, log_crash::config())
            .await
            .expect("open log");
        println!("ready end={}", log.log_end_offset());
        std::io::stdout().flush().expect("flush stdout");
        let next_tag = Rc::new(Cell::new(first_tag));
        let tasks: Vec<_> = (0..log_crash::APPENDERS)
            .map(|_| glommio::spawn_local(append_forever(log.clone(), next_tag.clone())))
            .collect();
        for t in tasks {
            t.await;
        }
    });
}

async fn append_forever(log: Rc<PartitionLog>, next_tag: Rc<Cell<u64>>) {
    loop {
        let tag = next_tag.get();
        next_tag.set(tag + 1);
        let ack = log.append(log_crash::batch(tag)).await.expect("append");
        let line = Ack {
            base: ack.base_offset,
            last: ack.last_offset,
            tag,
        }
        .line();
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}").expect("write stdout");
        out.flush().expect("flush stdout");
    }
}
