//! Fault injection: a failed fdatasync fences the log, and nothing
//! acknowledged as durable before it is lost or altered.
//!
//! The fault is real, not simulated: each test builds an ext4 filesystem on
//! a loop device of its own and, in the middle of the run, shuts that
//! filesystem down with `EXT4_IOC_SHUTDOWN` (flag `NOLOGFLUSH`, the way
//! xfstests simulate a dead disk). From then on the kernel fails every
//! fdatasync and write on it with EIO, and what was not yet committed is
//! gone, as after a power cut. The filesystem is then unmounted and mounted
//! again (journal replay), and the log is reopened from what survived.
//!
//! Each test also checks that the fault really dropped what was not
//! synced, or it would prove nothing about the durability boundary. The
//! filesystem is mounted with a long journal commit interval so that only
//! the log's own fdatasyncs commit it.
//!
//! Needs root and loop devices. Without them each test says so and passes;
//! `SHOAL_REQUIRE_FAULT_FS=1` turns that into a failure.

mod common;

use common::{append_until_refused, check_acked, make_batch, run_local, AppendOutcome};
use shoal_storage::{Durability, FlushPolicy, LogConfig, LogError, PartitionLog};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;

/// Size of each test's filesystem image (sparse).
const IMAGE_BYTES: u64 = 256 << 20;
const RECORDS_PER_BATCH: usize = 4;
const VALUE_BYTES: usize = 3000;
/// `EXT4_IOC_SHUTDOWN`: `_IOR('X', 125, __u32)`.
const EXT4_IOC_SHUTDOWN: libc::c_ulong = 0x8004_587d;
/// Shut down without flushing the journal: uncommitted metadata is lost.
const EXT4_GOING_FLAGS_NOLOGFLUSH: u32 = 2;

/// An ext4 filesystem on a loop device, mounted in a temporary directory;
/// unmounted and detached on drop.
struct FaultFs {
    _tmp: tempfile::TempDir,
    device: String,
    mount: PathBuf,
    mounted: bool,
}

fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

impl FaultFs {
    /// Builds the filesystem, or says why this machine cannot.
    fn create() -> Result<FaultFs, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not running as root".into());
        }
        if !Path::new("/dev/loop-control").exists() {
            return Err("no /dev/loop-control".into());
        }
        let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
        let image = tmp.path().join("fs.img");
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(IMAGE_BYTES))
            .map_err(|e| format!("image: {e}"))?;
        let image = image.to_str().expect("utf-8 temp path").to_string();
        let device = run("losetup", &["--find", "--show", &image])?;
        let mount = tmp.path().join("mnt");
        std::fs::create_dir(&mount).map_err(|e| e.to_string())?;
        let mut fs = FaultFs {
            _tmp: tmp,
            device,
            mount,
            mounted: false,
        };
        // No lazy initialisation: nothing but the log writes to the device.
        run(
            "mkfs.ext4",
            &[
                "-q",
                "-F",
                "-E",
                "lazy_itable_init=0,lazy_journal_init=0",
                &fs.device,
            ],
        )?;
        fs.mount()?;
        Ok(fs)
    }

    fn mount(&mut self) -> Result<(), String> {
        // No periodic journal commit during a test (the default is every
        // 5 s): what survives the shutdown is what the log made durable.
        let mount = self.mount.to_str().expect("utf-8");
        run("mount", &["-o", "commit=600", &self.device, mount])?;
        self.mounted = true;
        Ok(())
    }

    fn unmount(&mut self) {
        if self.mounted {
            run("umount", &[self.mount.to_str().expect("utf-8")]).expect("umount");
            self.mounted = false;
        }
    }

    /// Remounts: the journal is replayed, as at boot after a crash.
    fn remount(&mut self) {
        self.unmount();
        self.mount().expect("mount again");
    }

    fn log_dir(&self) -> PathBuf {
        self.mount.join("log")
    }
}

/// The filesystem mounted at `mount` dies: every later write and fdatasync
/// on it fails with EIO.
fn shut_down(mount: &Path) {
    let root = std::fs::File::open(mount).expect("open mount point");
    let mut flags = EXT4_GOING_FLAGS_NOLOGFLUSH;
    // SAFETY: EXT4_IOC_SHUTDOWN reads one u32 through the pointer, which
    // points at a live local.
    let rc = unsafe { libc::ioctl(root.as_raw_fd(), EXT4_IOC_SHUTDOWN, &mut flags) };
    assert_eq!(rc, 0, "EXT4_IOC_SHUTDOWN: {}", std::io::Error::last_os_error());
}

impl Drop for FaultFs {
    fn drop(&mut self) {
        if self.mounted {
            let _ = run("umount", &["-l", self.mount.to_str().unwrap_or("")]);
        }
        let _ = run("losetup", &["-d", &self.device]);
    }
}

/// The filesystem for one test, or `None` (after saying why) where this
/// machine cannot make one and the run does not require it.
fn fault_fs(test: &str) -> Option<FaultFs> {
    match FaultFs::create() {
        Ok(fs) => Some(fs),
        Err(why) if std::env::var_os("SHOAL_REQUIRE_FAULT_FS").is_none() => {
            eprintln!("{test}: SKIPPED, no loop-device filesystem: {why}");
            None
        }
        Err(why) => panic!("{test}: no loop-device filesystem: {why}"),
    }
}

fn config(flush: FlushPolicy) -> LogConfig {
    LogConfig {
        flush,
        segment_bytes_max: 32 << 20,
        preallocate_bytes: 32 << 20,
        write_chunk_bytes: 64 << 10,
        pending_bytes_max: 256 << 10,
        ..LogConfig::default()
    }
}

fn is_fenced(e: &LogError) -> bool {
    matches!(e, LogError::Fenced { .. })
}

/// Batches acknowledged as written but not yet synced, then a dead device:
/// the flush that would sync them fails, the log fences on the fdatasync,
/// and after the journal replay the synced batches are all there.
#[test]
fn failed_fdatasync_fences_the_log_and_keeps_every_synced_batch() {
    let Some(mut fs) = fault_fs("failed_fdatasync") else {
        return;
    };
    let dir = fs.log_dir();
    // Acknowledged once written; fdatasync only on flush (within the test).
    let flush = FlushPolicy::IntervalMs(3_600_000);
    let synced: BTreeMap<u64, u64> = run_local(|| {
        let (dir, mount) = (dir.clone(), fs.mount.clone());
        async move {
            let log = PartitionLog::open(&dir, config(flush)).await.expect("open");
            let mut synced = BTreeMap::new();
            for tag in 0..40 {
                let ack = log
                    .append(make_batch(tag, RECORDS_PER_BATCH, VALUE_BYTES))
                    .await
                    .expect("append");
                synced.insert(ack.base_offset, tag);
            }
            log.flush().await.expect("flush while the device works");
            for tag in 40..80 {
                let ack = log
                    .append(make_batch(tag, RECORDS_PER_BATCH, VALUE_BYTES))
                    .await
                    .expect("append");
                assert_eq!(ack.durability, Durability::Written);
            }
            shut_down(&mount);
            let failed = log.flush().await;
            println!("flush after the shutdown: {failed:?}; fenced: {:?}", log.fenced());
            assert!(
                matches!(
                    failed,
                    Err(LogError::Fenced {
                        operation: "fdatasync",
                        ..
                    })
                ),
                "{failed:?}"
            );
            let cause = log.fenced().expect("the log must be fenced");
            assert!(cause.starts_with("fdatasync: "), "{cause}");
            // Fenced means read-only, and not retried: a second flush and
            // any append are refused.
            assert!(log.flush().await.as_ref().is_err_and(is_fenced));
            let refused = log.append(make_batch(1000, 1, 10)).await;
            assert!(refused.as_ref().is_err_and(is_fenced), "{refused:?}");
            synced
        }
    });

    fs.remount();
    run_local(|| async move {
        let log = PartitionLog::open(&dir, config(flush)).await.expect("reopen");
        assert!(log.fenced().is_none());
        let survived = log.log_end_offset() / RECORDS_PER_BATCH as u64;
        println!("after the journal replay: {survived} of 80 batches survived, 40 were synced");
        check_acked(&log, &synced, RECORDS_PER_BATCH, VALUE_BYTES).await;
        assert!(
            survived < 80,
            "every unsynced batch survived the dead device: the fault dropped nothing"
        );
        let ack = log
            .append(make_batch(2000, RECORDS_PER_BATCH, VALUE_BYTES))
            .await
            .expect("append after recovery");
        assert_eq!(ack.base_offset, log.log_end_offset() - RECORDS_PER_BATCH as u64);
        log.flush().await.expect("flush after recovery");
        log.close().await.expect("close");
    });
    fs.unmount();
}

/// Concurrent appenders with flush `always` while the device dies under
/// them: every append either returns fsynced or fails, none is acknowledged
/// after the failure, and every acknowledged batch survives the replay.
#[test]
fn dead_device_under_group_commit_loses_no_acknowledged_batch() {
    const APPENDERS: u64 = 8;
    const BATCHES_MAX: u64 = 4000;
    /// Acknowledged batches after which the device dies.
    const DIE_AFTER: usize = 300;
    let Some(mut fs) = fault_fs("dead_device_under_group_commit") else {
        return;
    };
    let dir = fs.log_dir();
    let (acked, end_at_fence): (BTreeMap<u64, u64>, u64) = run_local(|| {
        let (dir, mount) = (dir.clone(), fs.mount.clone());
        async move {
            let log = PartitionLog::open(&dir, config(FlushPolicy::Always))
                .await
                .expect("open");
            let dead = Rc::new(Cell::new(false));
            let on_ack = {
                let dead = dead.clone();
                Rc::new(move |acked: usize| {
                    if acked == DIE_AFTER && !dead.get() {
                        shut_down(&mount);
                        dead.set(true);
                    }
                })
            };
            let AppendOutcome { acked, errors } = append_until_refused(
                &log,
                APPENDERS,
                BATCHES_MAX,
                RECORDS_PER_BATCH,
                VALUE_BYTES,
                on_ack,
            )
            .await;
            println!(
                "{} batches acknowledged (device shut down at {DIE_AFTER}); {} appenders refused; fenced: {:?}",
                acked.len(),
                errors.len(),
                log.fenced()
            );
            assert!(dead.get(), "the device was never shut down");
            assert_eq!(errors.len(), APPENDERS as usize, "every appender must be refused");
            assert!(errors.iter().all(is_fenced), "{errors:?}");
            // Appends in flight when the device died may have been synced
            // just before; nothing can be acknowledged once the log fenced.
            assert!(acked.len() < DIE_AFTER + APPENDERS as usize, "{}", acked.len());
            let cause = log.fenced().expect("the log must be fenced");
            assert!(
                cause.starts_with("fdatasync: ") || cause.starts_with("write: "),
                "{cause}"
            );
            // Includes the refused appends' batches, placed but never synced.
            (acked, log.log_end_offset())
        }
    });

    fs.remount();
    run_local(|| async move {
        let log = PartitionLog::open(&dir, config(FlushPolicy::Always))
            .await
            .expect("reopen");
        println!(
            "after the journal replay: {} batches in the log ({} when it fenced), {} acknowledged",
            log.log_end_offset() / RECORDS_PER_BATCH as u64,
            end_at_fence / RECORDS_PER_BATCH as u64,
            acked.len()
        );
        check_acked(&log, &acked, RECORDS_PER_BATCH, VALUE_BYTES).await;
        assert!(
            log.log_end_offset() < end_at_fence,
            "every batch placed before the device died survived: the fault dropped nothing"
        );
        log.close().await.expect("close");
    });
    fs.unmount();
}
