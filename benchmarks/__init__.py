"""jssl benchmarks: step time, throughput, FLOPs and MFU, data pipeline, and a PyTorch peer (see README.md)."""
