"""The L0 telemetry backbone (a PatchTST-style patch transformer), its masked-patch
pretraining, and L1 adaptation to a new site.

Shapes: B windows, C channels, L samples per window, P patches per channel, d = d_model.
Windows are float32 ``[B, C, L]`` in raw units (kPa, degC, m/s...). Each window is
instance-normalised per channel (RevIN-style); the removed mean and std are returned so heads
can use absolute levels and de-normalise reconstructions.

Portability: only plain tensor ops (linear, softmax, layer norm, gather, where), devices passed
as strings, no ``.cuda()`` and no CUDA-only kernels, so the same module runs on CPU, CUDA and
Ascend NPU and exports to ONNX as one static graph.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from models._loop import Budget, EarlyStopper, as_tensor, batches, split_indices
from models.config import BackboneConfig
from models.devices import resolve_device
from models.weights import data_hash, model_id

# Floor of the per-window std (in raw units): a stuck sensor has std 0, and dividing by it
# would blow up the normalised patches; with the floor they are simply flat zeros.
STD_EPS = 1e-5


class BackboneOutput(NamedTuple):
    """What one forward pass gives (all tensors on the input's device)."""

    tokens: Tensor  # [B, C, P, d] per-channel patch embeddings after channel mixing
    pooled: Tensor  # [B, d] window embedding (mean over channels and patches, layer-normed)
    recon: Tensor  # [B, C, P, patch_len] reconstructed patches, normalised units
    patches: Tensor  # [B, C, P, patch_len] input patches, normalised units (the target)
    mean: Tensor  # [B, C] per-window channel mean, raw units
    std: Tensor  # [B, C] per-window channel std, raw units


class SelfAttention(nn.Module):
    """Multi-head self-attention written with matmul + softmax (portable, exports cleanly)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:  # x: [N, T, d]
        _, t, d = x.shape
        q, k, v = self.qkv(x).reshape(-1, t, 3, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4)
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.d_head), dim=-1)
        mixed = (self.dropout(weights) @ v).transpose(1, 2).reshape(-1, t, d)
        return self.out(mixed)


class EncoderLayer(nn.Module):
    """Pre-norm transformer layer (pre-norm trains stably without warm-up on short runs)."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, n_heads, dropout)
        self.ff = nn.Sequential(
            nn.Linear(d_model, d_ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_ff, d_model)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.dropout(self.attn(self.norm1(x)))
        return x + self.dropout(self.ff(self.norm2(x)))


class PatchBackbone(nn.Module):
    """PatchTST-style encoder: RevIN -> per-channel patches -> shared linear embedding +
    learned positions -> shared transformer over each channel's patches (channel-independent)
    -> channel mixing (attention across channels at each patch) -> tokens and pooled embedding.

    A linear reconstruction head maps each token back to its patch; pretraining hides patches
    behind a learned mask token and learns to reconstruct them from the rest of the window.

    Attributes beyond the weights (not saved in them; the manifest carries them):
    ``level`` ("L0", "L1"), ``lineage`` (ids of ancestors, root first) and ``checkpoint_id``
    ("name@version" once saved or loaded).
    """

    checkpoint_kind: ClassVar[str] = "backbone"
    patch_index: Tensor  # buffers, declared for the type checker
    score_masks: Tensor

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        self.level: str = "L0"
        self.lineage: tuple[str, ...] = ()
        self.checkpoint_id: str | None = None
        self.patch_embed = nn.Linear(c.patch_len, c.d_model)
        # Positions start well apart (std 0.5, not ViT's 0.02): on short CPU training runs the
        # attention then finds the neighbouring patches of a masked one in a few epochs.
        self.pos_embed = nn.Parameter(torch.randn(c.n_patches, c.d_model) * 0.5)
        self.mask_token = nn.Parameter(torch.zeros(c.d_model))
        self.encoder = nn.ModuleList(
            EncoderLayer(c.d_model, c.n_heads, c.d_ff, c.dropout) for _ in range(c.n_layers)
        )
        self.mixer: EncoderLayer | None = None
        self.channel_embed: nn.Parameter | None = None
        if c.channel_mixing:
            self.mixer = EncoderLayer(c.d_model, c.n_heads, c.d_ff, c.dropout)
            # Channels are different sensors, so the mixer needs to know which is which.
            self.channel_embed = nn.Parameter(torch.randn(c.n_channels, c.d_model) * 0.02)
        self.norm = nn.LayerNorm(c.d_model)
        self.recon_head = nn.Linear(c.d_model, c.patch_len)
        self.pool_norm = nn.LayerNorm(c.d_model)
        # Sample indices of each patch: [P, patch_len]; gathering them is patching.
        starts = torch.arange(c.n_patches) * c.stride
        self.register_buffer(
            "patch_index", starts[:, None] + torch.arange(c.patch_len), persistent=False
        )
        self.register_buffer("score_masks", self._score_masks(c), persistent=False)

    def sealed_config(self) -> dict[str, Any]:
        """The config written into (and covered by the sha256 of) the weights file."""
        return self.config.to_dict()

    @staticmethod
    def _score_masks(c: BackboneConfig) -> Tensor:
        """[K, 1, C, P, 1] masks hiding patch p of channel c in pass (p + c) % K, so every patch
        is hidden exactly once and channels are staggered (the mixer can borrow across them)."""
        k = torch.arange(c.score_passes)[:, None, None]
        grid = (
            torch.arange(c.n_channels)[:, None] + torch.arange(c.n_patches)[None, :]
        ) % c.score_passes
        return (grid[None] == k)[:, None, :, :, None]

    def normalise(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """RevIN without affine terms: ``[B, C, L]`` -> normalised, mean ``[B, C]``, std ``[B, C]``."""
        mean = x.mean(dim=-1, keepdim=True)
        # Population variance written out: exports to ONNX and runs on every backend alike.
        std = torch.sqrt((x - mean).pow(2).mean(dim=-1, keepdim=True) + STD_EPS**2)
        return (x - mean) / std, mean.squeeze(-1), std.squeeze(-1)

    def embed(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Tokens ``[B, C, P, d]`` (with positions), patches, mean and std of a raw window."""
        c = self.config
        if x.dim() != 3 or x.shape[1] != c.n_channels or x.shape[2] != c.window:
            raise ValueError(
                f"expected windows [B, {c.n_channels}, {c.window}], got {list(x.shape)}"
            )
        z, mean, std = self.normalise(x)
        patches = z[:, :, self.patch_index]  # [B, C, P, patch_len]
        return self.patch_embed(patches) + self.pos_embed, patches, mean, std

    def encode(self, tokens: Tensor) -> Tensor:
        """``[B, C, P, d]`` -> ``[B, C, P, d]``: per-channel encoder, then channel mixing."""
        c = self.config
        h = tokens.reshape(-1, c.n_patches, c.d_model)  # channels are independent sequences
        for layer in self.encoder:
            h = layer(h)
        h = h.reshape(-1, c.n_channels, c.n_patches, c.d_model)
        if self.mixer is not None and self.channel_embed is not None:
            # Attend across channels at each patch position: [B*P, C, d]. The mixer is a
            # residual layer, so taking the channel embedding off again leaves h + its update.
            identity = self.channel_embed[:, None, :]
            m = (h + identity).transpose(1, 2).reshape(-1, c.n_channels, c.d_model)
            m = self.mixer(m).reshape(-1, c.n_patches, c.n_channels, c.d_model).transpose(1, 2)
            h = m - identity
        return self.norm(h)

    def hide(self, tokens: Tensor, mask: Tensor) -> Tensor:
        """Replace the masked tokens by the mask token; ``mask`` broadcasts to ``[..., C, P, 1]``."""
        return torch.where(mask, self.mask_token, tokens)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> BackboneOutput:
        """Encode raw windows ``[B, C, L]``; ``mask`` (bool ``[B, C, P]``) hides patches."""
        tokens, patches, mean, std = self.embed(x)
        if mask is not None:
            tokens = self.hide(tokens, mask[..., None])
        h = self.encode(tokens)
        recent = h if self.config.pool == "mean" else h[:, :, -1:]
        pooled = self.pool_norm(recent.mean(dim=(1, 2)))
        return BackboneOutput(h, pooled, self.recon_head(h), patches, mean, std)

    def masked_error(self, x: Tensor) -> Tensor:
        """Per-channel masked reconstruction error ``[B, C]`` (mean squared, normalised units).

        Every patch is hidden once over ``score_passes`` passes and predicted from the rest of
        the window and the other channels, so a channel whose shape stops following its
        context (a spike, an oscillation, a sensor decoupled from the others) gets a high
        error. A slow level drift mostly vanishes in the instance normalisation: heads score
        it from the window statistics instead. Batched as one ``[K*B]`` pass.
        """
        c = self.config
        k = c.score_passes
        tokens, patches, _, _ = self.embed(x)
        repeated = tokens.unsqueeze(0).expand(k, -1, -1, -1, -1)  # [K, B, C, P, d]
        hidden = self.hide(repeated, self.score_masks).reshape(
            -1, c.n_channels, c.n_patches, c.d_model
        )
        recon = self.recon_head(self.encode(hidden)).reshape(
            k, -1, c.n_channels, c.n_patches, c.patch_len
        )
        sq = (recon - patches.unsqueeze(0)).pow(2).mean(dim=-1)  # [K, B, C, P]
        weight = self.score_masks[..., 0].to(sq.dtype)  # [K, 1, C, P]
        return (sq * weight).sum(dim=(0, 3)) / weight.sum(dim=(0, 3))


def random_patch_mask(
    batch: int,
    config: BackboneConfig,
    ratio: float,
    generator: torch.Generator,
    forecast: bool = False,
) -> Tensor:
    """Bool ``[B, C, P]`` hiding ``round(ratio * P)`` random patches of every channel (at least
    one, never all: each channel keeps some context and always has a target). ``forecast``:
    the last patch is always among them, so the pretext task is to predict the window's most
    recent seconds from what came before (a forecast) as well as to fill gaps."""
    p = config.n_patches
    n_hidden = min(p - 1, max(1, round(ratio * p)))
    scores = torch.rand(batch, config.n_channels, p, generator=generator)
    if forecast:
        scores[..., -1] = -1.0  # ranks first: always hidden
    ranks = scores.argsort(dim=-1).argsort(dim=-1)
    return ranks < n_hidden


def masked_loss(backbone: PatchBackbone, x: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error of the hidden patches only (normalised units)."""
    out = backbone(x, mask)
    sq = (out.recon - out.patches).pow(2).mean(dim=-1)  # [B, C, P]
    return (sq * mask).sum() / mask.sum().clamp_min(1)


@dataclass
class PretrainResult:
    """A pretraining or adaptation run: the network, its per-epoch losses and provenance."""

    backbone: PatchBackbone
    history: list[dict[str, float]] = field(default_factory=list)
    best_val_loss: float = float("inf")
    seconds: float = 0.0
    data_hash: str = ""
    device: str = "cpu"


def pretrain(
    backbone: PatchBackbone,
    windows: np.ndarray,
    *,
    epochs: int = 20,
    mask_ratio: float = 0.4,
    lr: float = 2e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 64,
    val_windows: np.ndarray | None = None,
    val_fraction: float = 0.1,
    patience: int = 5,
    device: str = "cpu",
    seed: int = 0,
    max_seconds: float | None = None,
    progress: bool = True,
    desc: str = "pretrain",
    forecast: bool = False,
) -> PretrainResult:
    """Self-supervised masked-patch pretraining on all channels, in place.

    ``windows``: float ``[N, C, L]`` raw units. Validation on ``val_windows`` when given (pass
    windows of other trucks / later times for honest splits), else a random ``val_fraction``.
    Keeps the weights of the best validation epoch, stops after ``patience`` epochs without
    improvement or when ``max_seconds`` is spent. Returns the history
    ``[{"epoch", "train_loss", "val_loss", "seconds"}, ...]``; the backbone ends in eval mode
    on ``device`` (the resolved one: "cuda:0" falls back to "cpu" where there is none).
    """
    torch.manual_seed(seed)  # dropout draws from the global generator: seeded, runs repeat
    device = resolve_device(device)
    train_x, val_x = _split(windows, val_windows, val_fraction, seed)
    backbone.to(device)
    params = [p for p in backbone.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    result = PretrainResult(backbone, data_hash=data_hash(windows), device=device)
    stopper, budget = EarlyStopper(backbone, patience), Budget(max_seconds)
    torch_gen, np_gen = torch.Generator().manual_seed(seed), np.random.default_rng(seed)
    train_t, val_t = as_tensor(train_x, device), as_tensor(val_x, device)
    val_mask = random_patch_mask(
        len(val_x), backbone.config, mask_ratio, torch.Generator().manual_seed(seed + 1), forecast
    )
    bar = tqdm(range(epochs), desc=desc, unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        backbone.train()
        losses: list[float] = []
        for idx in batches(len(train_x), batch_size, np_gen):
            if losses and budget.spent():
                break  # checked per batch: an epoch on a big data set can outlast the budget
            mask = random_patch_mask(len(idx), backbone.config, mask_ratio, torch_gen, forecast).to(
                device
            )
            loss = masked_loss(backbone, train_t[torch.as_tensor(idx, device=device)], mask)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimiser.step()
            losses.append(loss.item())
        val_loss = _eval_loss(backbone, val_t, val_mask.to(device), batch_size)
        row = {
            "epoch": float(epoch),
            "train_loss": float(np.mean(losses)),
            "val_loss": val_loss,
            "seconds": budget.elapsed,
        }
        result.history.append(row)
        bar.set_postfix(train=f"{row['train_loss']:.4f}", val=f"{val_loss:.4f}")
        if stopper.update(epoch, val_loss) or budget.spent():
            break
    stopper.restore()
    backbone.eval()
    result.best_val_loss, result.seconds = stopper.best, budget.elapsed
    return result


def _split(
    windows: np.ndarray, val_windows: np.ndarray | None, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    windows = np.asarray(windows, dtype=np.float32)
    if windows.ndim != 3:
        raise ValueError(f"windows must be [N, C, L], got shape {windows.shape}")
    if val_windows is not None:
        return windows, np.asarray(val_windows, dtype=np.float32)
    train_idx, val_idx = split_indices(len(windows), val_fraction, seed)
    return windows[train_idx], windows[val_idx]


@torch.no_grad()
def _eval_loss(backbone: PatchBackbone, x: Tensor, mask: Tensor, batch_size: int) -> float:
    backbone.eval()
    total, count = 0.0, 0
    for start in range(0, len(x), batch_size):
        part = slice(start, start + batch_size)
        total += masked_loss(backbone, x[part], mask[part]).item() * len(x[part])
        count += len(x[part])
    return total / max(count, 1)


def freeze_lower(backbone: PatchBackbone, n_layers: int) -> None:
    """Freeze the patch embedding, positions and the first ``n_layers`` encoder layers (the
    generic signal features), leaving the upper layers, mixer and heads free to adapt."""
    frozen: list[nn.Module | nn.Parameter] = [backbone.patch_embed, backbone.pos_embed]
    frozen += list(backbone.encoder[:n_layers])
    for item in frozen:
        for p in [item] if isinstance(item, nn.Parameter) else item.parameters():
            p.requires_grad_(False)


def adapt(
    backbone: PatchBackbone,
    windows: np.ndarray,
    *,
    epochs: int = 10,
    lr: float = 3e-4,
    freeze_layers: int = 1,
    mask_ratio: float = 0.4,
    device: str = "cpu",
    level: str = "L1",
    **kwargs: Any,
) -> PretrainResult:
    """L1 adaptation: continue masked pretraining of a copy of ``backbone`` on a new site.

    A lower learning rate than pretraining and frozen lower layers (``freeze_layers``, 0 for
    none) keep what L0 learned while fitting the new site's sensors and roads from a small
    amount of its data. The parent is not modified. The new network's ``lineage`` is the
    parent's lineage plus the parent's id (``name@version`` if it was saved, else
    ``sha256:...`` of its weights), and its ``level`` is ``level``. Other keyword arguments go
    to ``pretrain`` (``val_windows``, ``batch_size``, ``max_seconds``, ``progress``...).
    """
    parent_id = model_id(backbone)
    child = copy.deepcopy(backbone).to("cpu")
    child.level, child.lineage, child.checkpoint_id = level, (*backbone.lineage, parent_id), None
    freeze_lower(child, freeze_layers)
    kwargs.setdefault("desc", f"adapt {level}")
    result = pretrain(
        child, windows, epochs=epochs, lr=lr, mask_ratio=mask_ratio, device=device, **kwargs
    )
    for p in child.parameters():
        p.requires_grad_(True)
    return result
