#!/usr/bin/env bash
# Size limits for the product crates (rina-core, runtime, interposer, shims):
#
# - no source file under <crate>/src longer than MAX_FILE_LINES (500) lines, counted
#   up to its inline test module (`#[cfg(test)]` at column 0 followed by `mod name {`);
#   test-only files (named
#   tests.rs or *_tests.rs, or under a tests/ directory) are exempt;
# - no function longer than the `too-many-lines-threshold` (80) of clippy.toml (the
#   workspace root's, and rina-core/clippy.toml for rina-core), found by clippy's
#   `too_many_lines` lint, which counts lines of code (not blank lines or comments)
#   and sees only non-test code (no --all-targets, so #[cfg(test)] is not compiled).
#
# Prints each offender (`path:lines` for files, clippy's `path:line:col: ...` for
# functions) and exits 1 if there is any, 2 if clippy itself fails (the code does not
# build), 0 if all is within limits. Not part of scripts/test.sh (yet).
# Usage: scripts/check-sizes.sh
set -euo pipefail
cd "$(dirname "$0")/.."

MAX_FILE_LINES=500
dirs=(rina-core/src runtime/src interposer/src shims/src)
packages=(rina-core runtime rina-interposer shims)
status=0
failed=0

echo "== files over ${MAX_FILE_LINES} lines"
while IFS= read -r -d '' f; do
    case "$f" in
        */tests.rs | *_tests.rs | */tests/*) continue ;;
    esac
    # Lines before an inline test module (`#[cfg(test)]` at column 0 then `mod name {`):
    # tests aside. A test module in a file of its own (`mod tests;`) ends nothing.
    n=$(awk '
        /^#\[cfg\(test\)\]/ { pending = 1; n++; next }
        pending && /^mod [A-Za-z_0-9]+ *\{/ { n--; exit }
        { pending = 0; n++ }
        END { print n + 0 }' "$f")
    if ((n > MAX_FILE_LINES)); then
        echo "$f:$n"
        status=1
    fi
done < <(find "${dirs[@]}" -name '*.rs' -type f -print0 | sort -z)

echo "== functions over the too-many-lines-threshold (clippy::too_many_lines)"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
# One crate at a time, so that one that does not build hides no other's offenders.
for p in "${packages[@]}"; do
    if ! cargo clippy -p "$p" --release --message-format=short \
        -- -A clippy::all -W clippy::too_many_lines >>"$out" 2>&1; then
        grep -E '^(error|[^ ]+: error)' "$out" | sort -u >&2 || true
        echo "check-sizes: cargo clippy -p $p failed (it does not build)" >&2
        failed=1
    fi
done
if grep 'this function has too many lines' "$out" | sort -u | grep .; then
    status=1
fi
if ((failed)); then
    echo "check-sizes: incomplete, some crates did not build" >&2
    exit 2
fi

if ((status == 0)); then
    echo "check-sizes: all within limits"
fi
exit "$status"
