"""Helpers for the hands-on RAG course: one module per stage, in layers the data flows through.

    files -> Document -> Chunk -> vectors -> indexes -> hits -> prompt -> answer -> scores

Layers, bottom up: L0 base types and settings, L1 stages (loading, chunking, embedding), L2 the
store and ingest (every index), L3 retrieval techniques, L4 the retriever registry, L5 answering
(prompts and the answerers), L6 the pipeline, L7 evaluation, L8 faces (app, CLI, benchmarks).
A module imports only from its own layer or the layers below it, and no two modules import each
other, directly or round a loop: `LAYERS` below is the one list of every module with its layer,
tests/test_layering.py checks every import against it, and docs/architecture.md is generated from
it and the modules' docstrings (`python scripts/architecture_doc.py`).
"""

__version__ = "0.1.0"

# Each module of the package with its layer (see above); tests/test_layering.py enforces it.
LAYERS: dict[str, int] = {
    "base": 0,
    "config": 0,
    "documents": 1,
    "metadata": 1,
    "chunking": 1,
    "embeddings": 1,
    "onnx_encoder": 1,
    "local_models": 1,
    "text": 1,
    "store": 2,
    "keyword_index": 2,
    "sentence_index": 2,
    "ingest": 2,
    "dense": 3,
    "keyword": 3,
    "fusion": 3,
    "mmr": 3,
    "rerank": 3,
    "windows": 3,
    "query_expansion": 3,
    "registry": 4,
    "answers": 5,
    "attribution": 5,
    "prompts": 5,
    "generation": 5,
    "backends": 5,
    "sufficiency": 5,
    "local_llm": 5,
    "extractive": 5,
    "pipeline": 6,
    "conversation": 6,
    "questions": 7,
    "evaluation": 7,
    "answer_metrics": 7,
    "answer_report": 7,
    "reporting": 7,
    "robustness": 7,
    "widget": 8,
    "environment": 8,
    "cli": 8,
    "benchmark": 8,
    "exercises": 8,
    "__main__": 8,
}
