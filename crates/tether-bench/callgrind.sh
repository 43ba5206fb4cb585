#!/usr/bin/env bash
# callgrind.sh: user-space instructions and library calls per round trip of
# the servers in TCP pingpong (256 connections x 64 bytes by default), counted
# by callgrind. Unlike the timed figures of `tether-bench pingpong` these do
# not depend on what else the machine runs.
#
#   crates/tether-bench/callgrind.sh                 # tether, mio, tokio
#   crates/tether-bench/callgrind.sh tether          # one server
#
# Works from any directory: it builds and runs the checkout it sits in.
# Needs valgrind (callgrind) and cargo; nothing else (the callgrind files are
# read by the awk below, callgrind_annotate is not needed).
#
# Environment (defaults in brackets):
#   TRIPS_A [50], TRIPS_B [250]  round trips per connection of the short and
#                                the long run (see Method)
#   CONNS [256], SIZE [64]       connections, message size in bytes
#   KEEP=DIR                     keep the callgrind files and logs in DIR
#                                (otherwise a temporary directory, removed)
#
# Method.
#  - `tether-bench callgrind-pingpong --only SERVER --trips N` starts one
#    server on its own thread and runs the pingpong load generator on the
#    main thread (the same code as the timed scenario) until every connection
#    has made exactly N round trips; it then closes them all and stops the
#    server once the server has closed every one. No clock decides anything,
#    so the server does the same work in every run.
#  - It runs under `valgrind --tool=callgrind --separate-threads=yes`, which
#    writes one file per thread. The load generator is thread 1; the server's
#    file is the other one with the most instructions (there is only one
#    other for all three servers). Callgrind counts user-space instructions
#    only (the server's code, the libraries, libc's system-call wrappers), not
#    the kernel's.
#  - Setup and teardown (thread start, listener, 256 accepts, first-use
#    allocations, 256 closes) are excluded by difference: each server is run
#    twice, with TRIPS_A and with TRIPS_B round trips per connection, and
#        per round trip = (run B - run A) / ((TRIPS_B - TRIPS_A) x CONNS).
#    The same is done for call counts: the `calls=` lines of the server's
#    file, summed by called function, for the libc wrappers of the system
#    calls a server makes per message (recv, send, ..., epoll_wait,
#    clock_gettime). Under valgrind glibc's clock_gettime makes the system
#    call itself (no vDSO); natively it reads the vDSO clock, same count.
#  - Callgrind runs one thread at a time, so how many messages each
#    epoll_wait returns differs from a native run (epoll_wait per round trip
#    is printed for that reason: it shows the batching). Calls per message do
#    not change with it; instructions per message change only with the
#    per-wait share.
#  - valgrind is pinned to one CPU (taskset, when there is one): the hand-over
#    between the two threads then follows the program alone, and the figures
#    repeat even while the machine is busy (tether's to 0.1 instruction, the
#    mio floor's and tokio's, which follow the batching more, within 0.2 %).
#    Unpinned, on a busy machine, the batching moves them by a few percent.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
TRIPS_A=${TRIPS_A:-50}
TRIPS_B=${TRIPS_B:-250}
CONNS=${CONNS:-256}
SIZE=${SIZE:-64}
servers=("$@")
[ ${#servers[@]} -gt 0 ] || servers=(tether mio tokio)

command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind not found" >&2; exit 1; }
[ "$TRIPS_B" -gt "$TRIPS_A" ] || { echo "callgrind.sh: TRIPS_B must exceed TRIPS_A" >&2; exit 2; }

# Build, and find the binary wherever the target directory is.
bin=$(cargo build --release -p tether-bench --manifest-path "$root/Cargo.toml" \
        --message-format=json-render-diagnostics |
      sed -n 's/.*"executable":"\([^"]*\/tether-bench\)".*/\1/p' | tail -n 1)
[ -x "$bin" ] || { echo "callgrind.sh: no tether-bench binary built" >&2; exit 1; }

if [ -n "${KEEP:-}" ]; then
    out=$KEEP
    mkdir -p "$out"
else
    out=$(mktemp -d "${TMPDIR:-/tmp}/tether-callgrind.XXXXXX")
    trap 'rm -rf "$out"' EXIT
fi

# The calls counted, by libc function name (any "__" / "__libc_" prefix and
# "@@GLIBC_x" suffix taken off); the first four are always printed, the
# others when a server makes them.
calls_shown=(recv send epoll_wait clock_gettime)
calls_other=(read readv recvfrom recvmsg write writev sendto sendmsg epoll_pwait epoll_ctl accept4 close)

# One callgrind file -> "Ir N" and "call NAME COUNT" lines.
summarise() {
    awk '
    function fname(s,   id, rest, i) {
        if (s ~ /^\([0-9]+\)/) {
            i = index(s, ")")
            id = substr(s, 2, i - 2)
            rest = substr(s, i + 1)
            sub(/^ /, "", rest)
            if (rest != "") names[id] = rest
            return names[id]
        }
        return s
    }
    /^fn=/  { fname(substr($0, 4)); next }
    /^cfn=/ { cfn = fname(substr($0, 5)); next }
    /^calls=/ {
        split(substr($0, 7), a, " ")
        n = cfn
        sub(/@.*/, "", n); sub(/'"'"'[0-9]+$/, "", n)
        sub(/^__libc_/, "", n); sub(/^__/, "", n)
        calls[n] += a[1]
        next
    }
    /^summary:/ { ir = $2 }
    /^totals:/  { ir = $2 }
    END {
        print "Ir", ir + 0
        for (n in calls) print "call", n, calls[n]
    }' "$1"
}

# One CPU for valgrind: the first this shell may run on.
pin=()
if command -v taskset >/dev/null; then
    cpu=$(taskset -cp $$ | sed 's/.*: *//; s/[-,].*//')
    pin=(taskset -c "$cpu")
else
    echo "callgrind.sh: no taskset; not pinned, figures may move with the machine's load" >&2
fi

# Run one server for N round trips per connection; print the server
# thread's summary.
run() {
    local server=$1 trips=$2 prefix="$out/$1-$2"
    "${pin[@]}" valgrind --tool=callgrind --separate-threads=yes \
        --callgrind-out-file="$prefix.%p" \
        "$bin" callgrind-pingpong --only "$server" \
        --conns "$CONNS" --size "$SIZE" --trips "$trips" 2>"$prefix.log" ||
        { echo "callgrind.sh: $server run failed, see $prefix.log" >&2; tail -n 20 "$prefix.log" >&2; exit 1; }
    local best="" best_ir=-1 f ir
    for f in "$prefix".*-[0-9]*; do
        case $f in *-01) continue ;; esac
        ir=$(summarise "$f" | awk '$1 == "Ir" { print $2 }')
        if [ "$ir" -gt "$best_ir" ]; then best=$f best_ir=$ir; fi
    done
    [ -n "$best" ] || { echo "callgrind.sh: no server thread file for $server" >&2; exit 1; }
    summarise "$best" >"$prefix.summary"
    grep -h '^tether-bench:' "$prefix.log" >&2 || true
    echo "  $server, $trips trips/connection: server thread file ${best##*/}, Ir $best_ir" >&2
}

# Per round trip from the two summaries.
per_trip() {
    local a=$1 b=$2 trips=$3 shown="${calls_shown[*]}" other="${calls_other[*]}"
    awk -v trips="$trips" -v shown="$shown" -v other="$other" -v server="$4" '
    FNR == NR { if ($1 == "Ir") ia = $2; else ca[$2] = $3; next }
    { if ($1 == "Ir") ib = $2; else cb[$2] = $3 }
    END {
        line = sprintf("%-8s %12.1f", server, (ib - ia) / trips)
        ns = split(shown, s, " ")
        for (i = 1; i <= ns; i++) line = line sprintf(" %13.3f", (cb[s[i]] - ca[s[i]]) / trips)
        no = split(other, o, " "); extra = ""
        for (i = 1; i <= no; i++) {
            d = (cb[o[i]] - ca[o[i]]) / trips
            if (d >= 0.005 || d <= -0.005) extra = extra sprintf(" %s %.3f", o[i], d)
        }
        print line (extra == "" ? "  -" : " " extra)
        printf "%-8s whole runs: %d round trips %d Ir (%.1f per trip), %d round trips %d Ir (%.1f per trip)\n", \
            "", trips_a_total, ia, ia / trips_a_total, trips_b_total, ib, ib / trips_b_total > "/dev/stderr"
    }' trips_a_total=$(( TRIPS_A * CONNS )) trips_b_total=$(( TRIPS_B * CONNS )) "$a" "$b"
}

trips=$(( (TRIPS_B - TRIPS_A) * CONNS ))
echo "callgrind.sh: $(valgrind --version), $bin${pin[*]:+, ${pin[*]}}" >&2
results=()
for s in "${servers[@]}"; do
    run "$s" "$TRIPS_A"
    run "$s" "$TRIPS_B"
    results+=("$(per_trip "$out/$s-$TRIPS_A.summary" "$out/$s-$TRIPS_B.summary" "$trips" "$s")")
done

echo "callgrind, TCP pingpong $CONNS connections x $SIZE B, server thread, per round trip"
echo "(run of $TRIPS_B minus run of $TRIPS_A round trips per connection = $trips round trips)"
printf '%-8s %12s' server instructions
for c in "${calls_shown[@]}"; do printf ' %13s' "$c"; done
printf '  %s\n' "other calls"
for r in "${results[@]}"; do echo "$r"; done
