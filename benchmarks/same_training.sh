#!/usr/bin/env bash
# Whether training at REV and here is bit-identical (benchmarks/fingerprints.py in both, configs
# and this script's fingerprints from here): `bash benchmarks/same_training.sh bff46fa`.
set -euo pipefail
cd "$(dirname "$0")/.."
rev="$1"
tree=$(mktemp -d)
git worktree add -q --detach "$tree" "$rev"
trap 'git worktree remove --force "$tree"' EXIT
cp -rL configs "$tree/configs-here"
sed "s#ROOT / \"configs\"#ROOT / \"configs-here\"#" benchmarks/fingerprints.py > "$tree/fingerprints.py"
sed -i "s#ROOT = Path(__file__).resolve().parents\[1\]#ROOT = Path(__file__).resolve().parent#" "$tree/fingerprints.py"
(cd "$tree" && PYTHONPATH="$tree" python fingerprints.py 2>/dev/null | grep yaml) > "$tree/then.txt"
python benchmarks/fingerprints.py 2>/dev/null | grep yaml > "$tree/now.txt"
paste -d'\n' "$tree/then.txt" "$tree/now.txt" | sed 'N;s/\n/  |  now: /;s/^/at '"$rev"': /'
if cmp -s "$tree/then.txt" "$tree/now.txt"; then echo "identical: training at $rev and here is bit-identical"; else echo "DIFFERENT"; exit 1; fi
