"""The runnable pure stages (one module each) and their contract: no Kafka, no sockets, no clocks, no files."""
