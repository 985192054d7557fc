# shellcheck shell=bash
# Named pass/fail checks for the system tests (scripts/deploy-test.sh, scripts/vagrant-test.sh):
# each `check` prints one PASS/FAIL line (a failure with the tail of what it printed), lines a
# check prints as "figures: ..." are shown either way, and `checks_summary NAME` ends the test
# with "NAME: N passed, M failed" (scripts/test.sh counts those like tests). Source it after
# scripts/lib/common.sh; set CHECK_LOG to a file of the caller's scratch directory first.

PASSED=0
FAILED=0

check() { # check NAME COMMAND...: one named pass/fail line; any failing step fails the check
    local name="$1" status
    shift
    # errexit in a subshell that is not an `if` condition (where bash would ignore it).
    set +e
    (
        set -e
        "$@"
    ) >"$CHECK_LOG" 2>&1
    status=$?
    set -e
    if [ "$status" -eq 0 ]; then
        PASSED=$((PASSED + 1))
        printf 'PASS  %s\n' "$name"
        sed -n 's/^figures: /      /p' "$CHECK_LOG"
    else
        FAILED=$((FAILED + 1))
        printf 'FAIL  %s\n' "$name"
        sed 's/^/      /' "$CHECK_LOG" | tail -n 15
    fi
}

refuse() { # refuse COMMAND...: succeeds only if the command fails
    if "$@"; then
        echo "unexpectedly succeeded: $*"
        return 1
    fi
}

checks_summary() { # checks_summary NAME: the closing line; fails if any check failed
    echo
    echo "$1: $PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
}
