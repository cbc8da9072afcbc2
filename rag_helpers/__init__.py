"""Helpers for the hands-on RAG course: one module per stage, in the order the data flows.

config -> documents -> chunking -> embeddings -> store -> generation -> evaluation
"""

__version__ = "0.1.0"
