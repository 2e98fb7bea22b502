"""The baseline's data order: a uniform random order over packed blocks (`BlockSampler`). Technique
samplers (efflab.techniques.curriculum) fall back to it, and the loop draws every batch from a sampler
with this interface: `batch(step)`, `seq_len_at(step)`, `state_dict()` / `load_state_dict(state)`.
"""

from __future__ import annotations

import numpy as np

from efflab.errors import UserError


class BlockSampler:
    """Uniform random order over packed blocks, reshuffled each epoch; stateless in the step.

    `batch(step)` returns the global batch for an optimizer step as a dict of LongTensors; the order
    is a pure function of (seed, step), so resuming needs no state beyond the step and every rank
    sees the same global batch (each then takes its own share).
    """

    def __init__(self, blocks: np.ndarray, batch_size: int, seed: int, labels: np.ndarray | None = None):
        self.blocks = blocks
        self.labels = labels  # chat data: -100 where no loss is taken (prompt tokens)
        self.batch_size = batch_size
        self.seed = seed
        self._perm_epoch, self._perm = -1, None

    def _perm_for(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.blocks))
            self._perm_epoch = epoch
        return self._perm

    def indices(self, step: int) -> np.ndarray:
        n = len(self.blocks)
        g = np.arange(step * self.batch_size, (step + 1) * self.batch_size)
        return np.array([self._perm_for(i // n)[i % n] for i in g])

    def batch(self, step: int) -> dict:
        import torch  # (loaded where batches are made: a config or plan needs no torch)

        idx = self.indices(step)
        out = {"input_ids": torch.from_numpy(self.blocks[idx].astype(np.int64))}
        if self.labels is not None:
            out["labels"] = torch.from_numpy(self.labels[idx].astype(np.int64))
        return out

    def seq_len_at(self, step: int) -> int:
        return int(self.blocks.shape[1])

    def state_dict(self) -> dict:
        return {"seed": self.seed, "batch_size": self.batch_size}

    def load_state_dict(self, state: dict) -> None:
        if state and (state.get("seed"), state.get("batch_size")) != (self.seed, self.batch_size):
            raise UserError("--resume: the data order of the checkpoint differs from this config")
