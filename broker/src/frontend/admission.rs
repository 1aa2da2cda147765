//! Admission of client connections: at most `connections_per_shard_max`
//! per shard and `connections_per_ip_max` per source address on a shard,
//! native and HTTP together.
//!
//! The table is a thread-local: each shard is exactly one executor thread,
//! so it is shard-local without locks, and SO_REUSEPORT spreads a client's
//! connections over shards (the per-address limit is per shard).

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;

use shoal_config::LimitsConfig;

#[derive(Default)]
struct Table {
    open: u32,
    per_ip: HashMap<IpAddr, u32>,
}

thread_local! {
    static TABLE: RefCell<Table> = RefCell::new(Table::default());
}

/// Why a connection was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("this shard has {max} client connections already (limits.connections_per_shard_max)")]
    Shard { max: u32 },
    #[error("{ip} has {max} connections to this shard already (limits.connections_per_ip_max)")]
    Address { ip: IpAddr, max: u32 },
}

/// An admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct Admitted {
    ip: IpAddr,
}

/// Admits a connection from `ip`, or says which limit refuses it.
pub fn admit(ip: IpAddr, limits: &LimitsConfig) -> Result<Admitted, Refused> {
    TABLE.with(|t| {
        let mut t = t.borrow_mut();
        if t.open >= limits.connections_per_shard_max {
            return Err(Refused::Shard {
                max: limits.connections_per_shard_max,
            });
        }
        let n = t.per_ip.entry(ip).or_insert(0);
        if *n >= limits.connections_per_ip_max {
            return Err(Refused::Address {
                ip,
                max: limits.connections_per_ip_max,
            });
        }
        *n += 1;
        t.open += 1;
        Ok(Admitted { ip })
    })
}

impl Drop for Admitted {
    fn drop(&mut self) {
        TABLE.with(|t| {
            let mut t = t.borrow_mut();
            t.open = t.open.saturating_sub(1);
            if let Some(n) = t.per_ip.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    t.per_ip.remove(&self.ip);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-address limit refuses the next connection from that address
    /// only; a freed place admits again.
    #[test]
    fn limits_per_address_and_shard() {
        let limits = LimitsConfig {
            connections_per_ip_max: 2,
            connections_per_shard_max: 3,
            ..LimitsConfig::default()
        };
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let a1 = admit(a, &limits).unwrap();
        let _a2 = admit(a, &limits).unwrap();
        assert_eq!(admit(a, &limits).unwrap_err(), Refused::Address { ip: a, max: 2 });
        let _b1 = admit(b, &limits).unwrap();
        assert_eq!(admit(b, &limits).unwrap_err(), Refused::Shard { max: 3 });
        drop(a1);
        assert!(admit(a, &limits).is_ok());
    }
}
