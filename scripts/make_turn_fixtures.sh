#!/usr/bin/env bash
# Regenerate the smart-turn test fixtures in tests/fixtures/turns/ (16 kHz mono PCM16 WAV).
# Needs espeak-ng and sox (apt-get install -y espeak-ng sox). Output is committed; tests never run this.
#   complete_*.wav   a whole sentence, then 0.3 s of silence (what the VAD hands over at its stop)
#   truncated_*.wav  a sentence the speaker did not finish, then 0.3 s of silence
# (Cutting the synthetic complete sentence mid-word is NOT used: smart-turn v3 scores such cuts of
# espeak audio as complete about half the time; unfinished phrases rendered whole score < 0.05.)
set -euo pipefail
out="$(cd "$(dirname "$0")/.." && pwd)/tests/fixtures/turns"
mkdir -p "$out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

say() {  # say NAME TEXT
  espeak-ng -v en-us -s 160 -w "$tmp/$1.raw.wav" "$2"
  # 16 kHz mono 16-bit, trim leading/trailing silence, then 0.3 s of silence at the end.
  sox "$tmp/$1.raw.wav" -r 16000 -c 1 -b 16 "$tmp/$1.16k.wav" \
    silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse
  sox "$tmp/$1.16k.wav" "$out/$1.wav" pad 0 0.3
}

say complete_weather "What is the weather going to be like in Paris tomorrow?"
say complete_booking "I would like to book a table for two people at seven tonight."
say truncated_weather "What is the weather going to be like in"
say truncated_um "I want to, um"
ls -l "$out"
# complete_weather_whisper_features.npz (reference for tests/test_turns_features.py) was computed once, in a
# throwaway venv, with transformers==4.46.3 WhisperFeatureExtractor(chunk_length=8) on complete_weather.wav
# left-padded to 8 s (padding="max_length", do_normalize=True), keeping every 8th frame.
