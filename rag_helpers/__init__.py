"""Helpers for the hands-on RAG course: one module per stage, in layers the data flows through.

A module imports only from its own layer or the layers below it, and no two modules import each
other, directly or round a loop (tests/test_layering.py checks every import, including those
inside functions, against `LAYERS`):

- L0 base: `base` (Document, Chunk, the hit type, the Retriever protocol, the query check), `config`.
- L1 stages: `documents` (loading, metadata), `metadata`, `chunking` (every splitter, the one
  sentence splitter), `embeddings` (model loading, precision, batching, the query encoder),
  `onnx_encoder` (the packaged model exported to ONNX: questions embedded without torch).
- L2 store: `store` (Chroma client, collections, ingest, dense search), `indexes` (the BM25 and
  sentence indexes, built and kept in step by ingest, opened by retrievers).
- L3 techniques, each with its retriever: `dense`, `keyword` (BM25), `fusion` (RRF, weighted,
  hybrid), `mmr`, `rerank`, `windows` (sentence windows, small-to-big), `query_expansion`.
- L4 registry: `registry` (retriever names to constructors).
- L5 generation: `prompts`, `generation`, `local_llm`, `extractive` (the extractive answerer).
- L6 pipeline: `pipeline` (retrieve, gate, prompt, generate or extract).
- L7 evaluation: `questions`, `evaluation`, `answer_metrics`, `answer_report`,
  `reporting` (tables, HTML, plots, the leaderboard).
- L8 faces: `widget`, `environment`, `cli`, `benchmark`, `exercises`, `__main__`.

Data flows one way: files -> Document -> Chunk -> vectors -> indexes -> hits -> prompt -> answer -> scores.
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
    "store": 2,
    "indexes": 2,
    "dense": 3,
    "keyword": 3,
    "fusion": 3,
    "mmr": 3,
    "rerank": 3,
    "windows": 3,
    "query_expansion": 3,
    "registry": 4,
    "prompts": 5,
    "generation": 5,
    "local_llm": 5,
    "extractive": 5,
    "pipeline": 6,
    "questions": 7,
    "evaluation": 7,
    "answer_metrics": 7,
    "answer_report": 7,
    "reporting": 7,
    "widget": 8,
    "environment": 8,
    "cli": 8,
    "benchmark": 8,
    "exercises": 8,
    "__main__": 8,
}
