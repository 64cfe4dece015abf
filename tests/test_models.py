"""The model registry and the shape contract every family keeps."""

import pytest
import torch

from runner.config import CHOICES, ModelConfig
from runner.errors import RunnerError
from runner.models import MODELS, build_model


def test_registry_matches_the_families_configs_accept():
    assert tuple(MODELS) == CHOICES[("model", "family")]


def test_unknown_family_lists_the_known_ones():
    with pytest.raises(RunnerError, match="ae, vae, unet"):
        build_model(ModelConfig(family="gan"), 3, (32, 32))


@pytest.mark.parametrize("family", list(MODELS))
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("output", ["free", "consistent"])
def test_two_outputs_of_the_input_shape(family, channels, output):
    config = ModelConfig(family=family, widths=[4, 8], bottleneck=16, latent_dim=8, output=output)
    model = build_model(config, channels, (16, 16))
    mixture = torch.rand(3, channels, 16, 16)
    output_1, output_2, model_term = model.forward_train(mixture)
    assert output_1.shape == output_2.shape == mixture.shape
    assert (model_term is not None) == (family == "vae")
    if output == "consistent":
        torch.testing.assert_close((output_1 + output_2) / 2, mixture)


def test_seed_configuration_is_expressible():
    model = build_model(ModelConfig(family="unet", widths=[32, 64, 128, 256], bottleneck=512), 3, (32, 32))
    assert model.size_multiple == 16
    assert model.encoder.bottom.body[0].out_channels == 512


def test_unet_takes_other_sizes_but_dense_latents_do_not():
    unet = build_model(ModelConfig(family="unet", widths=[4, 8], bottleneck=16), 3, (16, 16))
    assert unet(torch.rand(1, 3, 24, 40))[0].shape == (1, 3, 24, 40)
    ae = build_model(ModelConfig(family="ae", widths=[4, 8], bottleneck=16), 3, (16, 16))
    assert not ae.dynamic_spatial
    with pytest.raises(RunnerError, match="multiples of 4"):
        build_model(ModelConfig(family="ae", widths=[4, 8], bottleneck=16), 3, (18, 18))


@pytest.mark.parametrize("block,norm", [("residual", "group"), ("plain", "none"), ("residual", "batch")])
def test_blocks_and_norms(block, norm):
    config = ModelConfig(family="unet", widths=[8, 16], bottleneck=32, block=block, norm=norm)
    output_1, _ = build_model(config, 3, (16, 16))(torch.rand(2, 3, 16, 16))
    assert torch.isfinite(output_1).all()


@pytest.mark.parametrize("family", list(MODELS))
def test_shared_decoder_feeds_both_heads_with_fewer_parameters(family):
    config = dict(family=family, widths=[4, 8], bottleneck=16, latent_dim=8, output="consistent")
    separate, shared = (build_model(ModelConfig(**config, decoder=kind), 3, (16, 16)) for kind in ("separate", "shared"))
    assert sum(p.numel() for p in shared.parameters()) < sum(p.numel() for p in separate.parameters())
    output_1, output_2, _ = shared.forward_train(torch.rand(2, 3, 16, 16))
    assert not torch.equal(output_1, output_2)


@pytest.mark.parametrize("family", list(MODELS))
@pytest.mark.parametrize("output", ["free", "consistent"])
def test_mirror_averaging_is_symmetric_and_keeps_consistency(family, output):
    config = ModelConfig(family=family, widths=[4, 8], bottleneck=16, latent_dim=8, output=output, tta=True)
    model = build_model(config, 3, (16, 16)).eval()
    mixture = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        direct, mirrored = model(mixture), model(mixture.flip(-1))
    # The mirror image's separation is the mirrored separation, up to which output is which.
    pairs = [(direct[0], mirrored[0].flip(-1)), (direct[0], mirrored[1].flip(-1))]
    assert any(torch.allclose(x, y, atol=1e-5) for x, y in pairs)
    if output == "consistent":
        torch.testing.assert_close((direct[0] + direct[1]) / 2, mixture)


def test_space_to_depth_unet_runs_at_half_resolution_and_keeps_the_contract():
    config = ModelConfig(family="unet", widths=[8, 16], bottleneck=16, output="consistent", unshuffle=2)
    model = build_model(config, 3, (16, 16))
    assert model.size_multiple == 8 and model.encoder.levels[0].body[0].in_channels == 12
    mixture = torch.rand(2, 3, 24, 40)
    output_1, output_2 = model(mixture)
    assert output_1.shape == output_2.shape == mixture.shape
    torch.testing.assert_close((output_1 + output_2) / 2, mixture)
