"""The processes a trial starts besides the target: load generators and probes."""
