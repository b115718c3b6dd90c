"""Failure analysis of recorded runs: diagnose (verdicts), compare, findings, report."""
