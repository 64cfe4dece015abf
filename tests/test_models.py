"""The model registry and the shape contract every family keeps."""

import pytest
import torch

from runner.config import ModelConfig, build_section
from runner.errors import RunnerError
from runner.models import MODELS, build_model
from runner.models.blocks import BLOCKS, NORMS, OUTPUTS, make_block, norm_layer


@pytest.mark.parametrize("key, registry", [("family", MODELS), ("block", BLOCKS), ("norm", NORMS), ("output", OUTPUTS)])
def test_config_accepts_exactly_the_registered_names(key, registry):
    for name in registry:
        assert getattr(build_section("model", {key: name}), key) == name
    with pytest.raises(RunnerError, match=f"model.{key} is 'nope'; valid values: {', '.join(registry)}"):
        build_section("model", {key: "nope"})


def test_unknown_family_lists_the_known_ones():
    config = ModelConfig()
    object.__setattr__(config, "family", "gan")  # past the config's own checks, as a hand-edited checkpoint could be
    with pytest.raises(RunnerError, match="ae, vae, unet"):
        build_model(config, 3, (32, 32))


def test_dispatchers_name_the_valid_names_instead_of_a_silent_default():
    with pytest.raises(RunnerError, match="unknown norm 'layer'; valid: batch, group, none"):
        norm_layer("layer", 8)
    with pytest.raises(RunnerError, match="unknown block 'dense'; valid: plain, residual"):
        make_block("dense", 3, 8, "batch")
    config = ModelConfig(family="unet", widths=[4], bottleneck=8)
    object.__setattr__(config, "output", "mixed")  # past the config's own checks
    with pytest.raises(RunnerError, match="unknown output 'mixed'; valid: free, consistent"):
        build_model(config, 3, (16, 16))


# The state-dict keys and shapes of a VAE built before the latent became a module passed in
# (when VAESeparator overrode a hook of the autoencoder's __init__): old checkpoints must load.
OLD_VAE_STATE = {
    'encoder.levels.0.body.0.weight': (4, 1, 3, 3), 'encoder.levels.0.body.0.bias': (4,),
    'encoder.levels.0.body.3.weight': (4, 4, 3, 3), 'encoder.levels.0.body.3.bias': (4,),
    'encoder.bottom.body.0.weight': (8, 4, 3, 3), 'encoder.bottom.body.0.bias': (8,),
    'encoder.bottom.body.3.weight': (8, 8, 3, 3), 'encoder.bottom.body.3.bias': (8,),
    'to_latent.weight': (4, 32), 'to_latent.bias': (4,), 'from_latent.0.weight': (32, 2), 'from_latent.0.bias': (32,),
    'decoder_1.ups.0.weight': (8, 4, 2, 2), 'decoder_1.ups.0.bias': (4,),
    'decoder_1.levels.0.body.0.weight': (4, 4, 3, 3), 'decoder_1.levels.0.body.0.bias': (4,),
    'decoder_1.levels.0.body.3.weight': (4, 4, 3, 3), 'decoder_1.levels.0.body.3.bias': (4,),
    'decoder_2.ups.0.weight': (8, 4, 2, 2), 'decoder_2.ups.0.bias': (4,),
    'decoder_2.levels.0.body.0.weight': (4, 4, 3, 3), 'decoder_2.levels.0.body.0.bias': (4,),
    'decoder_2.levels.0.body.3.weight': (4, 4, 3, 3), 'decoder_2.levels.0.body.3.bias': (4,),
    'heads.head_1.weight': (1, 4, 1, 1), 'heads.head_1.bias': (1,), 'heads.head_2.weight': (1, 4, 1, 1), 'heads.head_2.bias': (1,),
}


@pytest.mark.parametrize("family, latent_rows", [("vae", 4), ("ae", 2)])
def test_autoencoders_keep_the_state_dict_of_old_checkpoints(family, latent_rows):
    config = ModelConfig(family=family, widths=[4], bottleneck=8, latent_dim=2, norm="none")
    model = build_model(config, 1, (4, 4))
    expected = {**OLD_VAE_STATE, "to_latent.weight": (latent_rows, 32), "to_latent.bias": (latent_rows,)}
    assert {key: tuple(value.shape) for key, value in model.state_dict().items()} == expected


def test_vae_infers_from_the_mean_and_trains_on_a_sample_with_its_kl():
    model = build_model(ModelConfig(family="vae", widths=[4], bottleneck=8, latent_dim=2, norm="none"), 1, (4, 4))
    mixture = torch.rand(3, 1, 4, 4)
    mean = model.encoder_output(mixture)[:, :2]
    torch.testing.assert_close(model.encode(mixture), mean)
    *_, kl = model.forward_train(mixture)
    assert kl.ndim == 0 and kl > 0


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


@pytest.mark.parametrize("unshuffle, fragment", [(1, "3 levels need"), (2, "3 levels after 2x2 space-to-depth need")])
def test_a_unet_refuses_to_train_on_sides_its_levels_cannot_halve(unshuffle, fragment):
    """Fashion-MNIST's 28 pixels halve to 14 and 7, then 3: the skip connection of that level cannot match."""
    config = ModelConfig(family="unet", widths=[4, 8, 16], bottleneck=16, unshuffle=unshuffle)
    with pytest.raises(RunnerError, match=f"{fragment} images whose sides are multiples of {8 * unshuffle}, got 28x28"):
        build_model(config, 1, (28, 28))
    assert build_model(ModelConfig(family="unet", widths=[4, 8], bottleneck=16), 1, (28, 28)).size_multiple == 4


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
