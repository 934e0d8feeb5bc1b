"""The speed layer: sources, the Kafka runtime, the processors and the sinks."""
