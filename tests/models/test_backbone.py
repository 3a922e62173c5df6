"""The L0 backbone: shapes, configs, masked pretraining and L1 adaptation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from models import BackboneConfig, ConfigError, PatchBackbone, adapt, model_id
from models.backbone import random_patch_mask
from tests.models.conftest import TINY, sine_windows


def test_it_embeds_a_batch_of_windows_into_tokens_and_a_pooled_vector():
    backbone = PatchBackbone(TINY).eval()
    out = backbone(torch.from_numpy(sine_windows(5)))
    p, d, c = TINY.n_patches, TINY.d_model, TINY.n_channels
    assert out.tokens.shape == (5, c, p, d)
    assert out.pooled.shape == (5, d)
    assert out.recon.shape == out.patches.shape == (5, c, p, TINY.patch_len)
    assert out.mean.shape == out.std.shape == (5, c)


def test_it_returns_the_normalisation_stats_so_heads_can_denormalise():
    backbone = PatchBackbone(TINY).eval()
    x = torch.from_numpy(sine_windows(3))
    out = backbone(x)
    assert torch.allclose(out.mean, x.mean(dim=-1), atol=1e-4)
    denormalised = out.patches * out.std[..., None, None] + out.mean[..., None, None]
    assert torch.allclose(denormalised.flatten(2), x, atol=1e-4)  # stride == patch_len here


def test_it_scores_every_channel_with_a_masked_reconstruction_error():
    errors = PatchBackbone(TINY).eval().masked_error(torch.from_numpy(sine_windows(6)))
    assert errors.shape == (6, TINY.n_channels)
    assert bool((errors > 0).all())


def test_it_works_without_channel_mixing_and_with_overlapping_patches():
    config = BackboneConfig(
        n_channels=3,
        window=24,
        patch_len=8,
        stride=4,
        d_model=16,
        n_heads=2,
        n_layers=1,
        d_ff=16,
        channel_mixing=False,
    )
    out = PatchBackbone(config)(torch.randn(2, 3, 24))
    assert out.tokens.shape == (2, 3, 5, 16)


def test_it_refuses_windows_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"expected windows \[B, 4, 32\]"):
        PatchBackbone(TINY)(torch.randn(2, 3, 32))


def test_configs_round_trip_through_json_and_refuse_impossible_values():
    assert BackboneConfig.from_dict(TINY.to_dict()) == TINY
    with pytest.raises(ConfigError, match="multiple of stride"):
        BackboneConfig(window=30, patch_len=8, stride=8)
    with pytest.raises(ConfigError, match="unknown fields"):
        BackboneConfig.from_dict({**TINY.to_dict(), "surprise": 1})


def test_a_random_mask_hides_some_but_never_all_patches_of_each_channel():
    mask = random_patch_mask(64, TINY, 0.4, torch.Generator().manual_seed(0))
    hidden = mask.sum(dim=-1)
    assert bool((hidden >= 1).all()) and bool((hidden < TINY.n_patches).all())


def test_a_forecast_mask_always_hides_the_last_patch_and_never_all():
    mask = random_patch_mask(64, TINY, 0.4, torch.Generator().manual_seed(0), forecast=True)
    assert bool(mask[..., -1].all())
    assert bool((mask.sum(dim=-1) < TINY.n_patches).all())


def test_the_last_patch_pool_reads_the_window_s_most_recent_seconds_only():
    # The pooled embedding is the mean over channels of the last patch's tokens.
    last = PatchBackbone(dataclasses.replace(TINY, pool="last", channel_mixing=False)).eval()
    x = torch.from_numpy(sine_windows(3))
    with torch.no_grad():
        pooled = last(x).pooled
        h = last(x).tokens
    expected = last.pool_norm(h[:, :, -1].mean(dim=1))
    torch.testing.assert_close(pooled, expected)
    with pytest.raises(ConfigError, match="pool"):
        dataclasses.replace(TINY, pool="max")


def test_masked_pretraining_lowers_the_reconstruction_loss(pretrained):
    losses = [row["val_loss"] for row in pretrained.history]
    assert pretrained.best_val_loss < 0.9 * losses[0]
    assert pretrained.device == "cpu"
    assert not pretrained.backbone.training


def test_adaptation_makes_an_l1_child_with_lineage_and_leaves_the_parent_alone(backbone):
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    result = adapt(backbone, sine_windows(96, seed=9), epochs=2, batch_size=32, progress=False)
    child = result.backbone
    assert child is not backbone
    assert child.level == "L1"
    assert child.lineage == (*backbone.lineage, model_id(backbone))
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())
    assert len(result.history) == 2
    assert all(p.requires_grad for p in child.parameters())


def test_adaptation_keeps_the_frozen_lower_layers_fixed(backbone):
    child = adapt(
        backbone, sine_windows(64, seed=3), epochs=1, freeze_layers=1, progress=False
    ).backbone
    assert torch.equal(child.patch_embed.weight, backbone.patch_embed.weight)
    assert torch.equal(child.encoder[0].ff[0].weight, backbone.encoder[0].ff[0].weight)
    assert not torch.equal(child.encoder[1].ff[0].weight, backbone.encoder[1].ff[0].weight)


def test_pretraining_accepts_an_explicit_validation_set_and_a_time_budget():
    backbone = PatchBackbone(TINY)
    windows = sine_windows(64, seed=4)
    from models import pretrain

    result = pretrain(
        backbone,
        windows,
        val_windows=sine_windows(16, seed=5),
        epochs=50,
        max_seconds=1e-9,  # spent by any epoch, however fast the machine (0.01 s was not, in CI)
        progress=False,
    )
    assert len(result.history) == 1  # the budget ends it after the first epoch
    assert np.isfinite(result.history[0]["val_loss"])
