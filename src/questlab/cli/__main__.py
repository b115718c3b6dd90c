"""``python -m questlab.cli``: the questlab command line."""

from questlab.cli import main

main()
