// The ways in that a `SeqLock` segment does have: `read`, `write`, `update`, `version`,
// `wait_for_change` and `watch`; compiling this proves the compile-fail case is about the
// guards only. (Not run against a segment: trybuild runs it, and it returns early.)
#![deny(warnings)]

use std::time::Duration;

use neocortex::{Cortex, SeqLock};

#[allow(dead_code)]
fn every_way_in(cortex: &Cortex<u64, SeqLock>) -> neocortex::CortexResult<u64> {
    cortex.write(1)?;
    cortex.update(|v| *v += 1)?;
    let seen = cortex.version();
    let _ = cortex.wait_for_change(seen, Duration::ZERO);
    let mut watcher = cortex.watch();
    let _ = watcher.has_changed();
    let _ = watcher.changed(Duration::ZERO);
    cortex.read()
}

fn main() {}
