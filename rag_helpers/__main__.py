"""`python -m rag_helpers ...` runs the command-line interface."""

import sys

# jsonschema (imported by chromadb) compiles an IRI grammar at import whenever `rfc3987_syntax` is
# installed (Jupyter brings it): most of a second of every command, for a string format that
# nothing here validates. Marking it absent makes jsonschema skip that one format checker.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]

from .cli import main  # noqa: E402

raise SystemExit(main())
