"""Can the bundled SmolLM2-135M tell that the sources do not answer a question? (tried for the gate)

    python bench/refusal_judge.py [--db DIR] [--every 3] [--json]

The "don't know" gate (README "Evaluating answers") refuses on retrieval similarity alone, which cannot
separate the sample set's unanswerable questions from answerable ones. This measures the one
answer-level check this offline course could run: for each unanswerable question and every `--every`-th
answerable one, the default retriever's two best chunks (k=5) and the question go to the local model,
asked whether the passage contains the answer; the score is the log-probability gap between "Yes" and
"No" in its first token. A useful judge refuses, at some threshold, far more unanswerable questions
than answerable ones. Uses the index of bench/retrievers.py (built there if missing). Never a test.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from rag_helpers.config import PROJECT_ROOT, SAMPLE_CORPUS_DIR, Settings
from rag_helpers.embeddings import load_embedding_model
from rag_helpers.ingest import ensure_index
from rag_helpers.local_llm import LocalLLM
from rag_helpers.questions import load_questions
from rag_helpers.registry import DEFAULT_RETRIEVER, make_retriever

PROMPT = (
    "Passage:\n{passage}\n\nQuestion: {question}\n\n"
    "Does the passage contain the answer to the question? Reply Yes or No."
)
PASSAGE_CHARS = 1500  # two chunks; SmolLM2 reads at about 70 tokens/s here


def yes_minus_no(model, tokenizer, passage: str, question: str) -> float:
    """Log-probability of the best "Yes" minus the best "No" token, as the reply's first token."""
    import torch

    messages = [{"role": "user", "content": PROMPT.format(passage=passage, question=question)}]
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.inference_mode():
        logprobs = torch.log_softmax(model(**inputs).logits[0, -1], dim=-1)
    yes = [tokenizer.encode(word)[-1] for word in ("Yes", " yes")]
    no = [tokenizer.encode(word)[-1] for word in ("No", " no")]
    return float(max(logprobs[i] for i in yes) - max(logprobs[i] for i in no))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=PROJECT_ROOT / "bench" / "results" / "retrievers_db")
    parser.add_argument("--every", type=int, default=3, help="every N-th answerable question (default 3)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    settings = Settings.from_mapping({"CHROMA_PATH": str(args.db), "RAG_PRECISION": "fp32"})
    embedding_model = load_embedding_model(settings.embedding_model, device="cpu", precision="fp32")
    collection, _ = ensure_index(settings, SAMPLE_CORPUS_DIR, model=embedding_model, progress=False)
    retriever = make_retriever(DEFAULT_RETRIEVER, collection, embedding_model)
    model, tokenizer = LocalLLM(progress=None).load()

    questions = load_questions()
    unanswerable = [q for q in questions if not q.answerable]
    answerable = [q for q in questions if q.answerable][:: args.every]
    scores: dict[str, list[float]] = {"unanswerable": [], "answerable": []}
    for group, items in (("unanswerable", unanswerable), ("answerable", answerable)):
        for question in items:
            passage = " ".join(hit.text for hit in retriever(question.q, 5)[:2])[:PASSAGE_CHARS]
            scores[group].append(yes_minus_no(model, tokenizer, passage, question.q))

    un, an = np.array(scores["unanswerable"]), np.array(scores["answerable"])
    rows = [
        {"threshold": round(float(t), 3), "unanswerable_refused": float(np.mean(un < t)),
         "answerable_refused": float(np.mean(an < t))}
        for t in np.quantile(np.concatenate([un, an]), np.linspace(0.1, 0.9, 9))
    ]
    if args.json:
        print(json.dumps({"scores": scores, "thresholds": rows}, indent=2))
        return
    print(f"{len(un)} unanswerable, {len(an)} answerable questions; refuse when Yes - No < threshold")
    print(f"median score: unanswerable {np.median(un):.2f}, answerable {np.median(an):.2f}")
    print(f"{'threshold':>10} {'unanswerable refused':>21} {'answerable refused':>19}")
    for row in rows:
        un_refused, an_refused = row["unanswerable_refused"], row["answerable_refused"]
        print(f"{row['threshold']:>10.2f} {un_refused:>21.0%} {an_refused:>19.0%}")
    print("Target of the gate: >= 70% of unanswerable refused with <= 15% of answerable refused.")


if __name__ == "__main__":
    main()
