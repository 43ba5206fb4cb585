#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS each, one after the
# other, then prints a table: target, sanitizer, executions, exec/s, crashes.
# Exits non-zero if any target crashed (or failed to build or run).
#
#   fuzz/run-all.sh SECONDS [TARGET...]
#
# Each target starts from, and adds what it finds to, fuzz/corpus/<target>;
# a crash is written to fuzz/artifacts/<target>/ and stops that target (the
# others still run). Logs go to fuzz/logs/<target>.log.
#
# Targets that only reach tether-proto (which forbids unsafe code) are built
# without a sanitizer: AddressSanitizer finds memory errors, which safe Rust
# cannot make, and costs them 2-3x in speed; panics, failed assertions and
# integer overflows (debug assertions are on) are caught either way. Set
# FUZZ_SANITIZER=address (or another cargo-fuzz sanitizer) to force one for
# every target.
#
# Builds use cargo-fuzz (`cargo install cargo-fuzz`) with RUSTC_BOOTSTRAP=1,
# so a stable toolchain works; CARGO_TARGET_DIR is honoured.
set -u

if [ $# -lt 1 ] || ! [[ $1 =~ ^[0-9]+$ ]]; then
    echo "usage: $0 SECONDS [TARGET...]" >&2
    exit 2
fi
secs=$1
shift
cd "$(dirname "$0")" || exit 2
export RUSTC_BOOTSTRAP=1

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

# The sanitizer a target needs: only code with `unsafe` in reach gets one.
sanitizer_for() {
    if [ -n "${FUZZ_SANITIZER:-}" ]; then
        echo "$FUZZ_SANITIZER"
        return
    fi
    case $1 in
    dtls_datagram) echo address ;;
    *) echo none ;;
    esac
}

host=$(rustc -vV | sed -n 's/^host: //p')
base=${CARGO_TARGET_DIR:-$PWD/target}
mkdir -p logs
rows=()
total_execs=0
total_crashes=0
failed=0
for t in "${targets[@]}"; do
    san=$(sanitizer_for "$t")
    dir=$base/fuzz-$san
    log=logs/$t.log
    echo "== $t (sanitizer: $san, ${secs}s)" >&2
    if ! cargo fuzz build -s "$san" --target-dir "$dir" "$t" >"$log" 2>&1; then
        echo "   build failed, see fuzz/$log" >&2
        rows+=("$t $san build-failed - -")
        failed=1
        continue
    fi
    mkdir -p "corpus/$t" "artifacts/$t"
    before=$(find "artifacts/$t" -type f | wc -l)
    "$dir/$host/release/$t" "corpus/$t" \
        -max_total_time="$secs" -timeout=10 -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" >>"$log" 2>&1
    status=$?
    after=$(find "artifacts/$t" -type f | wc -l)
    crashes=$((after - before))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    if [ $status -ne 0 ] && [ "$crashes" -eq 0 ]; then
        # It stopped without writing an artifact: count it as a crash anyway.
        crashes=1
    fi
    rows+=("$t $san ${execs:-?} ${rate:-?} $crashes")
    total_execs=$((total_execs + ${execs:-0}))
    total_crashes=$((total_crashes + crashes))
    [ "$crashes" -gt 0 ] && echo "   CRASHED, see fuzz/$log and fuzz/artifacts/$t/" >&2
done

printf '\n%-16s %-10s %14s %10s %8s\n' target sanitizer executions exec/s crashes
for r in "${rows[@]}"; do
    # shellcheck disable=SC2086
    printf '%-16s %-10s %14s %10s %8s\n' $r
done
printf '%-16s %-10s %14s %10s %8s\n' total "" "$total_execs" "" "$total_crashes"
echo "(${secs} s per target)"

[ "$total_crashes" -eq 0 ] && [ $failed -eq 0 ]
