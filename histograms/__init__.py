"""HDR histograms: the exact, mergeable latency distributions windows are built from."""
