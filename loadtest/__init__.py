"""Fleet simulator and load harness."""
