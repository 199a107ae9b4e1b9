"genaibook.audio: numeric checks of the Riffusion inverse against librosa and a round trip, plus bad inputs."

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import wavfile

from genaibook.audio import (
    RIFFUSION,
    generate_long_audio,
    get_speaker_embeddings,
    griffin_lim,
    image_from_spectrogram,
    image_from_waveform,
    mel_filterbank,
    mel_to_linear,
    riffusion_stft_params,
    spectrogram_from_image,
    wav_bytes_from_spectrogram_image,
    waveform_from_spectrogram,
)


def test_filterbank_matches_librosa_htk():
    librosa = pytest.importorskip("librosa")
    ours = mel_filterbank(n_freqs=1025, n_mels=128, sample_rate=22_050, f_max=8_000).numpy()
    ref = librosa.filters.mel(sr=22_050, n_fft=2048, n_mels=128, fmin=0, fmax=8_000, htk=True, norm=None).T
    np.testing.assert_allclose(ours, ref, atol=5e-5)  # librosa builds its filters in float32


def test_image_encoding_round_trip():
    S = np.random.default_rng(1).uniform(0, 50**4, size=(16, 9))
    img = image_from_spectrogram(S)
    assert img.size == (9, 16) and img.mode == "RGB"
    np.testing.assert_allclose(spectrogram_from_image(img) ** 0.25, S**0.25, atol=50 / 255 + 1e-6)
    # low frequencies are drawn at the bottom of the image
    loud_low = np.zeros((16, 1))
    loud_low[0] = 50**4
    assert np.asarray(image_from_spectrogram(loud_low))[-1, 0, 0] == 0


def test_mel_inverse_is_nonnegative_and_consistent():
    fb = mel_filterbank(257, 40, 16_000)
    for seed in range(20):
        torch.manual_seed(seed)
        mel = fb.T @ torch.rand(257, 5)
        lin = mel_to_linear(mel, fb)
        assert (lin >= 0).all()
        # exact before clipping; clipping negative amplitudes costs a little (at most 0.25% over 200 seeds)
        assert ((fb.T @ lin - mel).norm() / mel.norm()).item() < 0.01


def test_griffin_lim_converges():
    t = torch.arange(8000) / 8000
    x = torch.sin(2 * torch.pi * 300 * t) + 0.5 * torch.sin(2 * torch.pi * 1200 * t)
    w = torch.hann_window(256)
    stft = lambda y: torch.stft(y, 512, 64, 256, w, pad_mode="constant", return_complex=True)  # as griffin_lim pads
    mag = stft(x).abs()

    def error(n):
        y = griffin_lim(mag, 512, 64, 256, n_iter=n)
        return ((stft(y).abs() - mag).norm() / mag.norm()).item()

    e1, e32 = error(1), error(32)
    assert e32 < 0.1 < e1 and e32 < e1 / 3


def test_griffin_lim_shape_error():
    with pytest.raises(ValueError, match="n_fft=512 needs 257"):
        griffin_lim(torch.rand(100, 4), 512, 64, 256)


@pytest.mark.parametrize("hz", [440, 2000])
def test_riffusion_round_trip_keeps_pitch_and_loudness(hz):
    sr = RIFFUSION["sample_rate"]
    tone = 1000 * np.sin(2 * np.pi * hz * np.arange(sr // 2) / sr)  # half a second, below the saturation level
    rate, rebuilt = wavfile.read(wav_bytes_from_spectrogram_image(image_from_waveform(tone)))
    assert rate == sr and rebuilt.dtype == np.int16
    peak = np.fft.rfftfreq(len(rebuilt), 1 / rate)[np.abs(np.fft.rfft(rebuilt)).argmax()]
    assert abs(peak - hz) < 0.01 * hz + 2
    rms = np.sqrt(np.mean(rebuilt.astype(float) ** 2))
    assert abs(rms - 707) < 0.1 * 707


def test_loud_images_clip_instead_of_wrapping():
    black = Image.new("RGB", (20, 512), "black")  # every band at max volume: beyond the 16-bit range
    _, samples = wavfile.read(wav_bytes_from_spectrogram_image(black))
    floats = waveform_from_spectrogram(
        spectrogram_from_image(black), **riffusion_stft_params(), sample_rate=44_100, n_mels=512
    )
    assert np.abs(floats).max() > 32767  # the reconstruction does overflow 16 bits...
    np.testing.assert_array_equal(
        samples, np.clip(floats, -32768, 32767).astype(np.int16)
    )  # ...and is clipped, not wrapped


def test_bad_spectrogram_inputs():
    with pytest.raises(TypeError, match="PIL image"):
        spectrogram_from_image(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="positive"):
        spectrogram_from_image(Image.new("RGB", (2, 2)), max_volume=0)
    with pytest.raises(ValueError, match=r"n_mels=512, frames"):
        waveform_from_spectrogram(np.zeros((10, 5)), 1024, 256, 1024, 22_050, n_mels=512)


def test_hub_helpers_work_offline_on_the_stand_ins():
    # openslr/librispeech_asr is a small real subset (5 LibriVox clips, ~25 s): the helper returns what there is
    long = generate_long_audio(target_seconds=10)
    assert long.dtype == np.float32 and 10 * 16_000 < len(long) < 30 * 16_000
    assert len(generate_long_audio(target_seconds=1000)) == len(generate_long_audio(target_seconds=26))  # all clips
    x = get_speaker_embeddings()  # the book's row, 7440, of the x-vector twin
    assert x.shape == (512,) and abs(np.linalg.norm(x) - 1) < 1e-4


def test_hub_helpers_bad_inputs():
    with pytest.raises(ValueError, match="must be positive"):
        generate_long_audio(target_seconds=0)
    with pytest.raises(IndexError, match=r"id must be in \[0, 7931\)"):
        get_speaker_embeddings(id=7931)
    with pytest.raises(RuntimeError, match="comes from the Hugging Face Hub"):
        generate_long_audio(repo_id="nobody/no-such-speech-dataset")
