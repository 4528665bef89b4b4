//! Benchmarks of the retention suite (`make bench`): a load generator, a bare
//! echo server as the ceiling for unary gRPC, and one module per benchmark.
//! Every figure is reported beside the ceiling measured in the same run, because
//! the machine is shared and absolute times drift.

pub mod benches;
pub mod echo;
pub mod loadgen;
pub mod table;
