"""ETT-style CSV data: reading and validation, splits, scaling and sliding windows."""
