//! Liveness after the final heal: production resumes (final products grow)
//! within a bound, every coordinator answers a final linearizable read, and
//! the trades in flight settle (no stage is still re-sending a lot nobody
//! confirms).

use super::Verdict;
use factoryos_wire::NodeId;
use std::time::Duration;

/// What the run saw after it healed everything.
#[derive(Debug, Clone, Default)]
pub struct AfterHeal {
    /// Final products at the heal, and when they first grew after it (if they did).
    pub products_at_heal: u64,
    pub resumed_after: Option<Duration>,
    /// How long the run waited for production to resume.
    pub bound: Duration,
    /// Each coordinator and whether it answered the final read (with why not).
    pub final_reads: Vec<(NodeId, Result<(), String>)>,
    /// When the stages had re-sent no lot for a quiet period (every lot in
    /// transit then was confirmed within a re-send period), if they did.
    pub trades_settled_after: Option<Duration>,
}

pub fn check(after: &AfterHeal) -> Verdict {
    let mut evidence = Vec::new();
    match after.resumed_after {
        Some(d) if d <= after.bound => {}
        Some(d) => evidence.push(format!(
            "production resumed {} ms after the final heal, past the {} ms bound",
            d.as_millis(),
            after.bound.as_millis()
        )),
        None => evidence.push(format!(
            "no final product within {} ms of the final heal (stuck at {})",
            after.bound.as_millis(),
            after.products_at_heal
        )),
    }
    for (node, answer) in &after.final_reads {
        if let Err(why) = answer {
            evidence.push(format!("{node} did not answer the final read: {why}"));
        }
    }
    if after.trades_settled_after.is_none() {
        evidence.push(format!(
            "stages were still re-sending unconfirmed lots {} ms after the final heal",
            after.bound.as_millis()
        ));
    }
    let after_ms = |d: Option<Duration>| {
        d.map_or("never".to_string(), |d| {
            format!("after {} ms", d.as_millis())
        })
    };
    Verdict::new(
        "liveness",
        evidence,
        format!(
            "production resumed {} (bound {} ms); {} of {} coordinators answered the final read; trades settled {}",
            after_ms(after.resumed_after),
            after.bound.as_millis(),
            after.final_reads.iter().filter(|(_, a)| a.is_ok()).count(),
            after.final_reads.len(),
            after_ms(after.trades_settled_after),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::Validity;

    #[test]
    fn resumed_production_and_answers_are_valid_and_their_absence_is_not() {
        let mut after = AfterHeal {
            products_at_heal: 40,
            resumed_after: Some(Duration::from_millis(800)),
            bound: Duration::from_secs(20),
            final_reads: vec![(NodeId(1), Ok(())), (NodeId(2), Ok(()))],
            trades_settled_after: Some(Duration::from_millis(2500)),
        };
        assert_eq!(check(&after).valid, Validity::Valid);
        after.resumed_after = None;
        after.final_reads[1].1 = Err("timed out".into());
        after.trades_settled_after = None;
        let v = check(&after);
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.evidence.len(), 3, "{v:?}");
    }
}
