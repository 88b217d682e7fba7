"""Small shared utilities (file safety, threads, progress)."""
