"""Training: `fit` with checkpoints, logs, resume; schedules; strategies."""
