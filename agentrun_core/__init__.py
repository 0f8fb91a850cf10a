"""Types and helpers shared by both agentrun services: the run and step domain model, the protobuf converters."""
