"""`python -m services` is the `cityhub` command."""

from services.cli import main

main()
