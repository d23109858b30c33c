//! The SSO planner at the scale of a large organisation: 2,000 accounts, 500 permission sets
//! and 5,000 groups. Prints the time to plan (median of several runs) and the peak heap the
//! planning adds, for a first run (nothing assigned yet) and a steady-state run (everything
//! assigned, nothing to do). Run with `cargo bench -p maestro-domain --bench planner`.

use std::time::{Duration, Instant};

use maestro_domain::sso::model::SsoModel;
use maestro_domain::sso::plan::{PlanInputs, plan};
use maestro_domain::sso::synthetic::{Size, organisation};

#[path = "support/peak_heap.rs"]
mod peak_heap;

use peak_heap::{PeakAllocator, live, mib, peak_above, reset_peak};

#[global_allocator]
static ALLOCATOR: PeakAllocator = PeakAllocator;

const RUNS: usize = 7;

fn measure(label: &str, model: &SsoModel, inputs: &PlanInputs) {
    let mut times = Vec::with_capacity(RUNS);
    let mut peak_added = 0;
    let mut outcome = (0, 0, 0);
    for _ in 0..RUNS {
        let before = reset_peak();
        let started = Instant::now();
        let planned = plan(model, inputs).expect("the synthetic organisation is complete");
        times.push(started.elapsed());
        peak_added = peak_added.max(peak_above(before));
        outcome = (planned.desired, planned.create.len(), planned.unchanged);
    }
    times.sort();
    let median: Duration = times[RUNS / 2];
    println!(
        "{label}: median {:.1} ms (min {:.1}, max {:.1}) over {RUNS} runs; peak heap added {:.1} MiB; desired {}, to create {}, unchanged {}",
        median.as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[RUNS - 1].as_secs_f64() * 1e3,
        mib(peak_added),
        outcome.0,
        outcome.1,
        outcome.2,
    );
}

fn main() {
    let model = SsoModel::default();
    let size = Size {
        accounts: 2_000,
        permission_sets: 500,
        groups: 5_000,
        workloads: 1_700,
    };
    let mut inputs = organisation(size);
    println!(
        "organisation: {} accounts, {} permission sets, {} groups, {} users; inputs {:.1} MiB of heap",
        inputs.accounts.len(),
        inputs.permission_sets.len(),
        inputs.groups.len(),
        inputs.users.len(),
        mib(live()),
    );
    measure("first run (nothing assigned)", &model, &inputs);

    let desired = plan(&model, &inputs).expect("complete");
    inputs.assignments = desired.create.into_iter().map(|c| c.assignment).collect();
    println!(
        "steady state: {} current assignments; inputs {:.1} MiB of heap",
        inputs.assignments.len(),
        mib(live()),
    );
    measure("steady state (nothing to do)", &model, &inputs);
}
