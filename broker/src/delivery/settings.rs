//! Broker-wide delivery settings: the `[delivery]` section of the config.
//!
//! The topic's `RetryPolicy` sets attempts and backoff per topic; these
//! set the storm protection every group gets, with the named defaults of
//! [`super::retry_policy`].

use serde::{Deserialize, Serialize};

use super::retry_policy::{
    BREAKER_FAILURE_PERMILLE_DEFAULT, BREAKER_OPEN_MS_DEFAULT, RETRY_BUDGET_PERMILLE_DEFAULT,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Retries allowed per 1000 deliveries over the budget window.
    pub retry_budget_permille: u32,
    /// Failures per 1000 outcomes above which a group's breaker opens;
    /// 1000 never opens it.
    pub breaker_failure_permille: u32,
    /// How long an open breaker pauses the group before probing.
    pub breaker_open_ms: u32,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            retry_budget_permille: RETRY_BUDGET_PERMILLE_DEFAULT,
            breaker_failure_permille: BREAKER_FAILURE_PERMILLE_DEFAULT,
            breaker_open_ms: BREAKER_OPEN_MS_DEFAULT as u32,
        }
    }
}
