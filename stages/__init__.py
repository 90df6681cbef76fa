"""The runnable pure stages, one module each, and their contract: no Kafka, clocks or files."""
