"""Telemetry: ISO 23725 wire messages, ingest, history store, latest state."""
