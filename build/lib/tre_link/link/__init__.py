"""Link: the deterministic NHS-number pass, blocking, the Fellegi-Sunter model, scoring and clustering."""
