"""Groups of CLI commands, each module exposing ``register(app)``."""
