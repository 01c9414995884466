//! `[memory]`: the daemon's rules with memory.

use std::num::NonZeroUsize;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::Invalid;

/// Thresholds, from the config's `[memory]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryConfig {
    pub enabled: bool,
    pub window: Duration,
    pub max_extensions: usize,
    pub max_calls: usize,
    pub repeat_offender: Duration,
    pub max_tracked_ips: NonZeroUsize,
}

impl Default for MemoryConfig {
    fn default() -> MemoryConfig {
        MemoryConfig {
            enabled: true,
            window: Duration::from_secs(60),
            max_extensions: 10,
            max_calls: 30,
            repeat_offender: Duration::from_secs(3600),
            max_tracked_ips: NonZeroUsize::new(100_000).expect("non-zero"),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawMemory {
    enabled: bool,
    window_seconds: Spanned<u64>,
    max_extensions: usize,
    max_calls: usize,
    repeat_offender_seconds: u64,
    max_tracked_ips: Spanned<usize>,
}

impl Default for RawMemory {
    fn default() -> RawMemory {
        let d = MemoryConfig::default();
        RawMemory {
            enabled: d.enabled,
            window_seconds: Spanned::new(0..0, d.window.as_secs()),
            max_extensions: d.max_extensions,
            max_calls: d.max_calls,
            repeat_offender_seconds: d.repeat_offender.as_secs(),
            max_tracked_ips: Spanned::new(0..0, d.max_tracked_ips.get()),
        }
    }
}

impl RawMemory {
    pub(super) fn validate(self) -> Result<MemoryConfig, Invalid> {
        if *self.window_seconds.get_ref() == 0 {
            return Err((
                self.window_seconds.span(),
                "memory.window_seconds must be at least 1".into(),
            ));
        }
        let max_tracked_ips = NonZeroUsize::new(*self.max_tracked_ips.get_ref()).ok_or((
            self.max_tracked_ips.span(),
            "memory.max_tracked_ips must be at least 1".to_string(),
        ))?;
        Ok(MemoryConfig {
            enabled: self.enabled,
            window: Duration::from_secs(*self.window_seconds.get_ref()),
            max_extensions: self.max_extensions,
            max_calls: self.max_calls,
            repeat_offender: Duration::from_secs(self.repeat_offender_seconds),
            max_tracked_ips,
        })
    }
}
