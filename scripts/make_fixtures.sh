#!/usr/bin/env bash
# Regenerate the speech fixtures under tests/fixtures/speech/ (committed; tests never run this).
#
# Needs the Debian tools espeak-ng and sox (GPL; used only to make these files, not shipped):
#   apt-get install -y espeak-ng sox
#
# Every utterance is synthesised with espeak-ng, converted to 16-bit mono PCM without dither
# (so reruns are byte-identical for one espeak-ng/sox version), and trimmed of espeak's own
# leading/trailing silence. Files are then assembled from known silences and trimmed parts,
# so the true speech segments are known exactly from the part lengths (in samples); they are
# written to segments.json as [start_s, end_s] pairs per file.
set -euo pipefail

OUT="$(cd "$(dirname "$0")/.." && pwd)/tests/fixtures/speech"
mkdir -p "$OUT"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

VOICE="en-us"
# Trim threshold: 0.1 % of full scale (~33 LSB), 5 ms above it to count as sound.
TRIM=(silence 1 0.005 0.1% reverse silence 1 0.005 0.1% reverse)

# say NAME RATE WPM TEXT -> $TMP/NAME.wav: trimmed speech, mono 16-bit at RATE Hz
say() {
  espeak-ng -v "$VOICE" -s "$3" -w "$TMP/$1.raw.wav" "$4"
  sox "$TMP/$1.raw.wav" -D -r "$2" -c 1 -b 16 -e signed-integer "$TMP/$1.wav" "${TRIM[@]}"
}

# silence NAME RATE SECONDS -> $TMP/NAME.wav
silence() {
  sox -n -D -r "$2" -c 1 -b 16 -e signed-integer "$TMP/$1.wav" trim 0 "$3"
}

samples() { soxi -s "$1"; }

# build OUTNAME RATE PART... : concatenate parts (silence parts are named sil*), record segments
JSON_ENTRIES=()
build() {
  local name="$1" rate="$2"
  shift 2
  local pos=0 files=() segs=()
  for part in "$@"; do
    local n
    n=$(samples "$TMP/$part.wav")
    if [[ "$part" != sil* ]]; then
      segs+=("$(awk -v a="$pos" -v b="$((pos + n))" -v r="$rate" 'BEGIN { printf "[%.4f, %.4f]", a / r, b / r }')")
    fi
    pos=$((pos + n))
    files+=("$TMP/$part.wav")
  done
  sox -D "${files[@]}" -r "$rate" -c 1 -b 16 -e signed-integer "$OUT/$name.wav"
  local dur
  dur=$(awk -v n="$pos" -v r="$rate" 'BEGIN { printf "%.4f", n / r }')
  local joined
  joined=$(IFS=,; echo "${segs[*]}")
  JSON_ENTRIES+=("  \"$name.wav\": {\"sample_rate\": $rate, \"duration\": $dur, \"segments\": [${joined//,\[/, [}]}")
}

for rate in 16000 8000; do
  say "weather_$rate" "$rate" 150 "what is the weather in paris"
  say "booking_$rate" "$rate" 150 "please book a table for two"
  say "uhhuh_$rate" "$rate" 190 "uh huh"
  silence "sil05_$rate" "$rate" 0.5
  silence "sil07_$rate" "$rate" 0.7
  silence "sil10_$rate" "$rate" 1.0
  silence "sil12_$rate" "$rate" 1.2
done

build utterance_weather 16000 sil05_16000 weather_16000 sil07_16000
build utterance_booking 16000 sil05_16000 booking_16000 sil07_16000
build backchannel_uhhuh 16000 sil05_16000 uhhuh_16000 sil07_16000
build two_utterances 16000 sil10_16000 weather_16000 sil12_16000 booking_16000 sil10_16000
build two_utterances_8k 8000 sil10_8000 weather_8000 sil12_8000 booking_8000 sil10_8000

{
  echo "{"
  last=$((${#JSON_ENTRIES[@]} - 1))
  for i in "${!JSON_ENTRIES[@]}"; do
    if [[ $i -lt $last ]]; then echo "${JSON_ENTRIES[$i]},"; else echo "${JSON_ENTRIES[$i]}"; fi
  done
  echo "}"
} > "$OUT/segments.json"

ls -l "$OUT"
cat "$OUT/segments.json"
