"""Random training crops drawn on the device where the model trains.

The photographs are copied there once, as one N x H x W x 3 uint8 tensor (each photograph at the
top left of its slot); each batch's crops and horizontal and vertical flips are then drawn with a
torch generator on that device and taken with one vectorised gather, with no Python loop over the
samples. A photograph smaller than the crop is padded by repeating its last row and column.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass
class Draws:
    """Where each crop of a batch comes from: photograph, top-left corner (row, column), and flips."""

    image: Tensor  # B, int64
    corner: Tensor  # B x 2, int64
    flips: Tensor  # B x 2, bool: (upside down, mirrored)


class DeviceCrops:
    """Crops of ``crop`` x ``crop`` pixels from photographs held on ``device``."""

    def __init__(self, images: list[np.ndarray], crop: int, device: torch.device | str):
        self.crop = crop
        self.device = torch.device(device)
        extents = [(max(image.shape[0], crop), max(image.shape[1], crop)) for image in images]
        height, width = (max(sides) for sides in zip(*extents, strict=True))
        store = torch.zeros((len(images), height, width, 3), dtype=torch.uint8)
        for slot, (image, (rows, cols)) in enumerate(zip(images, extents, strict=True)):
            pixels = torch.from_numpy(image)
            rows_index = torch.arange(rows).clamp(max=image.shape[0] - 1)
            cols_index = torch.arange(cols).clamp(max=image.shape[1] - 1)
            store[slot, :rows, :cols] = pixels[rows_index][:, cols_index]
        self.store = store.to(self.device)
        self.extents = torch.tensor(extents, device=self.device)

    def generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(seed)

    def draw(self, batch: int, generator: torch.Generator) -> Draws:
        """Uniform photograph, uniform corner within it, each flip with probability 1/2."""
        options = {"generator": generator, "device": self.device}
        image = torch.randint(len(self.store), (batch,), **options)
        room = self.extents[image] - self.crop + 1
        corner = (torch.rand(batch, 2, **options) * room).long().minimum(room - 1)
        flips = torch.rand(batch, 2, **options) < 0.5
        return Draws(image, corner, flips)

    def take(self, draws: Draws) -> Tensor:
        """The drawn crops, B x crop x crop x 3 uint8: row r of a crop flipped upside down is row
        crop - 1 - r of the source window (columns likewise for a mirrored one)."""
        steps = torch.arange(self.crop, device=self.device)
        offsets = torch.where(draws.flips[:, :, None], self.crop - 1 - steps, steps)  # B x 2 x crop
        rows = draws.corner[:, 0, None] + offsets[:, 0]
        cols = draws.corner[:, 1, None] + offsets[:, 1]
        return self.store[draws.image[:, None, None], rows[:, :, None], cols[:, None, :]]

    def batch(
        self,
        batch: int,
        generator: torch.Generator,
        memory_format: torch.memory_format = torch.contiguous_format,
    ) -> Tensor:
        """A batch of random crops as B x 3 x crop x crop floats in [0, 1], in ``memory_format``."""
        crops = self.take(self.draw(batch, generator)).permute(0, 3, 1, 2)
        return crops.float().div_(255).contiguous(memory_format=memory_format)
