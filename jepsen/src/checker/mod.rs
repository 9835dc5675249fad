//! Checkers: each reads what a run left (its history, the nodes' event
//! logs, the stages' WALs) and answers `valid`, `invalid` or `unknown`, with
//! the evidence (the offending operations, lots, terms or flows).
//!
//! | module | what it proves |
//! |---|---|
//! | [`linear`] | every register of the config store is linearizable |
//! | [`lots`] | no lot lost, duplicated, consumed twice or left in transit; units balance per type |
//! | [`election`] | at most one leader per term; terms, applied indexes and flow versions never go backwards on a node |
//! | [`fencing`] | no stage acted on a flow older than one it had adopted, nor on a flow the store never committed |
//! | [`liveness`] | after the final heal, production resumes within a bound and every coordinator answers |

pub mod election;
pub mod fencing;
pub mod linear;
pub mod liveness;
pub mod lots;

use serde::Serialize;

/// A checker's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Validity {
    Valid,
    Invalid,
    /// The checker could not decide (a time budget ran out, nothing to check).
    Unknown,
}

impl Validity {
    pub fn name(self) -> &'static str {
        match self {
            Validity::Valid => "valid",
            Validity::Invalid => "invalid",
            Validity::Unknown => "unknown",
        }
    }
}

/// One checker's verdict and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub checker: &'static str,
    pub valid: Validity,
    /// One line: what was checked and what was found.
    pub summary: String,
    /// The offending items, one line each (at most [`MAX_EVIDENCE`]).
    pub evidence: Vec<String>,
}

/// Evidence lines kept per verdict.
pub const MAX_EVIDENCE: usize = 50;

impl Verdict {
    pub fn new(checker: &'static str, evidence: Vec<String>, summary: String) -> Verdict {
        let valid = if evidence.is_empty() {
            Validity::Valid
        } else {
            Validity::Invalid
        };
        Verdict {
            checker,
            valid,
            summary,
            evidence: evidence.into_iter().take(MAX_EVIDENCE).collect(),
        }
    }

    pub fn unknown(checker: &'static str, summary: String) -> Verdict {
        Verdict {
            checker,
            valid: Validity::Unknown,
            summary,
            evidence: Vec::new(),
        }
    }
}

/// The whole run's verdict: valid only if every checker is.
pub fn overall(verdicts: &[Verdict]) -> Validity {
    if verdicts.iter().any(|v| v.valid == Validity::Invalid) {
        Validity::Invalid
    } else if verdicts.iter().any(|v| v.valid == Validity::Unknown) {
        Validity::Unknown
    } else {
        Validity::Valid
    }
}
