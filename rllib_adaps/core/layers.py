"""The sharing engine's arithmetic: ``G`` parameter slices per layer, routed by agent.

Every layer holds ``G`` slices (``weight[g]`` is ``[in, out]``, ``bias[g]`` is ``[out]``). A
forward pass routes each sample to its slice: samples are scattered into a ``[U, rows, in]``
block (``U``: the slices present in the batch), one ``bmm`` per layer runs them at once, and
the result is gathered back. No loop over agents or groups; with one slice in use it is a
plain matmul. Plain torch: the RLModule around it lives in ``rllib_adaps.rllib.module``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

#: Networks whose hidden neurons a method may mask.
MASKABLE_NETWORKS = ("actor", "critic")
ACTIVATIONS = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "elu": torch.nn.ELU, "silu": torch.nn.SiLU, "swish": torch.nn.SiLU}


class Routing:
    """Where each sample of a batch goes: its slice and its row in the ``[U, rows]`` block.

    Built once per forward pass from the per-sample slice index and reused by every layer.
    ``U`` counts the slices this batch's samples use, not the slices the agents use: a
    minibatch cut from slot-major rows holds a few agents, and a block over every agent's
    slice would be mostly padding (NoPS: 30 slices of up to 250 rows for 500 samples).
    """

    def __init__(self, sample_slice: Optional[torch.Tensor], num_slices: int):
        self.single, self.slice = True, 0  # one slice in use, and which
        if sample_slice is None or num_slices == 1 or len(sample_slice) == 0:
            return
        counts = torch.bincount(sample_slice, minlength=num_slices)
        self.used = counts.nonzero().flatten()  # [U] slice ids in this batch (sorted)
        self.single = len(self.used) == 1
        self.all_slices = len(self.used) == num_slices  # then slice id == block index
        if self.single:
            self.slice = int(self.used[0])
            return
        if self.all_slices:
            sample_compact = sample_slice
        else:
            compact = torch.full((num_slices,), -1, dtype=torch.int64, device=sample_slice.device)
            compact[self.used] = torch.arange(len(self.used), device=sample_slice.device)
            sample_compact = compact[sample_slice]  # [B] in 0..U-1
        counts = counts[self.used]
        self.rows = int(counts.max())
        order = torch.argsort(sample_compact, stable=True)
        starts = torch.cumsum(counts, 0) - counts
        position = torch.empty_like(order)
        position[order] = torch.arange(len(order), device=order.device) - starts[sample_compact[order]]
        self.slot = sample_compact * self.rows + position  # [B] row in the flattened block

    @classmethod
    def shared(cls) -> "Routing":
        """One slice for every sample (FuPS and the masked methods): plain matmuls."""
        return cls(None, 1)

    def scatter(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, d]`` -> ``[U, rows, d]`` (unused rows are zero and never read back)."""
        block = x.new_zeros(len(self.used) * self.rows, x.shape[-1]).index_copy(0, self.slot, x)
        return block.view(len(self.used), self.rows, x.shape[-1])

    def gather(self, block: torch.Tensor) -> torch.Tensor:
        return block.reshape(-1, block.shape[-1]).index_select(0, self.slot)


class GroupedLinear(torch.nn.Module):
    """``G`` independent linear maps in one tensor; slice ``g`` is ``weight[g]``, ``bias[g]``.

    Each slice is initialised as ``torch.nn.Linear`` would be.
    """

    def __init__(self, num_slices: int, in_features: int, out_features: int):
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight = torch.nn.Parameter(torch.empty(num_slices, in_features, out_features).uniform_(-bound, bound))
        self.bias = torch.nn.Parameter(torch.empty(num_slices, out_features).uniform_(-bound, bound))

    def orthogonal_(self, gain: float) -> None:
        """Every slice orthogonal with ``gain``, biases zero (the SePS reference code's init)."""
        with torch.no_grad():
            for weight in self.weight:
                torch.nn.init.orthogonal_(weight, gain)
            self.bias.zero_()

    def forward(self, x: torch.Tensor, routing: Routing) -> torch.Tensor:
        """``x``: ``[B, in]`` when one slice is in use, else ``[U, rows, in]``."""
        if routing.single:
            if len(self.weight) == 1:  # a view: its backward is free, an index's fills a zero tensor
                return torch.addmm(self.bias.squeeze(0), x, self.weight.squeeze(0))
            return torch.addmm(self.bias[routing.slice], x, self.weight[routing.slice])
        if routing.all_slices:  # NoPS, and SePS using its whole bound: no copy of the weights
            return torch.baddbmm(self.bias[:, None, :], x, self.weight)
        weight, bias = self.weight.index_select(0, routing.used), self.bias.index_select(0, routing.used)
        return torch.baddbmm(bias[:, None, :], x, weight)


class GroupedLogStd(torch.nn.Module):
    """A state-free log standard deviation per slice and action dim (RLlib's ``free_log_std``)."""

    def __init__(self, num_slices: int, action_dims: int):
        super().__init__()
        self.value = torch.nn.Parameter(torch.zeros(num_slices, action_dims))


class GroupedMLP(torch.nn.Module):
    """Hidden layers (each followed by the activation and an optional neuron mask) and a head."""

    def __init__(self, num_slices: int, in_dim: int, hiddens: Sequence[int], out_dim: Optional[int], activation: str):
        super().__init__()
        sizes = [in_dim, *hiddens]
        self.hidden = torch.nn.ModuleList(GroupedLinear(num_slices, a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.head = GroupedLinear(num_slices, sizes[-1], out_dim) if out_dim is not None else None
        self.activation = ACTIVATIONS[activation]()
        self.hidden_sizes = list(hiddens)

    def body(self, x: torch.Tensor, routing: Routing, masks: Optional[torch.Tensor]) -> torch.Tensor:
        """Hidden layers; ``masks`` has the layout of ``x`` with ``sum(hidden_sizes)`` columns."""
        offset = 0
        for layer, size in zip(self.hidden, self.hidden_sizes):
            x = self.activation(layer(x, routing))
            if masks is not None:
                x = x * masks[..., offset : offset + size]
            offset += size
        return x

    def orthogonal_(self, hidden_gain: float, head_gain: float) -> None:
        for layer in self.hidden:
            layer.orthogonal_(hidden_gain)
        if self.head is not None:
            self.head.orthogonal_(head_gain)

    def forward(self, x, routing, masks=None):
        return self.head(self.body(x, routing, masks), routing)


@dataclasses.dataclass(frozen=True)
class EngineLayout:
    """What a sharing method asks of the engine, in the engine's own terms (no method names).

    ``mask_table`` and ``agent_mask``: the initial mask rows (row 0 all ones) and each agent's
    row; None leaves every agent on row 0 until a fit installs masks into ``mask_rows`` rows.
    """

    num_slices: int = 1
    agent_slices: Optional[Tuple[int, ...]] = None  # initial agent -> slice (None: all 0)
    agent_id_input: bool = False  # one-hot agent index appended to the features
    mask_rows: int = 1  # 1: no masking
    masked_networks: Tuple[str, ...] = ()
    mask_table: Optional[np.ndarray] = None
    agent_mask: Optional[np.ndarray] = None


#: Recurrent cells the engine has (RLlib's ``use_lstm`` gives "lstm"; "gru" is the engine's own).
RECURRENT_CELLS = ("lstm", "gru")


class GroupedRecurrentCell(torch.nn.Module):
    """An LSTM or GRU cell with ``G`` parameter slices, unrolled over time for routed rows.

    Gates follow ``torch.nn.LSTMCell`` / ``torch.nn.GRUCell``. A neuron mask multiplies the
    cell's output (and, for the LSTM, its memory), so a masked unit carries nothing for that
    agent, as a masked hidden neuron does. State is a dict: ``h`` (and ``c`` for the LSTM).
    """

    def __init__(self, num_slices: int, in_features: int, cell_size: int, kind: str):
        super().__init__()
        if kind not in RECURRENT_CELLS:
            raise ValueError(f"recurrent cell must be one of {list(RECURRENT_CELLS)}, got {kind!r}.")
        self.kind, self.cell_size = kind, int(cell_size)
        gates = (4 if kind == "lstm" else 3) * self.cell_size
        self.input_map = GroupedLinear(num_slices, in_features, gates)
        self.state_map = GroupedLinear(num_slices, self.cell_size, gates)
        bound = 1.0 / math.sqrt(self.cell_size)  # torch's recurrent init, both maps
        with torch.no_grad():
            for p in (*self.input_map.parameters(), *self.state_map.parameters()):
                p.uniform_(-bound, bound)

    def state_names(self) -> Tuple[str, ...]:
        return ("h", "c") if self.kind == "lstm" else ("h",)

    def orthogonal_(self, gain: float) -> None:
        self.input_map.orthogonal_(gain)
        self.state_map.orthogonal_(1.0)

    def step(self, x: torch.Tensor, state: dict, routing: Routing, mask: Optional[torch.Tensor]) -> dict:
        """One time step; ``x``, the state and ``mask`` in the routed layout of ``routing``."""
        gx, gh = self.input_map(x, routing), self.state_map(state["h"], routing)
        c = self.cell_size
        if self.kind == "lstm":
            i, f, g, o = (gx + gh).split(c, dim=-1)
            memory = torch.sigmoid(f) * state["c"] + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(memory)
            if mask is not None:
                memory, h = memory * mask, h * mask
            return {"h": h, "c": memory}
        r, z, n = gx.split(c, dim=-1)
        hr, hz, hn = gh.split(c, dim=-1)
        r, z = torch.sigmoid(r + hr), torch.sigmoid(z + hz)
        h = (1 - z) * torch.tanh(n + r * hn) + z * state["h"]
        return {"h": h * mask if mask is not None else h}
