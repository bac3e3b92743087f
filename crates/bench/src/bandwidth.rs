//! Memory read bandwidth: what bounds token generation on a CPU. Generating one token reads
//! every weight of the model once (plus the KV cache), so no engine can generate faster than
//! bandwidth / bytes per token.

use std::time::Instant;

/// Bytes per second of a streaming read by `threads` threads over `bytes` of memory, the
/// best of `runs`. The buffer should be far larger than the last-level cache, or the figure
/// is the cache's.
pub fn read_bandwidth(bytes: usize, threads: usize, runs: usize) -> f64 {
    let threads = threads.max(1);
    // Filled with non-zero data so every page is really backed by memory (untouched pages all
    // map the kernel's one zero page, which would stay in cache).
    let buf: Vec<u64> = (0..bytes / 8).map(|i| i as u64 | 1).collect();
    let parts: Vec<&[u64]> = buf.chunks(buf.len().div_ceil(threads).max(1)).collect();
    let mut best: f64 = 0.0;
    for _ in 0..runs.max(1) {
        let barrier = std::sync::Barrier::new(parts.len() + 1);
        let elapsed = std::thread::scope(|s| {
            for &part in &parts {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    std::hint::black_box(sum(part));
                });
            }
            barrier.wait();
            let started = Instant::now();
            // The scope joins every reader before it returns.
            started
        })
        .elapsed();
        best = best.max((buf.len() * 8) as f64 / elapsed.as_secs_f64());
    }
    best
}

/// Reads every word. Eight independent lanes so the compiler can keep several vector loads in
/// flight instead of waiting on one running sum.
fn sum(words: &[u64]) -> u64 {
    let mut lanes = [0u64; 8];
    let mut it = words.chunks_exact(8);
    for c in &mut it {
        for (lane, w) in lanes.iter_mut().zip(c) {
            *lane = lane.wrapping_add(*w);
        }
    }
    it.remainder()
        .iter()
        .fold(lanes.iter().fold(0, |a, b| a.wrapping_add(*b)), |a, b| a.wrapping_add(*b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_every_word() {
        let words: Vec<u64> = (1..=21).collect();
        assert_eq!(sum(&words), 21 * 22 / 2);
    }

    #[test]
    fn measures_a_positive_rate() {
        // A small buffer: this checks the plumbing, not the machine.
        let rate = read_bandwidth(1 << 20, 2, 2);
        assert!(rate.is_finite() && rate > 0.0, "{rate}");
    }
}
