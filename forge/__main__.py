"""`python -m forge` is the `forge` command."""

from forge.cli.main import main

main()
