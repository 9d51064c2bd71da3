"""The joint CLIP space against open_clip's own model built from the same tensors, and its weights against the
checkpoint and random_model."""

import numpy as np
import pytest
import torch
from conftest import fp32_tolerance

import dcrt
from dcrt.director.clip_space import load_clip_space
from dcrt.errors import UsageError
from dcrt.models.clip import clip_pixels
from dcrt.weights import Weights

PROMPTS = ["a boat sailing on a lake", "", "fireworks", "word " * 100]  # short, empty, truncated at 77 tokens
# The same fp32 computation, possibly in another order (SDPA vs open_clip's attention, a truncated vs a 77-position
# causal sequence, other thread splits): one rounding per op along the tiny towers' chains of at most ~100 dependent
# ops (3 text or 2 image blocks of ~30, the embeddings, norms and projections), on unit vectors. Measured: texts
# bit-equal, images 1.2e-7.
TOLERANCE = fp32_tolerance(100)


@pytest.fixture(scope="module")
def space():
    return load_clip_space(dcrt.get_preset("tiny"), Weights("tiny"))


def _open_clip_twin(space):
    open_clip = pytest.importorskip("open_clip")
    text, image = space.model.text.cfg, space.model.image.cfg
    model = open_clip.CLIP(
        embed_dim=text.projection_dim,
        vision_cfg=dict(
            image_size=image.image_size,
            layers=image.layers,
            width=image.width,
            head_width=image.width // image.heads,
            patch_size=image.patch_size,
            mlp_ratio=image.mlp_ratio,
        ),
        text_cfg=dict(
            context_length=text.context_length,
            vocab_size=text.vocab_size,
            width=text.width,
            heads=text.heads,
            layers=text.layers,
            mlp_ratio=text.mlp_ratio,
        ),
    )
    model.load_state_dict(space.model.text.state_dict() | space.model.image.state_dict(), strict=True)
    return open_clip, model.eval()


def test_matches_open_clip(space):
    open_clip, twin = _open_clip_twin(space)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(3, 40, 72, 3), dtype=np.uint8)
    with torch.no_grad():
        want_text = twin.encode_text(open_clip.tokenize(PROMPTS), normalize=True).numpy()
        image = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1
        want_image = twin.encode_image(clip_pixels(image, space.model.image.cfg), normalize=True).numpy()
    np.testing.assert_allclose(space.embed_texts(PROMPTS), want_text, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(space.embed_images(frames), want_image, rtol=0, atol=TOLERANCE)
    assert space.logit_scale == pytest.approx(float(twin.logit_scale.detach().exp()))
    # Different prompts and images land apart: the comparison is not of constants.
    assert np.abs(want_text[0] - want_text[2]).max() > 1e-2 and np.abs(want_image[0] - want_image[1]).max() > 1e-2


def test_rows_are_unit_vectors_and_batching_changes_nothing(space):
    texts = space.embed_texts(PROMPTS)
    assert texts.dtype == np.float32 and texts.shape == (4, 32)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-6)
    one_by_one = np.concatenate([space.embed_texts([p]) for p in PROMPTS])
    np.testing.assert_allclose(texts, one_by_one, rtol=0, atol=TOLERANCE)


def test_random_weights_are_the_checkpoints(space, tiny_model, tiny_ckpt):
    """--random-weights describes with the CLIP random_model conditions on; a saved checkpoint loads the same."""
    loaded = load_clip_space(tiny_model.preset, Weights("tiny", tiny_ckpt))
    for ours, theirs in zip(space.model.state_dict().values(), loaded.model.state_dict().values()):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    conditioning = tiny_model.text_encoder.state_dict()
    torch.testing.assert_close(
        space.model.text.state_dict()["token_embedding.weight"], conditioning["token_embedding.weight"]
    )


def test_checkpoint_without_clip_is_one_line(tmp_path):
    bad = tmp_path / "other.safetensors"
    from safetensors.torch import save_file

    save_file({"something.else": torch.zeros(2)}, bad)
    with pytest.raises(dcrt.errors.CheckpointError, match="missing: cond_stage_model.model"):
        load_clip_space(dcrt.get_preset("tiny"), Weights("tiny", bad))


def test_refusals(space):
    with pytest.raises(UsageError, match="uint8"):
        space.embed_images(np.zeros((1, 8, 8, 3), np.float32))
    with pytest.raises(UsageError, match="tiny-svd does not support describe"):
        load_clip_space(dcrt.get_preset("tiny-svd"), Weights("tiny-svd"))


def test_text_memo_embeds_each_text_once(space):
    from dcrt.director.clip_space import TextMemo

    calls = []

    class Counting:
        logit_scale = space.logit_scale

        def embed_images(self, frames):
            return space.embed_images(frames)

        def embed_texts(self, prompts):
            calls.append(list(prompts))
            return space.embed_texts(prompts)

    memo = TextMemo(Counting())
    first = memo.embed_texts(PROMPTS)
    again = memo.embed_texts([PROMPTS[2], "new", PROMPTS[0]])
    assert calls == [PROMPTS, ["new"]]
    np.testing.assert_array_equal(first, space.embed_texts(PROMPTS))  # the same batch: the same numbers
    np.testing.assert_array_equal(again[[0, 2]], first[[2, 0]])


@pytest.mark.parametrize("preset", ["256", "512", "1024"])
def test_every_tensor_read_is_in_the_released_checkpoint(preset):
    """The full-size joint space reads tensors that the released files hold, at their shapes: the text tower's last
    block, `text_projection`, `logit_scale` and the visual `ln_post` / `proj` among them (built on meta: free)."""
    import json

    from conftest import shared_dir

    from dcrt.director.clip_space import JointClip

    shared = shared_dir()
    if shared is None:
        pytest.skip("needs the released checkpoints' key lists (checkpoint_keys/): set DCRT_SHARED_DIR")
    released = json.loads((shared / "checkpoint_keys" / f"{preset}.json").read_text())
    available = {k["key"]: tuple(k["shape"]) for k in released["keys"]}
    p = dcrt.get_preset(preset)
    with torch.device("meta"):
        wanted = JointClip(p.text, p.image).original_shapes()
    assert {k: available.get(k) for k in wanted} == wanted
    unused = {k["key"] for k in released["keys"] if not k["used_at_inference"]}
    assert {"cond_stage_model.model.text_projection", "embedder.model.visual.proj"} <= unused & set(wanted)
    assert f"cond_stage_model.model.transformer.resblocks.{p.text.layers - 1}.attn.in_proj_weight" in wanted
