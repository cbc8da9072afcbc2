"""`python -m rag_helpers ...` runs the command-line interface."""

from .cli import main

raise SystemExit(main())
