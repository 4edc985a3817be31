"""CLIP image embeddings through the real `CLIPModel`, on a tiny random checkpoint saved to disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rcmu_agent import model_cache
from rcmu_agent.errors import InvalidInputError, ModelLoadError
from rcmu_agent.memory.image_embedder import ImageEmbedder
from rcmu_agent.settings import Settings
from rcmu_agent.testing import build_tiny_clip


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="session")
def photos(shared_data: Path) -> dict[str, Image.Image]:
    out = {}
    for name in ("chelsea.png", "rocket.jpg", "coffee.png", "astronaut.png"):
        with Image.open(shared_data / "objects" / name) as img:
            out[name.split(".")[0]] = img.convert("RGB")
    return out


@pytest.fixture()
def embedder(clip_dir: Path) -> ImageEmbedder:
    return ImageEmbedder(str(clip_dir), device="cpu")


@pytest.mark.integration
def test_embeddings_are_unit_rows_of_the_projection_width(
    embedder: ImageEmbedder, clip_dir: Path, photos: dict[str, Image.Image]
) -> None:
    projection_dim = json.loads((clip_dir / "config.json").read_text())["projection_dim"]
    vectors = embedder.embed([photos["chelsea"], photos["rocket"], photos["coffee"]])
    assert vectors.dtype == np.float32
    assert vectors.shape == (3, projection_dim) == (3, embedder.dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.integration
def test_same_photo_is_identical_and_different_photos_differ(
    embedder: ImageEmbedder, photos: dict[str, Image.Image]
) -> None:
    cat, cat_again, rocket = embedder.embed([photos["chelsea"], photos["chelsea"].copy(), photos["rocket"]])
    assert float(cat @ cat_again) == pytest.approx(1.0, abs=1e-5)
    assert float(cat @ rocket) < 0.9999


@pytest.mark.integration
def test_batching_does_not_change_results(embedder: ImageEmbedder, photos: dict[str, Image.Image]) -> None:
    images = [*photos.values(), photos["chelsea"].convert("L")]
    together = embedder.embed(images)
    embedder.batch_size = 2
    np.testing.assert_allclose(embedder.embed(images), together, atol=1e-5)
    np.testing.assert_allclose(embedder.embed(images[1:2])[0], together[1], atol=1e-5)


@pytest.mark.integration
def test_empty_input_and_dim_need_no_weights(clip_dir: Path) -> None:
    model_cache.clear()
    embedder = ImageEmbedder(str(clip_dir), device="cpu")
    assert embedder.embed([]).shape == (0, embedder.dim)
    assert embedder.embed_text([]).shape == (0, embedder.dim)
    assert model_cache.keys(ImageEmbedder) == []
    assert embedder.model_name == str(clip_dir)


@pytest.mark.integration
def test_text_embeddings_share_the_space(embedder: ImageEmbedder, photos: dict[str, Image.Image]) -> None:
    texts = embedder.embed_text(["a photo of a cat", "a rocket", "a photo of a cat"])
    assert texts.shape == (3, embedder.dim) and texts.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    assert float(texts[0] @ texts[2]) == pytest.approx(1.0, abs=1e-5)
    assert float(texts[0] @ texts[1]) < 0.9999
    similarity = embedder.embed([photos["chelsea"]]) @ texts.T
    assert similarity.shape == (1, 3) and np.all(np.abs(similarity) <= 1.0 + 1e-5)


@pytest.mark.integration
def test_weights_are_loaded_once_and_shared(clip_dir: Path, photos: dict[str, Image.Image]) -> None:
    model_cache.clear()
    first, second = ImageEmbedder(str(clip_dir), device="cpu"), ImageEmbedder(str(clip_dir), device="cpu")
    first.embed([photos["coffee"]])
    second.load()
    assert [key[1:] for key in model_cache.keys(ImageEmbedder)] == [(str(clip_dir), ("cpu",))]
    model = model_cache.peek(ImageEmbedder, str(clip_dir), ("cpu",)).model
    second.embed([photos["coffee"]])
    assert model_cache.peek(ImageEmbedder, str(clip_dir), ("cpu",)).model is model


@pytest.mark.unit
def test_crop_clamps_to_the_photo(small_photos: Path) -> None:
    with Image.open(small_photos / "chelsea.jpg") as img:
        cat = img.convert("RGB")  # 451x300
    crop = ImageEmbedder.crop(cat, (10.4, 20.6, 110.2, 80.0))
    assert crop.size == (101, 60) and crop.mode == "RGB"  # floor 10.4, 20.6; ceil 110.2, 80
    assert ImageEmbedder.crop(cat, (-50, -50, 30, 40)).size == (30, 40)
    assert ImageEmbedder.crop(cat, (400, 250, 999, 999)).size == (cat.width - 400, cat.height - 250)
    with pytest.raises(InvalidInputError):
        ImageEmbedder.crop(cat, (cat.width + 5, 0, cat.width + 50, 10))


@pytest.mark.integration
def test_missing_directory_names_the_setting(tmp_path: Path, photos: dict[str, Image.Image]) -> None:
    embedder = ImageEmbedder(str(tmp_path / "nope"), device="cpu")
    with pytest.raises(ModelLoadError, match="RCMU_IMAGE_EMBEDDING_MODEL"):
        embedder.embed([photos["chelsea"]])
    with pytest.raises(ModelLoadError, match="RCMU_IMAGE_EMBEDDING_MODEL"):
        _ = embedder.dim


@pytest.mark.integration
def test_hub_id_offline_names_the_setting(monkeypatch: pytest.MonkeyPatch, photos: dict[str, Image.Image]) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError, match="RCMU_IMAGE_EMBEDDING_MODEL"):
        ImageEmbedder("rcmu-tests/no-such-clip", device="cpu").embed([photos["chelsea"]])


@pytest.mark.integration
def test_wrong_model_type_is_refused(tmp_path: Path, photos: dict[str, Image.Image]) -> None:
    from transformers import BertConfig

    BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8).save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="not a CLIP model"):
        ImageEmbedder(str(tmp_path), device="cpu").embed([photos["chelsea"]])


@pytest.mark.integration
def test_from_settings(clip_dir: Path) -> None:
    assert ImageEmbedder.from_settings(Settings(image_embedding_model="")) is None
    embedder = ImageEmbedder.from_settings(Settings(image_embedding_model=str(clip_dir), device="cpu"))
    assert embedder is not None and embedder.model_name == str(clip_dir) and embedder.device == "cpu"
