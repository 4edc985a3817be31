"""MiniLM in numpy (`text_embedder`) computes the vectors SentenceTransformer does, so memories and
libraries stored before keep matching; and it loads without torch, transformers or sentence-transformers
(their imports were most of `rcmu remember`'s and `rcmu search --text`'s start-up)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rcmu_agent.errors import ModelLoadError
from rcmu_agent.memory import text_embedder
from rcmu_agent.memory.text_embedder import BATCH, TextEmbedder, _config, _gelu, model_folder

TEXTS = [
    "beach",
    "",
    "Joe Biden. Joe Biden was the 46th president of the United States.",
    "Rose Leslie. Plays Ygritte 🙂 — café, naïve, ÉCOLE, ﬁ, 中文字, \t tabs\nand lines",
    "Obama (person) at left; unknown person at right; taken 2024-05-01 10:00 (May 2024); in trips / paris / a.jpg",
    " ".join(["word"] * 150),  # over tokenizer.json's own 128-token truncation
    " ".join(["holiday"] * 400),  # over the model's 256: truncated as SentenceTransformer truncates
]


@pytest.mark.integration
def test_vectors_equal_sentence_transformers_alone_and_in_batches() -> None:
    st = pytest.importorskip("sentence_transformers", reason="the reference implementation (a dev dependency)")
    reference = st.SentenceTransformer(str(model_folder()), device="cpu")
    rng = np.random.default_rng(0)
    words = ["the", "a", "photo", "of", "beach", "family", "holiday", "in", "London", "with", "Rose", "Kit", "dog"]
    many = TEXTS + [" ".join(rng.choice(words, int(rng.integers(1, 30)))) for _ in range(BATCH + 8)]
    want = reference.encode(many, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    embedder = TextEmbedder()
    got = embedder.embed(many)  # sorted by length into several batches, some split by padded size
    assert got.dtype == np.float32 and got.shape == (len(many), 384)
    assert np.abs(got - want).max() < 1e-5
    for i, text in enumerate(TEXTS):  # alone (the query case): no padding at all
        assert np.abs(embedder.embed([text])[0] - want[i]).max() < 1e-5, text
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, 384)


@pytest.mark.integration
def test_embedding_loads_none_of_torch_transformers_sentence_transformers(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from rcmu_agent.memory.text_embedder import TextEmbedder\n"
        "TextEmbedder().embed(['a question'])\n"
        "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers', 'scipy') if m in sys.modules))\n"
    )
    # outside the clone: its ./rcmu_agent folder would shadow the installed package (CI installs non-editable)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.unit
def test_gelu_is_the_erf_gelu_to_float32_precision() -> None:
    x = np.concatenate([np.linspace(-12, 12, 19994), [0.0, -0.0, 1e-8, -1e-8, 40.0, -40.0]]).astype(np.float32)
    want = np.array([v * 0.5 * (1.0 + math.erf(v / math.sqrt(2.0))) for v in x.astype(np.float64)])
    got = _gelu(x.reshape(2000, 10).copy()).reshape(-1)  # 2000 rows: in blocks, in place
    assert got.dtype == np.float32
    assert np.all(np.abs(got - want) <= 1e-6 * np.maximum(1.0, np.abs(want)))


@pytest.mark.unit
def test_a_folder_that_is_not_a_mean_pooled_bert_is_refused(tmp_path: Path) -> None:
    source = model_folder()
    folder = tmp_path / "model"
    (folder / "1_Pooling").mkdir(parents=True)
    for name in ("modules.json", "sentence_bert_config.json", "config.json", "1_Pooling/config.json"):
        shutil.copyfile(source / name, folder / name)
    assert _config(folder) == {"layers": 6, "heads": 12, "eps": 1e-12, "pad_id": 0, "max_tokens": 256}

    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    pooling |= {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    with pytest.raises(ModelLoadError, match=r"not a mean-pooled BERT.*pooling_mode_cls_token"):
        _config(folder)


@pytest.mark.unit
def test_the_collections_keep_the_model_name_they_were_built_with() -> None:
    assert TextEmbedder.model_name == text_embedder.TEXT_EMBEDDING_MODEL == "sentence-transformers/all-MiniLM-L6-v2"
