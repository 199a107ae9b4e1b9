"genaibook.speech: bad audio, CTC, WER/CER, the CTranslate2 -> transformers Whisper, Piper, and the app's event function."

import os

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from genaibook.speech import (  # noqa: E402
    SAMPLING_RATE,
    PromptRouter,
    build_conversation_demo,
    cer,
    check_audio,
    conversation_fn,
    ctc_collapse,
    gradio_audio_to_16k,
    librivox_clips,
    load_audio,
    load_piper,
    load_whisper,
    normalize_text,
    read_ct2,
    resample,
    sphinx_transcribe,
    synthesize,
    transcribe,
    wer,
    whisper_tiny_en_dir,
)


@pytest.fixture(scope="module")
def whisper():
    return load_whisper()


@pytest.fixture(scope="module")
def voice():
    return load_piper()


# ---- audio checks ---------------------------------------------------------------------------------------------------
def test_check_audio_names_the_fix():
    with pytest.raises(ValueError, match="empty"):
        check_audio(np.zeros(0), 16_000)
    with pytest.raises(ValueError, match="empty"):
        check_audio(None, 16_000)
    with pytest.raises(ValueError, match=r"mono.*shape \(2, 100\)"):
        check_audio(np.zeros((2, 100)), 16_000)
    with pytest.raises(ValueError, match=r"44100 Hz.*16000 Hz.*librosa.resample.*cast_column"):
        check_audio(np.zeros(100), 44_100)
    with pytest.raises(ValueError, match="NaN"):
        check_audio(np.array([0.0, np.nan]), 16_000)
    out = check_audio(np.zeros((1, 7), dtype=np.float64), 16_000)
    assert out.shape == (7,) and out.dtype == np.float32


def test_load_audio_errors_and_resampling(tmp_path):
    with pytest.raises(FileNotFoundError, match="no audio file"):
        load_audio(tmp_path / "missing.wav")
    with pytest.raises(FileNotFoundError, match="apt-get install pocketsphinx-testdata"):
        load_audio("/usr/share/pocketsphinx/nothing/here.wav")
    tone = np.sin(2 * np.pi * 440 * np.arange(22_050) / 22_050).astype(np.float32)
    sf.write(tmp_path / "tone.wav", tone, 22_050)
    with pytest.raises(ValueError, match="22050 Hz but the model expects 16000 Hz"):
        load_audio(tmp_path / "tone.wav")
    x = load_audio(tmp_path / "tone.wav", resample_to_rate=True)
    assert len(x) == 16_000
    peak = np.fft.rfftfreq(len(x), 1 / 16_000)[np.abs(np.fft.rfft(x)).argmax()]
    assert abs(peak - 440) < 2
    sf.write(tmp_path / "stereo.wav", np.stack([tone, tone], axis=1), 16_000)
    with pytest.raises(ValueError, match="mean\\(axis=1\\)"):
        load_audio(tmp_path / "stereo.wav")


def test_resample_keeps_length_ratio():
    assert len(resample(np.zeros(22_050), 22_050, 16_000)) == 16_000
    assert len(resample(np.zeros(48_000), 48_000)) == 16_000


def test_librivox_clips(tmp_path):
    clips = librivox_clips()
    assert len(clips) == 5 and all(c["path"].exists() and c["text"].isupper() for c in clips)
    with pytest.raises(FileNotFoundError, match="pocketsphinx-testdata"):
        librivox_clips(tmp_path)


# ---- CTC and error rates --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "frames, text",
    [
        ("CHAAAAA*PTT*ERRR/SS*IX*T*EE*EEN/I/MMM*II*GHT", "CHAPTER SIXTEEN I MIGHT"),
        ("HH*EE*LL*LL*OO", "HELLO"),  # the blank keeps the double L
        ("HHEELLLLOO", "HELO"),  # without it the Ls merge
        ("**//A//**", "A"),  # leading, trailing and repeated separators
        ("aa__b", "ab"),
    ],
)
def test_ctc_collapse(frames, text):
    blank = "_" if "_" in frames else "*"
    assert ctc_collapse(frames, blank=blank) == text


def test_ctc_collapse_bad_inputs():
    with pytest.raises(TypeError, match="string"):
        ctc_collapse(["A", "B"])
    with pytest.raises(ValueError, match="different from sep"):
        ctc_collapse("AB", blank="/")


def test_wer_cer():
    assert wer("how can the llama jump", "can the lama jump up") == pytest.approx(0.6)
    assert wer(["a b", "c d"], ["a b", "c x"]) == pytest.approx(0.25)  # pooled over words, not averaged per pair
    assert cer("abcd", "abed") == pytest.approx(0.25)
    assert wer("THE CAT", "The cat.") == 1.0 and wer("THE CAT", "The cat.", normalize=True) == 0.0
    assert wer("a", "a b c d") == 3.0  # insertions can push WER above 1
    assert normalize_text("Café, naïve!") == "café naïve "  # the book's normalizer keeps accents
    with pytest.raises(ValueError, match="pair up"):
        cer(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="at least one word"):
        wer(["", "a"], ["x", "a"])


# ---- real models ----------------------------------------------------------------------------------------------------
def test_read_ct2_and_bad_files(tmp_path):
    spec, w = read_ct2(whisper_tiny_en_dir() / "model.bin")
    assert spec == "WhisperSpec" and w["decoder/projection/weight"] is w["decoder/embeddings/weight"]  # an alias
    (tmp_path / "model.bin").write_bytes((5).to_bytes(4, "little"))
    with pytest.raises(ValueError, match="version 5"):
        read_ct2(tmp_path / "model.bin")


def test_converted_whisper_matches_faster_whisper(whisper):
    "The transformers conversion (seeded as openai/whisper-tiny.en) and faster-whisper agree on a real clip."
    from transformers import pipeline

    clip = librivox_clips()[4]
    audio = load_audio(clip["path"])
    hf = pipeline("automatic-speech-recognition", model="openai/whisper-tiny.en")(audio)["text"].strip()
    ct2 = transcribe(whisper, audio)
    assert normalize_text(hf) == normalize_text(ct2)
    assert wer(clip["text"], hf, normalize=True) == 0.0


def test_transcribe_refuses_bad_audio(whisper):
    with pytest.raises(ValueError, match="expects 16000 Hz"):
        transcribe(whisper, np.zeros(8000), sampling_rate=8000)
    with pytest.raises(ValueError, match="empty"):
        transcribe(whisper, np.zeros(0))


def test_piper_round_trip(voice, whisper):
    speech = synthesize(voice, "The quick brown fox jumps over the lazy dog.")
    assert speech.dtype == np.float32 and np.abs(speech).max() <= 1.0
    assert transcribe(whisper, speech) == "The quick brown fox jumps over the lazy dog."
    slow = synthesize(voice, "The quick brown fox.", length_scale=1.5)
    assert len(slow) > 1.3 * len(synthesize(voice, "The quick brown fox."))
    with pytest.raises(ValueError, match="non-empty"):
        synthesize(voice, "   ")


def test_pocketsphinx_baseline():
    clip = librivox_clips()[1]
    text = sphinx_transcribe(load_audio(clip["path"]))
    assert isinstance(text, str) and wer(clip["text"], text, normalize=True) < 1.0


# ---- the conversational app -----------------------------------------------------------------------------------------
def letters(texts):
    v = np.array([[t.lower().count(c) for c in "abcdefghijklmnopqrstuvwxyz"] for t in texts], dtype=float) + 1e-9
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_router_bad_inputs():
    with pytest.raises(ValueError, match="at least two routes"):
        PromptRouter(letters, {"only": ["x"]})
    with pytest.raises(ValueError, match="at least one example"):
        PromptRouter(letters, {"a": ["x"], "b": []})
    router = PromptRouter(letters, {"chat": ["hello"], "image": ["zzz"]})
    assert router("hello there") == "chat" and router("zzzz") == "image"
    with pytest.raises(ValueError, match="empty"):
        router.scores("")


def test_gradio_audio_conversion():
    stereo = np.zeros((44_100, 2), dtype=np.int16)
    stereo[:, 0] = 16384
    x = gradio_audio_to_16k((44_100, stereo))
    assert len(x) == 16_000 and abs(float(np.median(x)) - 0.25) < 0.01  # mean of 0.5 and 0
    with pytest.raises(ValueError, match="empty"):
        gradio_audio_to_16k((16_000, np.zeros(0, dtype=np.int16)))


def test_conversation_event_function_with_real_speech(voice, whisper):
    "The event function, called as Gradio would, with real Piper speech and real Whisper; cheap chat/image stages."
    router = PromptRouter(letters, {"chat": ["what is the capital of france"], "image": ["zzz draw zzz"]})
    respond = conversation_fn(
        lambda a: transcribe(whisper, a),
        router,
        lambda text: "Paris.",
        lambda text: (None, "Here is a drawing."),
        lambda text: synthesize(voice, text),
    )
    mic = (22_050, (synthesize(voice, "What is the capital of France?", sampling_rate=22_050) * 32767).astype(np.int16))
    heard, route, reply, image, (rate, speech), timings = respond(mic, "")
    assert normalize_text(heard).strip() == "what is the capital of france"
    assert (route, reply, image, rate) == ("chat", "Paris.", None, SAMPLING_RATE) and len(speech) > 8_000
    assert set(timings) == {"speech to text", "routing", "chat reply", "text to speech"}
    assert respond(None, "zzz draw")[1:3] == ("image", "Here is a drawing.")  # typed text skips speech to text
    with pytest.raises(ValueError, match="nothing to answer"):
        respond(None, "  ")


def test_conversation_demo_builds():
    demo = build_conversation_demo(lambda audio, text: None)
    names = {type(b).__name__ for b in demo.blocks.values()}
    assert {"Audio", "Textbox", "Image", "JSON", "Button"} <= names


def test_latency_and_memory_files_cpu_memory_as_rss():
    from genaibook.speech import latency_and_memory

    report = latency_and_memory(lambda x: x * 2, 3, "double", "cpu", nb_loops=2)
    assert report["seconds"] >= 0 and report["gpu_gb"] is None
    assert report["rss_gb"] is None or report["rss_gb"] >= 0  # None off Linux
    with pytest.raises(ValueError, match="positive integer"):
        latency_and_memory(lambda x: x, 1, "m", "cpu", nb_loops=0)
