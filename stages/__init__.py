"""Pure processing stages: no Kafka, no sockets, no clocks, no files."""
