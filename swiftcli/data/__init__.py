"""Dataset files: reading rows in every supported shape (records), and resumable dataset runs (runs)."""
