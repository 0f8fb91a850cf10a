"""Pure functions from protobuf messages to what the pages show; no I/O."""
