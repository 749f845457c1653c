"""Ingest: standardise each source's identifiers, profile their quality, remove opt-outs."""
