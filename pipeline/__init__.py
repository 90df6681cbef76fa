"""Runtime: config, topics, Kafka I/O, stage runner, state + changelog, logging. Owns all I/O."""
