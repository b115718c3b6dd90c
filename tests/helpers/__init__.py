"""Test-only models and tiny-run builders (never imported by the package)."""
