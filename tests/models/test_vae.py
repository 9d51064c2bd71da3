import torch


def test_encode_decode_shapes(tiny_model):
    frames = torch.rand(3, 3, 64, 96) * 2 - 1
    z = tiny_model.encode_latents(frames)
    assert z.shape == (3, 4, 8, 12)
    assert tiny_model.decode_latents(z).shape == (3, 3, 64, 96)


def test_vae_is_per_frame(tiny_model):
    # No temporal layers: a batch of frames equals the frames one at a time (perframe_ae is only memory).
    frames = torch.rand(4, 3, 64, 64) * 2 - 1
    z = tiny_model.encode_latents(frames)
    torch.testing.assert_close(z[2:3], tiny_model.encode_latents(frames[2:3]), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        tiny_model.decode_latents(z)[1:2], tiny_model.decode_latents(z[1:2]), rtol=1e-5, atol=1e-5
    )


def test_latents_are_the_scaled_posterior_mean(tiny_model):
    frames = torch.rand(1, 3, 64, 64) * 2 - 1
    vae = tiny_model.vae
    moments = vae.quant_conv(vae.encoder(frames))
    torch.testing.assert_close(tiny_model.encode_latents(frames), moments[:, :4] * 0.18215)
