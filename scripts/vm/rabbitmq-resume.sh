#!/usr/bin/env bash
# Restarts this machine's RabbitMQ node when it stays paused after a partition has healed.
#
# With cluster_partition_handling = pause_minority, a node cut off from the other two stops its
# RabbitMQ application, and starts it again once it sees a majority. On Debian 12 (RabbitMQ
# 3.10.8 on Erlang 25.2) that start can hang for good in global:sync(): RabbitMQ's own remedy
# for the hang sends messages that Erlang 25.1 and later ignore (fixed upstream after 3.10.8,
# rabbitmq-server pull request 6046). scripts/deploy-test.sh saw it in about one partition in
# three. Restarting the node is the way out RabbitMQ documents for a node left partitioned; this
# does it once the node has stayed paused for STUCK_AFTER seconds with a majority of its cluster
# connected, when it should have resumed within seconds. Three minutes, not one: under emulation
# a node that is merely slow (just rebooted beside two others, rabbitmqctl taking half a minute)
# can look stuck for a minute: after `vagrant reload` the gateway's node was seen restarting
# with no restart counted by systemd, which only this guard does. Two nodes serve meanwhile. A node stopped on purpose
# (rabbitmqctl stop_app) is not paused and is left alone. Run every 20 s by
# movie-rabbitmq-resume.timer; installed by scripts/vm/provision.sh.
set -euo pipefail
STUCK_AFTER=180
paused_since=/run/movie-rabbitmq-resume/paused-since

not_stuck() { rm -f "$paused_since"; exit 0; }

# Starting, stopping or stopped: systemd is in charge.
systemctl is-active --quiet rabbitmq-server || not_stuck
# Provisioning is working on the node (restarting it, joining it to the cluster, which resets and
# restarts its application; minutes under emulation): not stuck. A hold older than half an hour
# was left by a provisioning that did not finish.
[ -z "$(find /run/movie-rabbitmq-resume/provisioning -mmin -30 2>/dev/null)" ] || not_stuck
# The cheap check first: a node that serves has its AMQP listener open.
[ -z "$(ss -Hltn 'sport = :5672')" ] || not_stuck
# rabbit_outside_app_process is the process that paused the node and waits to start it again.
# A node that does not answer at all while systemd has it running counts as stuck too.
state="$(timeout 30 rabbitmqctl -q eval '
    case whereis(rabbit_outside_app_process) of
        undefined -> not_paused;
        _ ->
            Members = rabbit_mnesia:cluster_nodes(all),
            Connected = [N || N <- Members, lists:member(N, [node() | nodes()])],
            case 2 * length(Connected) > length(Members) of
                true -> paused_with_majority;
                false -> paused_in_minority
            end
    end.' 2>&1)" || state="not answering: ${state:-no output}"
case "$state" in
    not_paused | paused_in_minority) not_stuck ;;
esac

now="$(date +%s)"
if [ ! -f "$paused_since" ]; then
    echo "$now" >"$paused_since"
    echo "RabbitMQ is not serving (${state}); restarting it if that lasts ${STUCK_AFTER} s"
    exit 0
fi
paused_for=$((now - $(cat "$paused_since")))
[ "$paused_for" -ge "$STUCK_AFTER" ] || exit 0
echo "RabbitMQ has not served for ${paused_for} s (${state}): restarting it"
rm -f "$paused_since"
# A paused node holds no message in flight, and stopping one stuck in global:sync() would wait
# for systemd's stop timeout: kill it, then start it again. The Erlang VM only (its helper
# processes end with it): `systemctl kill` fails outright where systemd cannot signal the whole
# control group (as in the deployment test's containers), and the restart would not happen.
main_pid="$(systemctl show -p MainPID --value rabbitmq-server)"
if [ "${main_pid:-0}" -gt 0 ]; then kill -KILL "$main_pid" || true; fi
systemctl restart --no-block rabbitmq-server
