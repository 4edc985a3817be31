"""Settings, read from `RCMU_*` environment variables (pydantic-settings).

One object carries every knob the parts need, so a test or a server builds the whole stack from a
single `Settings(...)` and the CLI only translates flags into it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from rcmu_agent.visual_budget import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, FACTOR

__all__ = ["DEFAULT_MODEL", "Settings"]

DEFAULT_MODEL = "weihongliang/RC-Qwen2VL-2b"

# The published RC-Qwen2-VL repositories hold merged weights only; their card takes the processor
# (tokenizer + image processor) from the base model.
BASE_PROCESSORS = {
    "weihongliang/RC-Qwen2VL-2b": "Qwen/Qwen2-VL-2B-Instruct",
    "weihongliang/RC-Qwen2VL-7b": "Qwen/Qwen2-VL-7B-Instruct",
}


class Settings(BaseSettings):
    """Everything configurable. Environment: `RCMU_<FIELD>` (e.g. `RCMU_MODEL`, `RCMU_HOME`)."""

    model_config = SettingsConfigDict(env_prefix="RCMU_", extra="ignore", validate_default=True)

    # where memory, thread checkpoints and copies of reference photos live
    home: Path = Field(default_factory=lambda: Path.home() / ".rcmu")
    user: str = "default"

    # vision-language backend
    backend: Literal["transformers", "openai"] = "transformers"
    model: str = DEFAULT_MODEL
    processor: str | None = None  # None: the base model's for published ids, else the model's own
    adapter: str | None = None  # a peft LoRA adapter (hub id or directory)
    device: str = "auto"  # auto | cpu | cuda | cuda:1 | mps
    max_new_tokens: int = Field(default=128, ge=1, le=4096)
    # visual token budget: pixels the model sees per photo (28x28 = one token); Qwen2-VL card's range
    max_pixels: int = Field(default=DEFAULT_MAX_PIXELS, ge=FACTOR * FACTOR)
    min_pixels: int = Field(default=DEFAULT_MIN_PIXELS, ge=FACTOR * FACTOR)
    # auto: bf16 where the GPU or the CPU computes it natively (rcmu_agent.cpu), else fp32
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    base_url: str | None = None  # OpenAI-compatible server, e.g. http://localhost:8000/v1 for vLLM
    api_key: SecretStr | None = None  # falls back to OPENAI_API_KEY
    request_timeout: float = Field(default=120.0, gt=0)
    # a tool-calling chat model deciding what a chat turn means (remember, update, forget, list, or a question);
    # None: the offline grammar of rcmu_agent.teach_grammar. Any `init_chat_model` name ("openai:gpt-4.1-mini")
    chat_model: str | None = None
    chat_base_url: str | None = None  # its OpenAI-compatible server (a local one), with RCMU_API_KEY or none
    max_retries: int = Field(default=4, ge=0)

    # detection
    face_model: Literal["auto", "hog", "cnn"] = "auto"  # auto: the CNN where dlib has a GPU, else HOG
    face_upsample: int = Field(default=1, ge=0, le=3)  # the most; large photos need fewer (see faces.py)
    object_detector: str | None = "google/owlv2-base-patch16-ensemble"  # "" disables
    object_score_threshold: float = Field(default=0.3, ge=0, le=1)

    # recognition
    face_threshold: float = Field(default=0.6, gt=0)  # dlib's Euclidean cut-off between descriptors
    image_embedding_model: str | None = "openai/clip-vit-base-patch32"  # "" disables object recognition
    object_threshold: float = Field(default=0.8, ge=-1, le=1)  # minimum cosine similarity

    # memory
    chroma_url: str | None = None  # Chroma server (HttpClient) instead of the embedded store
    checkpointer: str | None = None  # threads: None = HOME/threads.sqlite, a .sqlite path, or postgresql://...
    # the PostgreSQL database replicas share (postgresql://...): photos, the library's tables, threads (unless
    # `checkpointer` says otherwise) and the writers' locks live there instead of under `home`
    # (rcmu_agent.postgres); None: one machine, everything in `home`
    database_url: str | None = None
    lock_timeout: float = Field(default=10.0, ge=0)

    # photo library (`rcmu index`, `rcmu search`, `rcmu ask --library`)
    library_cluster_threshold: float = Field(default=0.55, gt=0)  # dlib distance joining an unnamed face to a cluster
    library_min_similarity: float = Field(default=0.2, ge=-1, le=1)  # text search: minimum MiniLM cosine
    library_workers: int = Field(default=0, ge=0)  # `rcmu index` worker processes; 0: one per core
    library_collage_cell: int = Field(default=448, ge=64, le=2048)  # pixels per photo in the collage a question sees

    # Folders whose photos model-facing entry points (LangChain tools, graph messages, MCP, web) may read
    # by path; empty: none, they take only inline images (bytes, base64). The CLI reads what its user
    # types. Environment: os.pathsep-separated (`/srv/photos:/tmp/uploads`). `{user}` in a folder is
    # replaced by the asking user's id, so each user can be given a folder of their own.
    allowed_roots: Annotated[list[Path], NoDecode] = Field(default_factory=list)

    # input limits
    max_image_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    max_image_pixels: int = Field(default=80_000_000, gt=0)
    max_text_chars: int = Field(default=4000, gt=0)

    @field_validator(
        "processor",
        "adapter",
        "base_url",
        "object_detector",
        "image_embedding_model",
        "chroma_url",
        "checkpointer",
        "database_url",
        "chat_model",
        "chat_base_url",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _budget_is_a_range(self) -> Settings:
        if self.min_pixels > self.max_pixels:
            raise ValueError(
                f"min_pixels ({self.min_pixels}) is above max_pixels ({self.max_pixels}): "
                "lower RCMU_MIN_PIXELS or raise RCMU_MAX_PIXELS"
            )
        return self

    @model_validator(mode="after")
    def _threads_follow_the_database(self) -> Settings:
        """A shared deployment keeps threads where it keeps everything else: with `RCMU_DATABASE_URL`
        set and no `RCMU_CHECKPOINTER`, a follow-up reaches any replica."""
        if self.checkpointer is None and self.database_url is not None:
            self.checkpointer = self.database_url
        return self

    @field_validator("database_url", mode="after")
    @classmethod
    def _database_is_postgres(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgres://", "postgresql://")):
            raise ValueError(f"RCMU_DATABASE_URL must be a postgresql:// URL, not {value.split(':')[0]!r}")
        return value

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("allowed_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: object) -> object:
        if isinstance(value, str | os.PathLike):
            return [part for part in os.fspath(value).split(os.pathsep) if part.strip()]
        return value

    @field_validator("allowed_roots", mode="after")
    @classmethod
    def _expand_roots(cls, value: list[Path]) -> list[Path]:
        return [root.expanduser() for root in value]

    def roots_for(self, user: str) -> list[Path]:
        """The allowed folders for `user` (`{user}` replaced by the id, which `check_user` keeps
        to one path segment without `..`)."""
        return [Path(str(root).replace("{user}", user)) for root in self.allowed_roots]

    def processor_source(self) -> str:
        """Where the tokenizer and image processor come from."""
        if self.processor:
            return self.processor
        if Path(self.model).is_dir():
            return self.model
        return BASE_PROCESSORS.get(self.model, self.model)
