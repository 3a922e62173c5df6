"""Training L2 heads: ``train_head`` for any head, ``fit_head`` for any series given as arrays.

The backbone is frozen by default: its outputs for every window are computed once and the head
trains on that cache, which takes seconds on a CPU. ``fine_tune_last_layer=True`` also trains
the backbone's last encoder layer, channel mixer and output norms (on a copy: the parent
backbone is never modified), at a tenth of the head's learning rate.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from models._loop import Budget, EarlyStopper, as_tensor, batches, split_indices
from models.backbone import PatchBackbone
from models.config import HEAD_CONFIGS, HeadConfig
from models.devices import resolve_device
from models.heads import Head, HeadInputs, TaskModel, build_head, head_inputs
from models.weights import data_hash, model_id


@dataclass
class TrainedHead:
    """A trained head with the backbone it reads, its history and validation metrics.

    ``backbone`` is the caller's backbone, or its fine-tuned copy (``fine_tuned``).
    ``history`` has one row per epoch: ``epoch``, ``train_loss``, ``val_loss``, ``seconds`` and
    the head's metrics on the validation split prefixed ``val_``. ``metrics`` are those of the
    kept (best validation loss) epoch, without the prefix.
    """

    backbone: PatchBackbone
    head: Head
    history: list[dict[str, float]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    data_hash: str = ""
    seconds: float = 0.0
    device: str = "cpu"
    fine_tuned: bool = False

    @property
    def model(self) -> TaskModel:
        return TaskModel(self.backbone, self.head)

    def predict(
        self, windows: np.ndarray, features: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Outputs for ``windows`` [N, C, L] (and ``features`` [N, F]) as numpy arrays."""
        return self.model.predict(windows, features)


@dataclass
class _Split:
    windows: np.ndarray
    targets: Tensor | None
    features: np.ndarray | None


def train_head(
    backbone: PatchBackbone,
    head: Head,
    windows: np.ndarray,
    targets: np.ndarray | None = None,
    features: np.ndarray | None = None,
    *,
    val: tuple[np.ndarray, np.ndarray | None, np.ndarray | None] | None = None,
    val_fraction: float = 0.2,
    epochs: int = 60,
    lr: float = 2e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 128,
    patience: int = 8,
    fine_tune_last_layer: bool = False,
    device: str = "cpu",
    seed: int = 0,
    max_seconds: float | None = None,
    progress: bool = True,
) -> TrainedHead:
    """Train ``head`` on ``backbone``'s view of ``windows`` [N, C, L] (raw units).

    ``targets``: per-head (class names or indices for fault/classification, seconds [N] for
    ETA, [N, H, 2] metres for trajectory, tonnes [N] for payload, [N] or [N, T] for regression,
    None for anomaly). ``features`` [N, F]: the head's extra features in raw units.
    ``val`` = (windows, targets, features) of an explicit validation set (split by truck or by
    time for honest numbers), else a random ``val_fraction`` of the rows. Early stopping keeps
    the best validation-loss epoch. Unsupervised heads (anomaly) are calibrated on all of
    ``windows`` (which must be normal operation) and have no epochs.
    """
    torch.manual_seed(seed)
    device = resolve_device(device)
    _check_arrays(backbone, head, windows, features, targets)
    encoded = None if targets is None else head.encode_targets(targets)
    if head.trainable and encoded is None:
        raise ValueError(f"a {head.config.kind} head needs targets")
    bb = _fine_tune_copy(backbone) if fine_tune_last_layer else backbone
    bb.to(device).eval()
    head.to(device)
    total = Budget(None)  # wall time of the whole call, caching included (result.seconds)
    result = TrainedHead(
        bb,
        head,
        data_hash=data_hash(windows, targets, features),
        device=device,
        fine_tuned=fine_tune_last_layer,
    )
    if not head.trainable:
        return _calibrate(result, windows, features, encoded, total)
    train, valid = _splits(windows, encoded, features, val, head, val_fraction, seed)
    fitted_on = _cached_inputs(bb, head, train, device)
    head.fit(fitted_on, _on(train.targets, device))
    # Fine-tuning changes the backbone every step, so its outputs are recomputed per batch.
    cache = None if fine_tune_last_layer else fitted_on
    loop = _Loop(result, train, valid, cache, lr, weight_decay, batch_size, seed, max_seconds)
    loop.run(epochs, patience, progress)
    result.seconds = total.elapsed
    return result


def _calibrate(
    result: TrainedHead,
    windows: np.ndarray,
    features: np.ndarray | None,
    targets: Tensor | None,
    budget: Budget,
) -> TrainedHead:
    inputs = _cached_inputs(
        result.backbone, result.head, _Split(windows, targets, features), result.device
    )
    result.head.fit(inputs, None if targets is None else targets.to(result.device))
    result.head.eval()
    with torch.no_grad():
        result.metrics = result.head.calibration_metrics(result.head(inputs))
    result.seconds = budget.elapsed
    return result


class _Loop:
    """The epoch loop of ``train_head`` (state shared by its small steps).

    ``max_seconds`` bounds the optimisation, counted from the first step: the backbone's one
    pass over the training and validation windows (the cache) is data preparation, and it
    grows with the data set and the machine's load. Counted inside the budget, on a big set
    or a loaded machine it spent the whole budget before any step and the head trained on
    a single batch (bench models at 635e7e7: 13 s of caching against 12 s per head, payload
    MAE 46 % of capacity, the mean predictor's error). The first epoch always completes, so
    a head sees every training window at least once whatever the load.
    """

    def __init__(
        self,
        result: TrainedHead,
        train: _Split,
        valid: _Split,
        cache: HeadInputs | None,
        lr: float,
        weight_decay: float,
        batch_size: int,
        seed: int,
        max_seconds: float | None,
    ) -> None:
        self.r, self.train, self.valid, self.cache = result, train, valid, cache
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)
        groups: list[dict[str, Any]] = [{"params": list(result.head.parameters()), "lr": lr}]
        tuned = (
            [p for p in result.backbone.parameters() if p.requires_grad]
            if result.fine_tuned
            else []
        )
        if tuned:
            groups.append({"params": tuned, "lr": lr * 0.1})
        self.params = [p for g in groups for p in g["params"]]
        self.optimiser = torch.optim.AdamW(groups, weight_decay=weight_decay)
        self.stopper = EarlyStopper(result.model if result.fine_tuned else result.head, 0)
        self.val_inputs = (
            None
            if result.fine_tuned
            else _cached_inputs(result.backbone, result.head, valid, result.device)
        )
        self.epochs_done = 0
        self.budget = Budget(max_seconds)  # from here: the inputs are ready

    def run(self, epochs: int, patience: int, progress: bool) -> None:
        self.stopper.patience = patience
        name = self.r.head.config.kind
        bar = tqdm(
            range(epochs),
            desc=f"train {name} head",
            unit="epoch",
            disable=not progress,
            leave=False,
        )
        best_metrics: dict[str, float] = {}
        for epoch in bar:
            train_loss = self.epoch()
            val_loss, metrics = self.validate()
            self.r.history.append(
                {
                    "epoch": float(epoch),
                    "train_loss": train_loss,
                    "val_loss": val_loss,
                    "seconds": self.budget.elapsed,
                    **{f"val_{k}": v for k, v in metrics.items()},
                }
            )
            bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}")
            if val_loss < self.stopper.best - 1e-7:
                best_metrics = metrics
            if self.stopper.update(epoch, val_loss) or self.budget.spent():
                break
        self.stopper.restore()
        self.r.head.eval()
        self.r.metrics = best_metrics

    def inputs(self, split: _Split, idx: np.ndarray | slice, grad: bool) -> HeadInputs:
        if self.cache is not None and split is self.train:
            rows = (
                torch.as_tensor(idx, device=self.r.device) if isinstance(idx, np.ndarray) else idx
            )
            return self.cache.rows(rows)
        device = self.r.device
        w = as_tensor(split.windows[idx], device)
        f = None if split.features is None else as_tensor(split.features[idx], device)
        with torch.set_grad_enabled(grad):
            return head_inputs(self.r.backbone, w, f, self.r.head.config.use_recon_error)

    def epoch(self) -> float:
        self.r.head.train()
        losses: list[float] = []
        targets = _on(self.train.targets, self.r.device)
        for idx in batches(len(self.train.windows), self.batch_size, self.rng):
            if self.epochs_done and self.budget.spent():
                break  # never inside the first epoch (see the class)
            out = self.r.head(self.inputs(self.train, idx, grad=True))
            loss = self.r.head.loss(out, targets[torch.as_tensor(idx, device=self.r.device)])
            self.optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.params, 1.0)
            self.optimiser.step()
            losses.append(loss.item())
        self.epochs_done += 1
        return float(np.mean(losses))

    @torch.no_grad()
    def validate(self) -> tuple[float, dict[str, float]]:
        self.r.head.eval()
        inputs = (
            self.val_inputs
            if self.val_inputs is not None
            else self.inputs(self.valid, slice(None), grad=False)
        )
        targets = _on(self.valid.targets, self.r.device)
        out = self.r.head(inputs)
        return self.r.head.loss(out, targets).item(), self.r.head.metrics(out, targets)


def _on(t: Tensor | None, device: str) -> Tensor:
    if t is None:
        raise ValueError("targets are required here")
    return t.to(device)


def _splits(
    windows: np.ndarray,
    targets: Tensor | None,
    features: np.ndarray | None,
    val: tuple[np.ndarray, np.ndarray | None, np.ndarray | None] | None,
    head: Head,
    val_fraction: float,
    seed: int,
) -> tuple[_Split, _Split]:
    if val is not None:
        vw, vt, vf = val
        return _Split(windows, targets, features), _Split(
            vw, None if vt is None else head.encode_targets(vt), vf
        )
    tr, va = split_indices(len(windows), val_fraction, seed)

    def pick(i: np.ndarray) -> _Split:
        return _Split(
            windows[i],
            None if targets is None else targets[torch.as_tensor(i)],
            None if features is None else features[i],
        )

    return pick(tr), pick(va)


@torch.no_grad()
def _cached_inputs(
    backbone: PatchBackbone, head: Head, split: _Split, device: str, chunk: int = 256
) -> HeadInputs:
    """The backbone's outputs for every window of ``split``, computed once in chunks."""
    parts = []
    for start in range(0, len(split.windows), chunk):
        w = as_tensor(split.windows[start : start + chunk], device)
        f = (
            None
            if split.features is None
            else as_tensor(split.features[start : start + chunk], device)
        )
        parts.append(head_inputs(backbone, w, f, head.config.use_recon_error))
    return HeadInputs.concat(parts)


def _fine_tune_copy(backbone: PatchBackbone) -> PatchBackbone:
    """A copy whose last encoder layer, mixer and output norms train; the rest stays frozen."""
    parent_id = model_id(backbone)
    child = copy.deepcopy(backbone).to("cpu")
    child.lineage, child.checkpoint_id = (*backbone.lineage, parent_id), None
    child.level = f"{backbone.level}-ft"
    for p in child.parameters():
        p.requires_grad_(False)
    free = [child.encoder[-1], child.norm, child.pool_norm] + (
        [child.mixer] if child.mixer is not None else []
    )
    for module in free:
        for p in module.parameters():
            p.requires_grad_(True)
    return child


def _check_arrays(
    backbone: PatchBackbone,
    head: Head,
    windows: np.ndarray,
    features: np.ndarray | None,
    targets: np.ndarray | None,
) -> None:
    c = backbone.config
    if head.backbone_config.interface() != c.interface():
        raise ValueError(
            "the head was built for a backbone with another interface "
            f"({head.backbone_config.interface()} != {c.interface()})"
        )
    if np.ndim(windows) != 3 or tuple(np.shape(windows)[1:]) != (c.n_channels, c.window):
        raise ValueError(
            f"windows must be [N, {c.n_channels}, {c.window}], got {np.shape(windows)}"
        )
    n, n_feat = len(windows), head.config.n_features
    if n_feat and (features is None or np.shape(features) != (n, n_feat)):
        raise ValueError(
            f"this head needs features [N={n}, {n_feat}], got {None if features is None else np.shape(features)}"
        )
    if not n_feat and features is not None:
        raise ValueError("features given to a head configured with n_features=0")
    if targets is not None and len(targets) != n:
        raise ValueError(f"{len(targets)} targets for {n} windows")


def default_head_config(kind: str, y: np.ndarray | None, n_features: int) -> HeadConfig:
    """The config ``fit_head`` uses for ``kind`` when none is given."""
    if kind not in HEAD_CONFIGS:
        raise ValueError(f"unknown head kind {kind!r}; known: {sorted(HEAD_CONFIGS)}")
    base = HEAD_CONFIGS[kind]()
    extra: dict[str, Any] = {"n_features": n_features}
    if n_features != base.n_features:
        extra["feature_names"] = ()
    if kind == "regression" and y is not None:
        extra["n_outputs"] = 1 if np.ndim(y) == 1 else int(np.shape(y)[1])
    if kind == "classification" and y is not None:
        extra["classes"] = tuple(str(v) for v in np.unique(y))
    return dataclasses.replace(base, **extra)


def fit_head(
    backbone: PatchBackbone,
    kind: str,
    X: np.ndarray,  # capital X: the conventional name of a design matrix
    y: np.ndarray | None = None,
    extra_features: np.ndarray | None = None,
    *,
    config: HeadConfig | None = None,
    **train_kwargs: Any,
) -> TrainedHead:
    """Add an L2 head on any multivariate series given as arrays, without touching the backbone.

    ``kind``: ``"regression"`` (y float [N] or [N, T]), ``"classification"`` (y labels of any
    type [N]; classes are the sorted unique labels, kept as strings in the config),
    ``"anomaly"`` (y None; X must be normal operation only: the head learns the normal
    distribution of per-channel reconstruction error, level and spread and flags windows above
    its ``quantile``), or one of the mining heads ``"fault"``, ``"eta"``, ``"trajectory"``,
    ``"payload"``. ``X`` is float [N, C, L] in raw units with the backbone's C and L;
    ``extra_features`` [N, F] optional per-window values beside the series. ``config``
    overrides the default head config; ``train_kwargs`` go to ``train_head`` (``epochs``,
    ``val``, ``device``, ``fine_tune_last_layer``, ``max_seconds``, ``progress``...).

    Example: an anomaly head for a new sensor set, from one shift of normal running::

        from models import BackboneConfig, PatchBackbone, pretrain, fit_head, save_head

        backbone = PatchBackbone(BackboneConfig(n_channels=6, window=64))
        pretrain(backbone, normal_windows, epochs=20)          # float32 [N, 6, 64]
        detector = fit_head(backbone, "anomaly", normal_windows)
        out = detector.predict(live_windows)
        out["anomalous"]      # bool [M]: above the normal segment's 99.5th percentile
        out["top_channel"]    # int [M]: index into backbone.config.names
        out["channel_scores"] # float [M, 6]: robust z-score of each channel
        save_head(detector, "var/models", name="crusher-anomaly", version="1")

    and a regression head with extra features::

        eta = fit_head(backbone, "regression", windows, seconds_left, route_features)
        eta.metrics["mae"], eta.predict(windows, route_features)["value"]
    """
    n_features = 0 if extra_features is None else int(np.shape(extra_features)[1])
    cfg = config or default_head_config(kind, y, n_features)
    if cfg.kind != kind:
        raise ValueError(f"config is for a {cfg.kind!r} head, not {kind!r}")
    if kind == "anomaly" and y is not None:
        raise ValueError("an anomaly head learns from normal windows alone: pass y=None")
    targets = y
    if kind == "classification" and y is not None:
        # Classes are kept by name, so labels (of any type) are matched as strings throughout.
        targets = np.asarray(y).astype(str)
        if train_kwargs.get("val") is not None:
            vw, vy, vf = train_kwargs["val"]
            train_kwargs["val"] = (vw, None if vy is None else np.asarray(vy).astype(str), vf)
    head = build_head(cfg, backbone.config)
    return train_head(backbone, head, X, targets, extra_features, **train_kwargs)
