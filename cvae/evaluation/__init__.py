"""A model's numbers: metrics, baselines, the identity judge, `cvae evaluate`."""
