#!/usr/bin/env bash
# Makes the golden files of tests/render_golden.rs with Habitat's own renderer: for every case
# in cases/ and every template in its templates.txt, runs
#   hab plan render TEMPLATE --default-toml default.toml [--user-toml user.toml]
#       [--mock-data mock.json] --render-dir OUT --quiet
# and keeps the file it writes as expected/<case>/<template> (the exact rendered bytes; --print
# would add a newline), or, when Habitat refuses, its message as expected/<case>/<template>.error.
#
# Never run by the tests or CI. It needs Habitat's `hab` (built from habitat-sh/habitat outside
# this repository; the golden files were made with 2.1.78, commit 275d268701c2):
#   HABITAT_HAB=/path/to/hab sidecar/tests/render_golden/habitat-render.sh
set -euo pipefail
cd "$(dirname "$0")"
hab=${HABITAT_HAB:?set HABITAT_HAB to Habitat\'s hab binary}
export HAB_LICENSE=accept-no-persist HAB_NOCOLORING=true RUST_BACKTRACE=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rm -rf expected
for case_dir in cases/*/; do
  case_name=$(basename "$case_dir")
  mkdir -p "expected/$case_name" "$work/$case_name"
  # One file per template: the lines after "=== NAME" up to the next header.
  awk -v dir="$work/$case_name" '
    /^=== / { name = substr($0, 5); file = dir "/" name; printf "" > file; next }
    { print >> file }
  ' "$case_dir/templates.txt"
  args=(--default-toml "$case_dir/default.toml")
  [[ -f "$case_dir/user.toml" ]] && args+=(--user-toml "$case_dir/user.toml")
  [[ -f "$case_dir/mock.json" ]] && args+=(--mock-data "$case_dir/mock.json")
  for template in "$work/$case_name"/*; do
    name=$(basename "$template")
    out="$work/out-$case_name-$name"
    if "$hab" plan render "$template" "${args[@]}" --render-dir "$out" --quiet \
      >/dev/null 2>"$work/stderr"; then
      cp "$out/$name" "expected/$case_name/$name"
    else
      # Habitat frames its error with "✗✗✗" lines; keep the message (a panic's too, without
      # the thread id that changes from run to run).
      grep -v -e '^✗✗✗$' -e '^note: run with' "$work/stderr" |
        sed -e 's/^✗✗✗ //' -e "s/^thread 'main' ([0-9]*) panicked/thread 'main' panicked/" \
          >"expected/$case_name/$name.error"
    fi
  done
done
"$hab" --version >expected/HABITAT_VERSION
echo "golden files written by $("$hab" --version) into $(pwd)/expected"
