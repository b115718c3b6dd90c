"""The checks ``diagnose`` runs, by subject; each returns :class:`~questlab.analysis.verdict.Verdict` objects."""
