"""The run configs shipped with questlab, found by name: ``questlab run tfidf`` works after a plain
``pip install``, with no repository checkout.

These files are copies of the repository's ``configs/*.yaml`` (the source, which the README, docs
and benchmarks name by path); ``tests/test_shipped_configs.py`` fails when the two differ.
"""
