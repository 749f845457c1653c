"""Publish: per-project research datasets under per-project keys, and provider-side pseudonymisation."""
