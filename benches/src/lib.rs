//! Benchmarks of neocortex against its peers (filled in by the comparison harness).
