//! Contention benchmarks (placeholder until the bench module lands).

/// Arguments of `shardkv bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {}

/// Arguments of the hidden `shardkv bench-worker`.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {}

/// Runs `shardkv bench`.
pub fn run(_args: BenchArgs) -> crate::Result<()> {
    Err(crate::Error::InvalidInput(
        "shardkv bench is not built yet".into(),
    ))
}

/// Runs one benchmark worker process.
pub fn worker(_args: WorkerArgs) -> crate::Result<()> {
    Err(crate::Error::InvalidInput(
        "shardkv bench-worker is not built yet".into(),
    ))
}
