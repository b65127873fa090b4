"""Ingest: HTTP intake, normalisation, geotagging, idempotency, publishing to the bus."""
