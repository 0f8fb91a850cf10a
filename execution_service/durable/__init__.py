"""Durable mode: runs as DBOS workflows on PostgreSQL, served by any replica (docs/architecture.md, "Durable mode")."""
