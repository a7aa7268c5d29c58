"""Errors shared across the gateway."""


class DependencyUnavailable(Exception):
    """Something the gateway needs (Rasa, Redis) cannot be reached right now; the same
    operation may work later. The conversation service keeps the message and retries."""
