"""Custom NLU components of the after-sales assistant (listed in config.yml)."""
