//! A token-budget reservation (made by the limits phase, settled in `logging`).

use crate::limits::spec::LimitSpec;
use crate::limits::Decision;

/// Tokens reserved for one request under a budget, until its usage is known.
pub(crate) struct TokenReservation {
    pub bucket: String,
    pub spec: LimitSpec,
    pub reserved: u64,
    pub decision: Decision,
    /// The tokens this request may use in all (what the budget had left), when the rule cuts
    /// streams that run past it.
    pub cut_at: Option<u64>,
    /// The prompt's share of `reserved` (estimated).
    pub prompt: u64,
}
