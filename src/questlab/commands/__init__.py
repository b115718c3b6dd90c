"""CLI command groups; each module exposes ``register(app)``, called from ``questlab.cli``."""
