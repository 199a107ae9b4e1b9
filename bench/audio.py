"""Speech recognition and synthesis offline, measured: WER/CER and speed of every recogniser on the LibriVox clips, and
the Piper -> Whisper round trip.

Recognisers: Whisper tiny.en through transformers (the seeded `openai/whisper-tiny.en`, converted from CTranslate2,
float32, greedy), through faster-whisper (int8 and float32, greedy and beam 5), and pocketsphinx (HMM + 3-gram LM).
Data: the 5 LibriVox clips (24.7 s) of Debian's pocketsphinx-testdata with their references. WER and CER are pooled
over the clips (jiwer), raw and after Whisper's BasicTextNormalizer. Seconds are per clip, median of `--rounds`
passes, with `--threads` threads; the real-time factor is seconds of compute per second of audio.
TTS: Piper's joe voice speaks `SENTENCES`; faster-whisper (int8, greedy) transcribes them; WER after normalization.

Usage: python bench/audio.py [--threads 1] [--rounds 2]
Writes bench/results/audio.json.
"""

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

from genaibook.offline import use_offline_cache

HOME = use_offline_cache()  # before any Hugging Face library is imported
RESULTS = Path(__file__).parent / "results" / "audio.json"
SENTENCES = [
    "Hello, my dog is cute.",
    "There are llamas all around.",
    "The second in importance is as follows.",
    "Diffusion models turn noise into pictures and sounds.",
    "Whisper was trained on six hundred eighty thousand hours of audio.",
    "A vocoder turns a spectrogram into a waveform.",
    "The quick brown fox jumps over the lazy dog.",
    "Please draw a picture of a sneaker.",
]


def recognisers(threads: int) -> dict:
    "name -> transcribe(audio) for every recogniser available offline."
    import torch
    from transformers import pipeline

    from genaibook.speech import load_whisper, sphinx_transcribe, transcribe

    torch.set_num_threads(threads)
    hf = pipeline("automatic-speech-recognition", model="openai/whisper-tiny.en")
    int8, fp32 = load_whisper("int8", threads), load_whisper("float32", threads)
    return {
        "whisper-tiny.en transformers fp32 greedy": lambda a: hf(a)["text"].strip(),
        "whisper-tiny.en faster-whisper int8 greedy": lambda a: transcribe(int8, a),
        "whisper-tiny.en faster-whisper int8 beam5": lambda a: transcribe(int8, a, beam_size=5),
        "whisper-tiny.en faster-whisper fp32 greedy": lambda a: transcribe(fp32, a),
        "pocketsphinx en-us (HMM + 3-gram)": sphinx_transcribe,
    }


def measure_asr(systems: dict, rounds: int) -> dict:
    "WER/CER (raw and normalized), seconds per clip and real-time factor of each recogniser on the LibriVox clips."
    from genaibook.speech import SAMPLING_RATE, cer, librivox_clips, load_audio, wer

    clips = librivox_clips()
    audio = [load_audio(c["path"]) for c in clips]
    refs = [c["text"] for c in clips]
    seconds_of_audio = sum(len(a) for a in audio) / SAMPLING_RATE
    out = {}
    for name, system in systems.items():
        system(audio[0])  # warm-up
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            hyps = [system(a) for a in audio]
            times.append(time.perf_counter() - start)
        total = statistics.median(times)
        out[name] = {
            "wer_raw": round(wer(refs, hyps), 4),
            "wer": round(wer(refs, hyps, normalize=True), 4),
            "cer": round(cer(refs, hyps, normalize=True), 4),
            "seconds_per_clip": round(total / len(audio), 3),
            "real_time_factor": round(total / seconds_of_audio, 3),
            "transcripts": hyps,
        }
        print(f"{name:45s} WER {out[name]['wer']:.3f} CER {out[name]['cer']:.3f} RTF {out[name]['real_time_factor']}")
    return {"clips": len(clips), "audio_seconds": round(seconds_of_audio, 2), "references": refs, "systems": out}


def measure_tts(threads: int) -> dict:
    "Piper speaks SENTENCES; faster-whisper transcribes them: WER and Piper's real-time factor."
    from genaibook.speech import SAMPLING_RATE, load_piper, load_whisper, normalize_text, synthesize, transcribe, wer

    voice, whisper = load_piper(), load_whisper("int8", threads)
    synthesize(voice, "Warm up.")
    start = time.perf_counter()
    speech = [synthesize(voice, s) for s in SENTENCES]
    tts_seconds = time.perf_counter() - start
    heard = [transcribe(whisper, x) for x in speech]
    audio_seconds = sum(len(x) for x in speech) / SAMPLING_RATE
    exact = sum(normalize_text(a) == normalize_text(b) for a, b in zip(SENTENCES, heard))
    result = {
        "sentences": len(SENTENCES),
        "wer": round(wer(SENTENCES, heard, normalize=True), 4),
        "exact_sentences": exact,
        "piper_real_time_factor": round(tts_seconds / audio_seconds, 3),
        "heard": heard,
    }
    print(
        f"Piper -> Whisper: WER {result['wer']:.3f}, {exact}/{len(SENTENCES)} exact, RTF {result['piper_real_time_factor']}"
    )
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    results = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "threads": args.threads,
        "rounds": args.rounds,
        "asr": measure_asr(recognisers(args.threads), args.rounds),
        "tts_round_trip": measure_tts(args.threads),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
