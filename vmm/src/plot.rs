//! SVG plots for benchmarks (being written).
