//! Everything random in a soak, drawn from one seed: which fault hits which
//! replica when and for how long, and what each client asks for. The same
//! seed gives the same faults in the same order and the same requests per
//! client; only their interleaving in time varies from run to run.

use std::ops::RangeInclusive;
use std::time::Duration;

use crate::cluster::ReplicaId;

/// An independent stream of the seed (SplitMix64 of seed and stream), so the
/// fault schedule and each client draw from their own generator and adding
/// a client does not change what the others do.
pub fn stream_seed(seed: u64, stream: u64) -> u64 {
    let mut z = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const FAULT_STREAM: u64 = 0xFA17;
const CLIENT_STREAM: u64 = 0xC11E_0000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// SIGKILL, a random downtime, then a restart.
    Kill,
    /// SIGSTOP for a random while, then SIGCONT.
    Pause,
    /// SIGTERM (the exit awaited), a random downtime, then a restart.
    Terminate,
}

impl FaultKind {
    pub const ALL: [FaultKind; 3] = [FaultKind::Kill, FaultKind::Pause, FaultKind::Terminate];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Terminate => "terminate",
        }
    }
}

/// One fault of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultStep {
    /// The quiet time before it, counted from the end of the previous fault.
    pub gap: Duration,
    pub target: ReplicaId,
    pub kind: FaultKind,
    /// How long the replica stays frozen (pause) or down before its restart.
    pub hold: Duration,
}

/// The ranges faults are drawn from.
#[derive(Debug, Clone)]
pub struct FaultRanges {
    pub gap_ms: RangeInclusive<u64>,
    pub pause_ms: RangeInclusive<u64>,
    pub downtime_ms: RangeInclusive<u64>,
}

impl Default for FaultRanges {
    fn default() -> Self {
        FaultRanges { gap_ms: 500..=3000, pause_ms: 500..=4000, downtime_ms: 0..=1500 }
    }
}

/// An endless, seeded sequence of faults over `targets`.
pub struct FaultSchedule {
    rng: fastrand::Rng,
    targets: Vec<ReplicaId>,
    ranges: FaultRanges,
}

impl FaultSchedule {
    pub fn new(seed: u64, targets: Vec<ReplicaId>, ranges: FaultRanges) -> FaultSchedule {
        assert!(!targets.is_empty(), "a fault schedule needs a target");
        FaultSchedule { rng: fastrand::Rng::with_seed(stream_seed(seed, FAULT_STREAM)), targets, ranges }
    }
}

impl Iterator for FaultSchedule {
    type Item = FaultStep;

    fn next(&mut self) -> Option<FaultStep> {
        let gap = Duration::from_millis(self.rng.u64(self.ranges.gap_ms.clone()));
        let target = self.targets[self.rng.usize(..self.targets.len())];
        let kind = FaultKind::ALL[self.rng.usize(..FaultKind::ALL.len())];
        let hold = match kind {
            FaultKind::Pause => self.rng.u64(self.ranges.pause_ms.clone()),
            FaultKind::Kill | FaultKind::Terminate => self.rng.u64(self.ranges.downtime_ms.clone()),
        };
        Some(FaultStep { gap, target, kind, hold: Duration::from_millis(hold) })
    }
}

/// What a client asks for next. Users are indices into the soak's users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Deposit {
        user: usize,
        amount: i64,
    },
    Order {
        user: usize,
        price: i64,
    },
    /// A new user (not used for money afterwards: the money users are fixed,
    /// so the plan does not depend on timing).
    Register,
    /// Cancel one of the user's orders, found by listing them: the newest
    /// still `pending` (its payment in flight, placed by another client:
    /// the cancel races it), else the `recent`-th newest (fewer: the
    /// oldest). Which order that is depends on timing: the one part of a
    /// client's plan that does.
    Cancel {
        user: usize,
        recent: usize,
    },
}

/// The mix of operations and their amounts (kopecks).
#[derive(Debug, Clone)]
pub struct OperationMix {
    /// Relative weights of deposit, order, register, cancel.
    pub weights: [u32; 4],
    pub deposit: RangeInclusive<i64>,
    /// Prices run above what a deposit brings, so a good share is rejected.
    pub price: RangeInclusive<i64>,
    /// A random pause after each request.
    pub pause_ms: RangeInclusive<u64>,
    /// And more after one that got no definite answer.
    pub backoff_ms: RangeInclusive<u64>,
}

impl Default for OperationMix {
    fn default() -> Self {
        OperationMix {
            weights: [30, 55, 5, 10],
            deposit: 100..=20_000,
            price: 100..=30_000,
            pause_ms: 0..=20,
            backoff_ms: 100..=500,
        }
    }
}

/// One client's seeded sequence of operations.
pub struct ClientPlan {
    rng: fastrand::Rng,
    users: usize,
    mix: OperationMix,
}

impl ClientPlan {
    pub fn new(seed: u64, client: u64, users: usize, mix: OperationMix) -> ClientPlan {
        assert!(users > 0 && mix.weights.iter().sum::<u32>() > 0);
        ClientPlan { rng: fastrand::Rng::with_seed(stream_seed(seed, CLIENT_STREAM + client)), users, mix }
    }

    pub fn next_operation(&mut self) -> Operation {
        let total: u32 = self.mix.weights.iter().sum();
        let mut pick = self.rng.u32(..total);
        let mut which = 0;
        while pick >= self.mix.weights[which] {
            pick -= self.mix.weights[which];
            which += 1;
        }
        match which {
            0 => Operation::Deposit {
                user: self.rng.usize(..self.users),
                amount: self.rng.i64(self.mix.deposit.clone()),
            },
            1 => Operation::Order { user: self.rng.usize(..self.users), price: self.rng.i64(self.mix.price.clone()) },
            2 => Operation::Register,
            _ => Operation::Cancel { user: self.rng.usize(..self.users), recent: self.rng.usize(..4) },
        }
    }

    pub fn pause(&mut self) -> Duration {
        Duration::from_millis(self.rng.u64(self.mix.pause_ms.clone()))
    }

    pub fn backoff(&mut self) -> Duration {
        Duration::from_millis(self.rng.u64(self.mix.backoff_ms.clone()))
    }
}

/// The seed's initial balances: one deposit per user.
pub fn initial_deposits(seed: u64, users: usize) -> Vec<i64> {
    let mut rng = fastrand::Rng::with_seed(stream_seed(seed, 0x1A17));
    (0..users).map(|_| rng.i64(1_000..=50_000)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ServiceKind;

    fn targets() -> Vec<ReplicaId> {
        ServiceKind::START_ORDER.iter().map(|&service| ReplicaId { service, index: 0 }).collect()
    }

    #[test]
    fn one_seed_gives_one_fault_schedule() {
        let a: Vec<FaultStep> = FaultSchedule::new(42, targets(), FaultRanges::default()).take(200).collect();
        let b: Vec<FaultStep> = FaultSchedule::new(42, targets(), FaultRanges::default()).take(200).collect();
        assert_eq!(a, b);
        let c: Vec<FaultStep> = FaultSchedule::new(43, targets(), FaultRanges::default()).take(200).collect();
        assert_ne!(a, c);
    }

    #[test]
    fn faults_stay_in_their_ranges_and_cover_every_kind_and_service() {
        let ranges = FaultRanges::default();
        let steps: Vec<FaultStep> = FaultSchedule::new(7, targets(), ranges.clone()).take(400).collect();
        for s in &steps {
            assert!(ranges.gap_ms.contains(&(s.gap.as_millis() as u64)));
            let hold = s.hold.as_millis() as u64;
            match s.kind {
                FaultKind::Pause => assert!(ranges.pause_ms.contains(&hold)),
                _ => assert!(ranges.downtime_ms.contains(&hold)),
            }
        }
        for kind in FaultKind::ALL {
            assert!(steps.iter().any(|s| s.kind == kind), "{kind:?} never drawn");
        }
        for target in targets() {
            assert!(steps.iter().any(|s| s.target == target), "{target} never hit");
        }
    }

    #[test]
    fn one_seed_gives_each_client_its_own_repeatable_requests() {
        let run = |seed, client| {
            let mut plan = ClientPlan::new(seed, client, 30, OperationMix::default());
            (0..300).map(|_| (plan.next_operation(), plan.pause())).collect::<Vec<_>>()
        };
        assert_eq!(run(42, 0), run(42, 0));
        assert_ne!(run(42, 0), run(42, 1));
        assert_ne!(run(42, 0), run(43, 0));
        // The fault stream does not move with the clients'.
        assert_eq!(initial_deposits(42, 30), initial_deposits(42, 30));
    }

    #[test]
    fn the_mix_is_drawn_by_its_weights() {
        let mut plan = ClientPlan::new(1, 0, 30, OperationMix::default());
        let ops: Vec<Operation> = (0..10_000).map(|_| plan.next_operation()).collect();
        let orders = ops.iter().filter(|o| matches!(o, Operation::Order { .. })).count();
        let deposits = ops.iter().filter(|o| matches!(o, Operation::Deposit { .. })).count();
        let cancels = ops.iter().filter(|o| matches!(o, Operation::Cancel { .. })).count();
        assert!((5_000..6_000).contains(&orders), "{orders} orders of 10000");
        assert!((2_500..3_500).contains(&deposits), "{deposits} deposits of 10000");
        assert!((700..1_300).contains(&cancels), "{cancels} cancels of 10000");
        assert!(ops.iter().all(|o| match o {
            Operation::Deposit { user, amount } => *user < 30 && (100..=20_000).contains(amount),
            Operation::Order { user, price } => *user < 30 && (100..=30_000).contains(price),
            Operation::Register => true,
            Operation::Cancel { user, recent } => *user < 30 && *recent < 4,
        }));
    }
}
