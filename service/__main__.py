"""`python -m service` runs the iorag command."""

from .cli import main

main()
