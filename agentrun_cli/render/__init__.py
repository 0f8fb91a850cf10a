"""Pure functions from protobuf messages to rich renderables (and plain text lines); no I/O, no servers."""
