"""Training examples → padded batches, and a data position that can be saved and resumed exactly.

Encoding goes through `TransformersVLM.encode`, the agent's own chat template, image-token expansion
and pixel processing, with labels -100 on everything but the answer. The order of examples is a
seeded permutation per epoch, so "epoch + index into it" is the whole data position.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from rcmu_agent.train.records import InstructionRecord, record_prompt

if TYPE_CHECKING:
    import torch

    from rcmu_agent.backends.hf import TransformersVLM

__all__ = ["DataStream", "Encoder", "collate"]


@dataclass
class DataStream:
    """An endless stream of example indices: epoch e is `permutation(n)` seeded with (seed, e)."""

    size: int
    seed: int
    epoch: int = 0
    index: int = 0

    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.size)

    def take(self, count: int) -> list[int]:
        out: list[int] = []
        while len(out) < count:
            order = self._order(self.epoch)
            step = min(count - len(out), self.size - self.index)
            out += order[self.index : self.index + step].tolist()
            self.index += step
            if self.index >= self.size:
                self.epoch, self.index = self.epoch + 1, 0
        return out

    def position(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index}


class Encoder:
    """Record → model inputs (CPU tensors), memoised for the last `cache_size` records.

    The memo matters on small data (every epoch re-reads the same photos); on large data it is a
    bounded LRU so memory stays flat.
    """

    def __init__(self, vlm: TransformersVLM, records: list[InstructionRecord], cache_size: int = 4096) -> None:
        self.vlm = vlm
        self.records = records
        self.cache_size = cache_size
        self._memo: OrderedDict[int, dict[str, torch.Tensor]] = OrderedDict()

    def __len__(self) -> int:
        return len(self.records)

    def __call__(self, i: int) -> dict[str, torch.Tensor]:
        if i in self._memo:
            self._memo.move_to_end(i)
            return self._memo[i]
        from rcmu_agent.images import load_image

        record = self.records[i]
        image = load_image(record.image)
        encoded = self.vlm.encode(record_prompt(record), image, record.answer)
        if self.cache_size > 0:
            self._memo[i] = encoded
            while len(self._memo) > self.cache_size:
                self._memo.popitem(last=False)
        return encoded

    def batch(self, indices: list[int], device: Any = None) -> dict[str, torch.Tensor]:
        pad = self.vlm.tokenizer.pad_token_id
        return collate([self(i) for i in indices], pad if pad is not None else 0, device)


def collate(items: list[dict[str, torch.Tensor]], pad_id: int, device: Any = None) -> dict[str, torch.Tensor]:
    """Right-pad token rows (labels with -100, mask with 0); stack the images' patches and grids."""
    import torch

    longest = max(int(item["input_ids"].shape[1]) for item in items)

    def padded(key: str, fill: int) -> torch.Tensor:
        rows = []
        for item in items:
            row = item[key][0]
            rows.append(torch.cat([row, row.new_full((longest - row.shape[0],), fill)]))
        return torch.stack(rows)

    batch = {
        "input_ids": padded("input_ids", pad_id),
        "attention_mask": padded("attention_mask", 0),
        "labels": padded("labels", -100),
    }
    if all("pixel_values" in item for item in items):
        batch["pixel_values"] = torch.cat([item["pixel_values"] for item in items])
        batch["image_grid_thw"] = torch.cat([item["image_grid_thw"] for item in items])
        batch["mm_token_type_ids"] = padded("mm_token_type_ids", 0)  # multimodal RoPE, as when answering
    if device is not None:
        batch = {k: v.to(device) for k, v in batch.items()}
    return batch
