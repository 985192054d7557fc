# shellcheck shell=bash
# CPU accounting for scripts/bench.sh: the CPU time (user + system, from /proc) each part of the
# platform spends per request during a load run. Rates swing with this machine's speed from one
# run to the next; these say where the time goes, and what a hop costs on top of what it makes
# the others pay. Source it; it defines functions only.
#
# The caller sets CPU_ACCOUNTING_DIR (snapshots, and cpu.txt: one line per run,
# "LABEL group=µs_per_request ...") and defines cpu_groups, which prints one "GROUP PID..." line
# per part of the platform (asked at every snapshot: processes come and go).

CPU_HZ="$(getconf CLK_TCK)"

# median NUMBER...: the middle one (the upper middle of an even count).
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# cpu_snapshot FILE: clock ticks used so far by each group, and by the whole machine.
cpu_snapshot() {
    local group pids pid ticks
    while read -r group pids; do
        ticks=0
        for pid in $pids; do
            ticks=$((ticks + $(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat" 2>/dev/null || echo 0)))
        done
        echo "$group $ticks"
    done < <(cpu_groups) >"$1"
    awk '/^cpu / { print "machine", $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat >>"$1"
}

# cpu_record LABEL BEFORE AFTER REQUESTS CLIENT_TIMES: appends "LABEL group=us_per_request ..."
# to cpu.txt; CLIENT_TIMES is the second line of bash's `times` after the load generator ran.
cpu_record() {
    local label="$1" before="$2" after="$3" requests="$4" client="$5"
    awk -v label="$label" -v n="$requests" -v hz="$CPU_HZ" -v client="$client" '
        function secs(t) { split(t, p, "m"); sub(/s$/, "", p[2]); return p[1] * 60 + p[2] }
        FNR == NR { start[$1] = $2; next }
        { used[$1] = $2 - start[$1]; order[++k] = $1 }
        END {
            line = label
            for (i = 1; i <= k; i++) line = line " " order[i] "=" sprintf("%.1f", used[order[i]] / hz * 1e6 / n)
            split(client, c, " ")
            print line " load_generator=" sprintf("%.1f", (secs(c[1]) + secs(c[2])) * 1e6 / n)
        }' "$before" "$after" >>"$CPU_ACCOUNTING_DIR/cpu.txt"
}

# measured_run OUTPUT COMMAND...: runs a load generator, its output (then bash's `times`) in
# OUTPUT, between two CPU snapshots; cpu_record_run turns them into figures.
measured_run() {
    local output="$1"
    shift
    cpu_snapshot "$CPU_ACCOUNTING_DIR/cpu.before"
    bash -c '"$@"; times' load "$@" >"$output" 2>&1
    cpu_snapshot "$CPU_ACCOUNTING_DIR/cpu.after"
}

# cpu_record_run LABEL OUTPUT REQUESTS: the CPU accounting of the last measured_run.
cpu_record_run() {
    cpu_record "$1" "$CPU_ACCOUNTING_DIR/cpu.before" "$CPU_ACCOUNTING_DIR/cpu.after" "$3" "$(tail -n 1 "$2")"
}

# cpu_median LABEL GROUP: the median over the runs labelled LABEL of GROUP's CPU per request.
cpu_median() {
    # shellcheck disable=SC2046 # one figure per word
    median $(awk -v label="$1" -v g="$2" '
        $1 == label { for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == g) print kv[2] } }' \
        "$CPU_ACCOUNTING_DIR/cpu.txt")
}

# cpu_recorded LABEL: some run was recorded under LABEL.
cpu_recorded() { grep -q "^$1 " "$CPU_ACCOUNTING_DIR/cpu.txt"; }
